package vroom

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/tawsil/tawsil/backend/internal/routing"
)

var t0 = time.Date(2026, 3, 14, 18, 0, 0, 0, time.UTC)

// problem: order a still to collect at a dark store in Maarif, order b on board.
func problem() routing.Problem {
	return routing.Problem{
		Start:     routing.Point{Lat: 33.5869, Lng: -7.6318},
		StartTime: t0,
		Stops: []routing.Stop{
			{OrderID: "a", Kind: routing.Pickup, Loc: routing.Point{Lat: 33.5797, Lng: -7.6402}, Service: time.Minute, Earliest: t0.Add(5 * time.Minute)},
			{OrderID: "a", Kind: routing.Dropoff, Loc: routing.Point{Lat: 33.5732, Lng: -7.6563}, Service: 2 * time.Minute, Latest: t0.Add(40 * time.Minute)},
			{OrderID: "b", Kind: routing.Dropoff, Loc: routing.Point{Lat: 33.5901, Lng: -7.6221}, Service: 2 * time.Minute, Latest: t0.Add(-3 * time.Minute)},
		},
	}
}

func mustRead(tb testing.TB, path string) []byte {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// vroomServer answers like a VROOM server after checking the request.
func vroomServer(tb testing.TB, status int, body []byte, delay time.Duration) *httptest.Server {
	tb.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req request
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, `{"code":2,"error":"Invalid request."}`, http.StatusBadRequest)
			return
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			tb.Errorf("server: decode request: %v", err)
		}
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		w.Write(body) //nolint:errcheck // test server
	}))
	tb.Cleanup(srv.Close)
	return srv
}

func TestBuildRequest(t *testing.T) {
	req := buildRequest(problem(), DefaultProfile)
	if len(req.Vehicles) != 1 || req.Vehicles[0].Start != [2]float64{-7.6318, 33.5869} {
		t.Fatalf("vehicles %+v, want one starting at [lng, lat]", req.Vehicles)
	}
	if len(req.Shipments) != 1 || req.Shipments[0].Pickup.ID != 1 || req.Shipments[0].Delivery.ID != 2 {
		t.Fatalf("shipments %+v, want a's pickup 1 and delivery 2", req.Shipments)
	}
	sh := req.Shipments[0]
	if !slices.Equal(sh.Pickup.TimeWindows, [][2]int64{{300, 1 << 31}}) || sh.Pickup.Service != 60 {
		t.Errorf("pickup %+v, want window [300, open] and service 60", sh.Pickup)
	}
	if !slices.Equal(sh.Delivery.TimeWindows, [][2]int64{{0, 2400}}) {
		t.Errorf("delivery windows %v, want [[0 2400]]", sh.Delivery.TimeWindows)
	}
	if len(req.Jobs) != 1 || req.Jobs[0].ID != 3 || req.Jobs[0].TimeWindows != nil {
		t.Fatalf("jobs %+v, want b as job 3 without its already-missed window", req.Jobs)
	}
}

func TestPlan(t *testing.T) {
	srv := vroomServer(t, http.StatusOK, mustRead(t, "testdata/response_ok.json"), 0)
	c := &Client{URL: srv.URL}
	p := problem()
	sol, err := c.Plan(context.Background(), p)
	if err != nil {
		t.Fatalf("Plan: %v", err)
	}
	var got []string
	for _, v := range sol.Visits {
		got = append(got, v.OrderID+"/"+string(v.Kind))
	}
	if want := []string{"b/dropoff", "a/pickup", "a/dropoff"}; !slices.Equal(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
	if !sol.Visits[0].Arrival.Equal(t0.Add(310*time.Second)) || !sol.Visits[2].Arrival.Equal(t0.Add(1450*time.Second)) {
		t.Errorf("arrivals %v, %v; want +310s, +1450s", sol.Visits[0].Arrival, sol.Visits[2].Arrival)
	}
	// b was due 3 minutes before the start and arrives 310 s after it.
	if want := 3*time.Minute + 310*time.Second; sol.TotalLateness != want || sol.MaxLateness != want {
		t.Errorf("lateness %v / %v, want %v", sol.TotalLateness, sol.MaxLateness, want)
	}
	if sol.TravelTime != 1270*time.Second || sol.DistanceM != 7100 || sol.Algorithm != Algorithm {
		t.Errorf("travel %v distance %v algorithm %q", sol.TravelTime, sol.DistanceM, sol.Algorithm)
	}
	if !sol.Finish.Equal(t0.Add(1570 * time.Second)) {
		t.Errorf("finish %v, want +1570s", sol.Finish.Sub(t0))
	}
}

func TestPlanErrors(t *testing.T) {
	ok := mustRead(t, "testdata/response_ok.json")
	tests := []struct {
		name    string
		status  int
		body    string
		delay   time.Duration
		wantErr error
	}{
		{"input error", http.StatusBadRequest, `{"code":2,"error":"Invalid shipment."}`, 0, ErrServer},
		{"routing error", http.StatusInternalServerError, `{"code":3,"error":"Unfound route(s) from location [-7.63,33.58]"}`, 0, ErrServer},
		{"not json", http.StatusBadGateway, `<html>bad gateway</html>`, 0, ErrResponse},
		{"unassigned", http.StatusOK, `{"code":0,"unassigned":[{"id":2,"type":"delivery","location":[-7.6563,33.5732]}],"routes":[]}`, 0, ErrUnassigned},
		{"unknown step id", http.StatusOK, `{"code":0,"unassigned":[],"routes":[{"vehicle":1,"duration":10,"steps":[{"type":"job","id":9,"arrival":5}]}]}`, 0, ErrResponse},
		{"missing stops", http.StatusOK, `{"code":0,"unassigned":[],"routes":[{"vehicle":1,"duration":10,"steps":[{"type":"job","id":3,"arrival":5}]}]}`, 0, ErrResponse},
		{"timeout", http.StatusOK, string(ok), time.Second, context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := vroomServer(t, tt.status, []byte(tt.body), tt.delay)
			c := &Client{URL: srv.URL, Timeout: 50 * time.Millisecond}
			if _, err := c.Plan(context.Background(), problem()); !errors.Is(err, tt.wantErr) {
				t.Fatalf("Plan error %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestWithFallback(t *testing.T) {
	p := problem()
	builtin, err := routing.Plan(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		primary routing.Planner
		want    string // algorithm
	}{
		{"vroom answers", &Client{URL: vroomServer(t, http.StatusOK, mustRead(t, "testdata/response_ok.json"), 0).URL}, Algorithm},
		{"vroom fails", &Client{URL: vroomServer(t, http.StatusInternalServerError, []byte(`{"code":1,"error":"Internal error"}`), 0).URL}, builtin.Algorithm},
		{"vroom times out", &Client{URL: vroomServer(t, http.StatusOK, mustRead(t, "testdata/response_ok.json"), time.Second).URL, Timeout: 50 * time.Millisecond}, builtin.Algorithm},
		{"vroom unreachable", &Client{URL: "http://127.0.0.1:1/"}, builtin.Algorithm},
		{"not configured", nil, builtin.Algorithm},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pl := routing.WithFallback(tt.primary, routing.Builtin{}, discard())
			sol, err := pl.Plan(context.Background(), p)
			if err != nil {
				t.Fatalf("Plan: %v", err)
			}
			if sol.Algorithm != tt.want {
				t.Fatalf("algorithm %q, want %q", sol.Algorithm, tt.want)
			}
			if err := routing.Check(p, sol); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestWithFallbackInvalidPrimaryPlan(t *testing.T) {
	p := problem()
	dropsOne := routing.PlannerFunc(func(ctx context.Context, p routing.Problem) (routing.Solution, error) {
		sol, err := routing.Plan(ctx, p)
		sol.Visits = sol.Visits[1:]
		sol.Algorithm = "broken"
		return sol, err
	})
	sol, err := routing.WithFallback(dropsOne, routing.Builtin{}, discard()).Plan(context.Background(), p)
	if err != nil || sol.Algorithm == "broken" || len(sol.Visits) != len(p.Stops) {
		t.Fatalf("got %q with %d visits, %v; want the fallback's full plan", sol.Algorithm, len(sol.Visits), err)
	}
}

func TestWithFallbackContextDone(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	pl := routing.WithFallback(&Client{URL: "http://127.0.0.1:1/"}, routing.Builtin{}, discard())
	if _, err := pl.Plan(ctx, problem()); !errors.Is(err, context.Canceled) {
		t.Fatalf("Plan with a cancelled context: %v, want context.Canceled", err)
	}
}

func FuzzResponse(f *testing.F) {
	f.Add(mustRead(f, "testdata/response_ok.json"))
	f.Add([]byte(`{"code":0,"unassigned":[],"routes":[{"vehicle":1,"duration":10,"steps":[{"type":"job","id":3,"arrival":-5},{"type":"pickup","id":1},{"type":"delivery","id":2}]}]}`))
	f.Add([]byte(`{"code":0,"routes":[{"steps":[{"type":"delivery","id":2},{"type":"pickup","id":1},{"type":"job","id":3}]}]}`))
	f.Add([]byte(`{"code":2,"error":"Invalid"}`))
	p := problem()
	f.Fuzz(func(t *testing.T, data []byte) {
		var r response
		if json.Unmarshal(data, &r) != nil {
			return
		}
		sol, err := solution(p, r)
		if err != nil {
			return
		}
		if err := routing.Check(p, sol); err != nil {
			t.Fatalf("accepted an invalid plan: %v", err)
		}
	})
}
