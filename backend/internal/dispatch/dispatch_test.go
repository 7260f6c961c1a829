package dispatch

import (
	"errors"
	"fmt"
	"math"
	"testing"
	"time"
)

// pace is a uniform travel model: seconds per great-circle metre.
type pace float64

func (p pace) Pace(float64, float64, time.Time) float64 { return float64(p) }

// 1.3 detour at 18 km/h.
const testPace = pace(1.3 / 5)

var (
	now   = time.Date(2026, 5, 4, 12, 0, 0, 0, time.UTC)
	store = Point{Lat: 33.5892, Lng: -7.6325} // Twin Center
)

// move returns p shifted by north and east metres.
func move(p Point, north, east float64) Point {
	const m = 111_195.0
	return Point{Lat: p.Lat + north/m, Lng: p.Lng + east/(m*math.Cos(p.Lat*math.Pi/180))}
}

func mustDispatcher(tb testing.TB, patch func(*Config)) *Dispatcher {
	tb.Helper()
	cfg := Default()
	if patch != nil {
		patch(&cfg)
	}
	d, err := New(cfg, testPace)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	return d
}

func idle(id string, p Point, since time.Duration) Candidate {
	return Candidate{CourierID: id, Lat: p.Lat, Lng: p.Lng, Capacity: 3, IdleSince: now.Add(-since)}
}

// carrying returns a courier at p carrying one order picked up at origin,
// to be dropped at drop with the given promise.
func carrying(id string, p, origin, drop Point, promise time.Time) Candidate {
	return Candidate{
		CourierID: id, Lat: p.Lat, Lng: p.Lng, Capacity: 3, Load: 1,
		Route: []Stop{{OrderID: "A-" + id, Kind: StopDropoff, At: drop, PromiseBy: promise, Origin: origin}},
	}
}

func newJob(drop Point) Job {
	return Job{OrderID: "N", Pickup: store, Dropoff: drop, PromiseBy: now.Add(time.Hour)}
}

func ids(rs []Ranked) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.CourierID
	}
	return out
}

func TestScoreRanking(t *testing.T) {
	drop := move(store, 2000, 0)
	tests := []struct {
		name      string
		give      []Candidate
		want      []string // ranking
		excluded  map[string]string
		wantBatch string // the winner batches
	}{
		{
			name: "nearer idle wins",
			give: []Candidate{idle("far", move(store, 0, 3000), time.Minute), idle("near", move(store, 0, 500), time.Minute)},
			want: []string{"near", "far"},
		},
		{
			name:     "promise would break",
			give:     []Candidate{idle("remote", move(store, 0, 20_000), time.Minute), idle("ok", move(store, 0, 4000), 0)},
			want:     []string{"ok"},
			excluded: map[string]string{"remote": ReasonPromiseBreaks},
		},
		{
			name: "busy elsewhere would break its own promise",
			give: []Candidate{
				// carries an order 9 km away due in 25 min: appending ours after it is too late for ours
				carrying("busy", move(store, -500, 0), move(store, -1500, 0), move(store, -9000, 0), now.Add(30*time.Minute)),
				idle("ok", move(store, 0, 2500), 0),
			},
			want:     []string{"ok"},
			excluded: map[string]string{"busy": ReasonPromiseBreaks},
		},
		{
			name: "capacity full",
			give: []Candidate{
				{CourierID: "full", Lat: store.Lat, Lng: store.Lng, Load: 2, Capacity: 2},
				idle("ok", move(store, 0, 2500), 0),
			},
			want:     []string{"ok"},
			excluded: map[string]string{"full": ReasonFull},
		},
		{
			name: "batching at the same pick-up beats a far idle courier",
			give: []Candidate{
				idle("idle-far", move(store, 0, 4000), 30*time.Minute),
				carrying("batch", store, store, move(store, 2000, 300), now.Add(40*time.Minute)),
			},
			want:      []string{"batch", "idle-far"},
			wantBatch: "batch",
		},
		{
			name: "fewer orders today wins at equal cost",
			give: []Candidate{
				{CourierID: "a", Lat: store.Lat, Lng: store.Lng + 0.01, Capacity: 3, AssignedToday: 9},
				{CourierID: "b", Lat: store.Lat, Lng: store.Lng + 0.01, Capacity: 3, AssignedToday: 2},
			},
			want: []string{"b", "a"},
		},
		{
			name: "longer idle wins at equal cost",
			give: []Candidate{idle("a", move(store, 0, 800), 2*time.Minute), idle("b", move(store, 0, 800), 40*time.Minute)},
			want: []string{"b", "a"},
		},
		{
			name: "exact tie broken by courier id",
			give: []Candidate{idle("c2", move(store, 0, 800), 0), idle("c1", move(store, 0, 800), 0)},
			want: []string{"c1", "c2"},
		},
	}
	d := mustDispatcher(t, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ranked, excl := d.Score(newJob(drop), tt.give, now)
			if got := ids(ranked); !equal(got, tt.want) {
				t.Errorf("ranking = %v, want %v", got, tt.want)
				for _, r := range ranked {
					t.Logf("%s cost %.2f %+v", r.CourierID, r.Cost, r.Breakdown)
				}
			}
			gotEx := map[string]string{}
			for _, e := range excl {
				gotEx[e.CourierID] = e.Reason
			}
			if len(gotEx) != len(tt.excluded) {
				t.Errorf("excluded = %v, want %v", gotEx, tt.excluded)
			}
			for id, why := range tt.excluded {
				if gotEx[id] != why {
					t.Errorf("excluded[%s] = %q, want %q", id, gotEx[id], why)
				}
			}
			if tt.wantBatch != "" && len(ranked) > 0 {
				r := ranked[0]
				if r.CourierID != tt.wantBatch || !r.Breakdown.Batched {
					t.Errorf("winner %s batched=%v, want %s batched", r.CourierID, r.Breakdown.Batched, tt.wantBatch)
				}
				if r.Plan[0].OrderID != "N" || r.Plan[0].Kind != StopPickup {
					t.Errorf("batched plan should start with the new pick-up at the store: %+v", r.Plan)
				}
			}
		})
	}
}

func TestScoreBreakdownAddsUp(t *testing.T) {
	d := mustDispatcher(t, nil)
	c := carrying("b", store, store, move(store, 1500, 0), now.Add(50*time.Minute))
	c.AssignedToday = 4
	ranked, _ := d.Score(newJob(move(store, 1000, 500)), []Candidate{c}, now)
	if len(ranked) != 1 {
		t.Fatalf("ranked = %v", ranked)
	}
	r := ranked[0]
	tm := r.Breakdown.Terms
	if sum := tm.Pickup + tm.Detour + tm.Delivery + tm.Delay + tm.Slack + tm.Load + tm.Fairness; math.Abs(sum-r.Cost) > 1e-9 {
		t.Errorf("terms sum %v != cost %v", sum, r.Cost)
	}
	if len(r.Plan) != 3 || r.Breakdown.Load != 1 || r.DeliveryAt.After(now.Add(time.Hour)) || r.PickupAt.Before(now) {
		t.Errorf("ranked = %+v", r)
	}
	// The plan keeps the carried order's promise.
	if pred, ok := d.PredictDelivery("A-b", Point{Lat: c.Lat, Lng: c.Lng}, r.Plan, now); !ok || pred.After(now.Add(50*time.Minute-d.cfg.Margin)) {
		t.Errorf("carried order predicted %v ok=%v, promise %v", pred, ok, now.Add(50*time.Minute))
	}
	if pred, ok := d.PredictDelivery("N", Point{Lat: c.Lat, Lng: c.Lng}, r.Plan, now); !ok || !pred.Equal(r.DeliveryAt) {
		t.Errorf("PredictDelivery(N) = %v, want DeliveryAt %v", pred, r.DeliveryAt)
	}
}

func TestScoreBatchInsertion(t *testing.T) {
	// Courier at the store carries A to 2.5 km north (10.8 min ride);
	// the new drop-off is 500 m beyond A.
	tests := []struct {
		name    string
		promise time.Duration // A's promise from now
		want    []string      // plan as order/kind
	}{
		{"loose: pick up on the way", 25 * time.Minute, []string{"N/pickup", "A-b/dropoff", "N/dropoff"}},
		{"tight: deliver A first", 17 * time.Minute, []string{"A-b/dropoff", "N/pickup", "N/dropoff"}},
	}
	d := mustDispatcher(t, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := carrying("b", store, store, move(store, 2500, 0), now.Add(tt.promise))
			ranked, _ := d.Score(newJob(move(store, 2500, 500)), []Candidate{c}, now)
			if len(ranked) != 1 {
				t.Fatalf("batch courier excluded")
			}
			var got []string
			for _, s := range ranked[0].Plan {
				got = append(got, s.OrderID+"/"+string(s.Kind))
			}
			if !equal(got, tt.want) {
				t.Errorf("plan = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestScoreAlreadyLateOrderGetsNoLater(t *testing.T) {
	d := mustDispatcher(t, nil)
	// Carried order already late; appending the new job after it is fine,
	// inserting before it is not.
	c := carrying("b", store, store, move(store, 3000, 0), now.Add(-time.Minute))
	ranked, _ := d.Score(newJob(move(store, 500, 0)), []Candidate{c}, now)
	if len(ranked) != 1 {
		t.Fatal("courier with a late order excluded though appending delays nothing")
	}
	if p := ranked[0].Plan; p[0].OrderID != "A-b" {
		t.Errorf("late drop-off delayed: plan starts with %s %s", p[0].OrderID, p[0].Kind)
	}
}

// TestFeasibilityBatchesFromOnePickup is issue 15's case: one courier at a
// store with one order queued; a second order from the same store to the
// same neighbourhood fits the hour because one ride carries both (counting
// the queued order as a full round before it said 66 min).
func TestFeasibilityBatchesFromOnePickup(t *testing.T) {
	d := mustDispatcher(t, nil)
	ride := func(minutes float64) Point { return move(store, minutes*60/float64(testPace), 0) }
	queued := []Job{{OrderID: "q1", Pickup: store, Dropoff: move(ride(18), 0, 200), PromiseBy: now.Add(55 * time.Minute)}}
	f := d.Feasibility(store, ride(18), time.Time{}, []Candidate{idle("c1", store, 0)}, queued, now, false)
	if !f.Feasible || f.ETAMinutes > 40 {
		t.Fatalf("Feasibility = %+v, want feasible in one batched ride (about 6 + 18 + 3 + 3 min)", f)
	}
	// Full courier: the same order waits for a round and misses the hour.
	full := idle("c1", store, 0)
	full.Capacity = 1
	if f := d.Feasibility(store, ride(18), time.Time{}, []Candidate{full}, queued, now, false); f.Feasible {
		t.Fatalf("a one-order courier carries both: %+v", f)
	}
}

func TestFeasibility(t *testing.T) {
	d := mustDispatcher(t, nil)
	// Courier waits at the pick-up: handover = 3 min + ride + 3 min.
	rideFor := func(minutes float64) Point {
		return move(store, minutes*60/float64(testPace), 0)
	}
	at := []Candidate{idle("c1", store, 0)}
	solo := idle("c1", store, 0)
	solo.Capacity = 1 // carries one order at a time: nothing to batch
	queue := func(n int, ride float64) []Job {
		out := make([]Job, n)
		for i := range out {
			out[i] = Job{OrderID: fmt.Sprintf("q%d", i), Pickup: store, Dropoff: move(rideFor(ride), 0, 300), PromiseBy: now.Add(55 * time.Minute)}
		}
		return out
	}
	tests := []struct {
		name       string
		ride       float64
		cands      []Candidate
		queue      []Job
		allowLater bool
		readyIn    time.Duration
		want       bool
		wantLater  bool
		wantETA    float64
	}{
		{"59 min", 53, at, nil, false, 0, true, false, 59},
		{"61 min", 55, at, nil, false, 0, false, false, 61},
		{"61 min later", 55, at, nil, true, 0, false, true, 61},
		{"queue pushes past the hour", 20, []Candidate{solo}, queue(1, 20), true, 0, false, true, 26 + 3 + 20 + 3 + 20},
		{"queue absorbed by two couriers", 20, []Candidate{idle("c1", store, 0), idle("c2", store, 0)}, queue(1, 20), false, 0, true, false, 26},
		{"nobody", 10, nil, nil, true, 0, false, false, 0},
		// The merchant's preparation: the courier waits at the pick-up
		// until the parcel is ready (3 min hand-over, 20 min ride, 3 min).
		{"ready in 30", 20, at, nil, false, 30 * time.Minute, true, false, 56},
		{"ready in 40", 20, at, nil, false, 40 * time.Minute, false, false, 66},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ready time.Time
			if tt.readyIn > 0 {
				ready = now.Add(tt.readyIn)
			}
			f := d.Feasibility(store, rideFor(tt.ride), ready, tt.cands, tt.queue, now, tt.allowLater)
			if f.Feasible != tt.want || f.Later != tt.wantLater || math.Abs(f.ETAMinutes-tt.wantETA) > 0.11 {
				t.Fatalf("Feasibility = %+v, want feasible=%v later=%v eta=%v", f, tt.want, tt.wantLater, tt.wantETA)
			}
			switch {
			case f.Feasible && !f.PromiseBy.Equal(now.Add(time.Hour)):
				t.Errorf("promise %v, want now+1h", f.PromiseBy)
			case f.Later && (f.PromiseBy.Before(now.Add(time.Duration(tt.wantETA*float64(time.Minute)))) || f.PromiseBy.Minute()%5 != 0):
				t.Errorf("later promise %v is before the predicted handover or not on 5 minutes", f.PromiseBy)
			case !f.Feasible && !f.Later && !f.PromiseBy.IsZero():
				t.Errorf("refusal carries a promise %v", f.PromiseBy)
			}
			if f.Feasible != (f.Reason == "") {
				t.Errorf("reason %q: a refusal (or later promise) says why, a plain yes says nothing (api/openapi.yaml Quote.reason)", f.Reason)
			}
		})
	}
}

func TestOfferRound(t *testing.T) {
	ranked := []Ranked{{CourierID: "c1"}, {CourierID: "c2"}, {CourierID: "c3"}}
	r := NewOfferRound("o1", ranked, 0)
	o, err := r.Next(now)
	if err != nil || o.CourierID != "c1" || !o.ExpiresAt.Equal(now.Add(30*time.Second)) {
		t.Fatalf("first offer = %+v, %v", o, err)
	}
	if _, err := r.Next(now.Add(10 * time.Second)); !errors.Is(err, ErrOfferPending) {
		t.Errorf("Next while pending: %v, want ErrOfferPending", err)
	}
	if err := r.Decline("c2", now); !errors.Is(err, ErrNotOffered) {
		t.Errorf("decline by c2: %v, want ErrNotOffered", err)
	}
	// decline -> next
	if err := r.Decline("c1", now.Add(5*time.Second)); err != nil {
		t.Fatalf("decline: %v", err)
	}
	if o, err = r.Next(now.Add(5 * time.Second)); err != nil || o.CourierID != "c2" {
		t.Fatalf("after decline: %+v, %v", o, err)
	}
	// timeout -> next
	if o, err = r.Next(now.Add(35 * time.Second)); err != nil || o.CourierID != "c3" {
		t.Fatalf("after timeout: %+v, %v", o, err)
	}
	// late accept counts as expired
	if err := r.Accept("c3", now.Add(65*time.Second)); !errors.Is(err, ErrOfferExpired) {
		t.Errorf("late accept: %v, want ErrOfferExpired", err)
	}
	// exhausted
	if _, err := r.Next(now.Add(70 * time.Second)); !errors.Is(err, ErrNoCandidate) {
		t.Errorf("exhausted: %v, want ErrNoCandidate", err)
	}
	want := []OfferState{OfferDeclined, OfferExpired, OfferExpired}
	log := r.Log()
	for i, o := range log {
		if o.State != want[i] {
			t.Errorf("log[%d] = %s %s, want %s", i, o.CourierID, o.State, want[i])
		}
	}
	if len(log) != 3 {
		t.Errorf("log has %d offers", len(log))
	}
}

func TestOfferRoundAccept(t *testing.T) {
	r := NewOfferRound("o1", []Ranked{{CourierID: "c1"}, {CourierID: "c2"}}, 10*time.Second)
	if _, err := r.Next(now); err != nil {
		t.Fatal(err)
	}
	if err := r.Accept("c1", now.Add(9*time.Second)); err != nil {
		t.Fatalf("accept: %v", err)
	}
	if _, err := r.Next(now.Add(time.Minute)); !errors.Is(err, ErrNoCandidate) {
		t.Errorf("Next after accept: %v, want ErrNoCandidate (round closed)", err)
	}
	if _, err := NewOfferRound("o2", nil, 0).Next(now); !errors.Is(err, ErrNoCandidate) {
		t.Errorf("empty round: %v", err)
	}
}

func TestAtRisk(t *testing.T) {
	promise := now.Add(time.Hour)
	tests := []struct {
		give time.Time
		want bool
	}{
		{now.Add(50 * time.Minute), false},
		{now.Add(56 * time.Minute), true},
		{now.Add(61 * time.Minute), true},
	}
	for _, tt := range tests {
		if got := AtRisk(tt.give, promise, 5*time.Minute); got != tt.want {
			t.Errorf("AtRisk(%v) = %v, want %v", tt.give.Sub(now), got, tt.want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	bad := []func(*Config){
		func(c *Config) { c.Weights.Load = -1 },
		func(c *Config) { c.Weights.DetourMin = math.NaN() },
		func(c *Config) { c.Promise = 0 },
		func(c *Config) { c.OfferTimeout = 0 },
		func(c *Config) { c.DefaultCapacity = 0 },
		func(c *Config) { c.Margin = -time.Second },
	}
	for i, patch := range bad {
		c := Default()
		patch(&c)
		if _, err := New(c, testPace); !errors.Is(err, ErrConfig) {
			t.Errorf("case %d: err = %v, want ErrConfig", i, err)
		}
	}
	if _, err := New(Default(), nil); !errors.Is(err, ErrConfig) {
		t.Errorf("nil ETA accepted")
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestOfferRoundConcurrentAnswers(t *testing.T) {
	// A timer firing Next and a courier accepting race; exactly one wins.
	for range 50 {
		r := NewOfferRound("o1", []Ranked{{CourierID: "c1"}, {CourierID: "c2"}}, 10*time.Second)
		if _, err := r.Next(now); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 2)
		go func() { done <- r.Accept("c1", now.Add(9*time.Second)) }()
		go func() {
			_, err := r.Next(now.Add(11 * time.Second))
			done <- err
		}()
		errAccept, errNext := <-done, <-done
		log := r.Log()
		switch log[0].State {
		case OfferAccepted:
			if len(log) != 1 {
				t.Fatalf("accepted, yet offered on: %+v", log)
			}
		case OfferExpired:
			if len(log) != 2 || log[1].CourierID != "c2" {
				t.Fatalf("expired, but next offer missing: %+v", log)
			}
		default:
			t.Fatalf("first offer left %s (errors %v, %v)", log[0].State, errAccept, errNext)
		}
	}
}
