package cluster

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"

	"github.com/tawsil/tawsil/shared/wire"
)

// A dark store in Maarif, Casablanca, and a customer ~1.4 km away.
var (
	darkStore = [2]float64{33.5850, -7.6330}
	customer  = [2]float64{33.5780, -7.6200}
)

func bookBody(name string) map[string]any {
	return map[string]any{
		"pickup":   map[string]any{"lat": darkStore[0], "lng": darkStore[1], "address": "Dark store Maarif"},
		"dropoff":  map[string]any{"lat": customer[0], "lng": customer[1], "address": "Appartement " + name},
		"parcel":   map[string]any{"size": "S"},
		"customer": map[string]any{"name": name + " Alaoui", "phone": "+212612345678"},
	}
}

// TestCluster runs the multi-replica scenarios on one cluster (3 replicas,
// Mosquitto, one document store on FerretDB/PostgreSQL): starting it is the
// expensive part.
func TestCluster(t *testing.T) {
	c := NewCluster(t, replicasWant)
	c.StartAll()
	r := c.Replicas
	admin := r[0].Login(t, adminEmail, adminPass)
	dispatcher := r[1].NewUser(t, admin, "dispatcher")
	merchant := r[2].NewUser(t, admin, "merchant")

	// Couriers created, put on shift and positioned through different
	// replicas; each device publishes once.
	const nCouriers = 6
	couriers := make([]User, nCouriers)
	devices := make([]*Device, nCouriers)
	now := time.Now()
	for i := range couriers {
		couriers[i] = r[i%3].NewUser(t, admin, "courier")
		devices[i] = c.Connect(r[(i+1)%3], admin, couriers[i].CourierID)
		r[(i+2)%3].Must(t, 200, "POST", "/v1/me/shift", couriers[i].Token, map[string]any{"on_duty": true})
		devices[i].At(t, darkStore[0]+0.001*float64(i+1), darkStore[1], now)
	}

	t.Run("near", func(t *testing.T) {
		// Every replica's live index holds every courier, though each
		// replica stores only its share of the positions.
		for _, rep := range r {
			var last []byte
			defer func() {
				if t.Failed() {
					t.Logf("replica %d answered %s", rep.N, last)
				}
			}()
			eventually(t, fmt.Sprintf("replica %d sees every courier", rep.N), 15*time.Second, func() bool {
				var out struct {
					Couriers []struct {
						ID string `json:"id"`
					} `json:"couriers"`
				}
				res := rep.Must(t, 200, "GET", fmt.Sprintf("/v1/couriers?near=%f,%f&limit=50", darkStore[0], darkStore[1]), dispatcher.Token, nil)
				last = res.Body
				res.JSON(t, &out)
				seen := map[string]bool{}
				for _, c := range out.Couriers {
					seen[c.ID] = true
				}
				for _, u := range couriers {
					if !seen[u.CourierID] {
						return false
					}
				}
				return true
			})
		}
		// Off shift on one replica: gone from every replica's index.
		r[0].Must(t, 200, "POST", "/v1/me/shift", couriers[5].Token, map[string]any{"on_duty": false})
		for _, rep := range r {
			eventually(t, fmt.Sprintf("replica %d drops the off-shift courier", rep.N), 15*time.Second, func() bool {
				var out struct {
					Couriers []struct {
						ID string `json:"id"`
					} `json:"couriers"`
				}
				rep.Must(t, 200, "GET", fmt.Sprintf("/v1/couriers?near=%f,%f&limit=50&status=available", darkStore[0], darkStore[1]), dispatcher.Token, nil).JSON(t, &out)
				for _, c := range out.Couriers {
					if c.ID == couriers[5].CourierID {
						return false
					}
				}
				return true
			})
		}
	})

	t.Run("http", func(t *testing.T) {
		// A courier on Traccar Client reports over HTTP to one replica: every
		// replica's live index has it (relayed, not stored twice).
		defer func() {
			if t.Failed() {
				for _, rep := range r {
					t.Logf("replica %d logged:\n%s", rep.N, rep.Logs())
				}
			}
		}()
		// onDevice makes a courier on shift with device credentials.
		onDevice := func(via, shift *Replica) (u User, user, pass string) {
			u = via.NewUser(t, admin, "courier")
			var cred struct {
				Username string `json:"mqtt_username"`
				Password string `json:"mqtt_password"`
			}
			via.Must(t, 201, "POST", "/v1/couriers/"+u.CourierID+"/device-credentials", admin, nil).JSON(t, &cred)
			shift.Must(t, 200, "POST", "/v1/me/shift", u.Token, map[string]any{"on_duty": true})
			return u, cred.Username, cred.Password
		}
		// seenEverywhere waits until every replica's index has courier at lat.
		seenEverywhere := func(what, courier string, lat, lng float64) {
			for _, rep := range r {
				eventually(t, fmt.Sprintf("replica %d sees the %s courier", rep.N, what), 15*time.Second, func() bool {
					var out struct {
						Couriers []struct {
							ID  string  `json:"id"`
							Lat float64 `json:"lat"`
						} `json:"couriers"`
					}
					rep.Must(t, 200, "GET", fmt.Sprintf("/v1/couriers?near=%f,%f&limit=50", lat, lng), dispatcher.Token, nil).JSON(t, &out)
					for _, c := range out.Couriers {
						if c.ID == courier && c.Lat == lat {
							return true
						}
					}
					return false
				})
			}
		}
		u, user, pass := onDevice(r[0], r[1])
		lat, lng := darkStore[0]-0.002, darkStore[1]+0.001
		r[2].Must(t, 200, "GET", fmt.Sprintf("/v1/ingest/osmand?id=%s&key=%s&lat=%.6f&lon=%.6f&timestamp=%d&accuracy=5&batt=80",
			url.QueryEscape(user), url.QueryEscape(pass), lat, lng, time.Now().Add(-time.Second).Unix()), "", nil)
		seenEverywhere("Traccar Client", u.CourierID, lat, lng)
		// An OwnTracks app in HTTP mode, likewise.
		o, ouser, opass := onDevice(r[1], r[2])
		olat := lat + 0.0005
		r[0].Must(t, 200, "POST", "/v1/ingest/owntracks", "",
			map[string]any{"_type": "location", "lat": olat, "lon": lng, "tst": time.Now().Add(-time.Second).Unix(), "acc": 5},
			"Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(ouser+":"+opass)), "X-Limit-D", "phone")
		seenEverywhere("OwnTracks", o.CourierID, olat, lng)
		var track struct {
			Positions []json.RawMessage `json:"positions"`
		}
		r[0].Must(t, 200, "GET", "/v1/couriers/"+u.CourierID+"/track", admin, nil).JSON(t, &track)
		if len(track.Positions) != 1 {
			t.Errorf("track holds %d positions, want the one report once", len(track.Positions))
		}

		// available reports whether courier is among rep's available
		// couriers near the reports.
		available := func(rep *Replica, courier string) bool {
			var out struct {
				Couriers []struct {
					ID string `json:"id"`
				} `json:"couriers"`
			}
			rep.Must(t, 200, "GET", fmt.Sprintf("/v1/couriers?near=%f,%f&status=available&limit=50", lat, lng), dispatcher.Token, nil).JSON(t, &out)
			for _, c := range out.Couriers {
				if c.ID == courier {
					return true
				}
			}
			return false
		}
		for _, rep := range r {
			eventually(t, fmt.Sprintf("replica %d has the Traccar courier available", rep.N), 15*time.Second, func() bool { return available(rep, u.CourierID) })
		}

		// A broker that stops answering (SIGSTOP: its connections stay
		// up, paho holds every QoS 1 publish) holds up neither a device's
		// HTTP report nor a shift change: both are answered at once, the
		// report stored; the shift note reaches the other replicas once
		// the broker is back.
		if err := c.Mosq.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		frozen := true
		thaw := func() {
			if frozen {
				frozen = false
				if err := c.Mosq.cmd.Process.Signal(syscall.SIGCONT); err != nil {
					t.Error(err)
				}
			}
		}
		defer thaw()
		quick := &http.Client{Timeout: 5 * time.Second} // the shift change waits up to noteWait (1 s) for its note; the old code hung until the broker came back
		report := fmt.Sprintf("%s/v1/ingest/osmand?id=%s&key=%s&lat=%.6f&lon=%.6f&timestamp=%d&accuracy=5&batt=79", r[2].Base,
			url.QueryEscape(user), url.QueryEscape(pass), lat+0.0001, lng, time.Now().Unix())
		res, err := quick.Get(report)
		if err != nil {
			t.Fatalf("HTTP report with the broker not answering: %v", err)
		}
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Fatalf("HTTP report with the broker not answering = %d, want 200", res.StatusCode)
		}
		req, _ := http.NewRequest("POST", r[1].Base+"/v1/me/shift", strings.NewReader(`{"on_duty":false}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+u.Token)
		if res, err = quick.Do(req); err != nil {
			t.Fatalf("shift change with the broker not answering: %v", err)
		}
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Fatalf("shift change with the broker not answering = %d, want 200", res.StatusCode)
		}
		r[0].Must(t, 200, "GET", "/v1/couriers/"+u.CourierID+"/track", admin, nil).JSON(t, &track)
		if len(track.Positions) != 2 {
			t.Errorf("track holds %d positions, want the second report stored while the broker was away", len(track.Positions))
		}
		thaw()
		for _, rep := range r {
			eventually(t, fmt.Sprintf("replica %d sees the courier off shift", rep.N), 40*time.Second, func() bool { return !available(rep, u.CourierID) })
		}
	})

	t.Run("assign", func(t *testing.T) {
		// 20 dispatcher assigns of one order, spread over the 3 replicas: exactly one wins.
		o := book(t, r[0], merchant, "assign-race")
		codes := make([]int, 20)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range codes {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				<-start
				codes[i] = r[i%3].Do(t, "POST", "/v1/orders/"+o+"/assign", dispatcher.Token,
					map[string]any{"courier_id": couriers[i%4].CourierID}).Status
			}(i)
		}
		close(start)
		wg.Wait()
		won := 0
		for _, code := range codes {
			switch code {
			case 200:
				won++
			case 409:
			default:
				t.Errorf("assign answered %d", code)
			}
		}
		var evs struct {
			Events []struct {
				Action string `json:"action"`
			} `json:"events"`
		}
		r[1].Must(t, 200, "GET", "/v1/orders/"+o+"/events", dispatcher.Token, nil).JSON(t, &evs)
		assigns := 0
		for _, e := range evs.Events {
			if e.Action == "assign" {
				assigns++
			}
		}
		if won != 1 || assigns != 1 {
			t.Fatalf("20 racing assigns over 3 replicas: %d won (codes %v), %d assign events; want exactly 1", won, codes, assigns)
		}
	})

	t.Run("epoch", func(t *testing.T) {
		// Dispatch epochs (every 200 ms here) run on one replica each: a
		// booking is offered once, and one whose parcel is ready in 30
		// minutes is held (its couriers would be more than the 10 min
		// commit lead early), through many epochs on every replica.
		later := bookBody("Later")
		later["ready_in_min"] = 30
		var held struct {
			ID      string `json:"id"`
			ReadyAt string `json:"ready_at"`
		}
		r[0].Must(t, 201, "POST", "/v1/orders", merchant.Token, later, "Idempotency-Key", "epoch-later").JSON(t, &held)
		now := book(t, r[1], merchant, "epoch-now")
		offers := func(id string) int {
			var evs struct {
				Events []struct {
					Action string `json:"action"`
				} `json:"events"`
			}
			r[2].Must(t, 200, "GET", "/v1/orders/"+id+"/events", dispatcher.Token, nil).JSON(t, &evs)
			n := 0
			for _, e := range evs.Events {
				if e.Action == "offer" {
					n++
				}
			}
			return n
		}
		eventually(t, "the booking ready now is offered", 15*time.Second, func() bool { return offers(now) > 0 })
		time.Sleep(2 * time.Second) // ten more epochs
		if n, h := offers(now), offers(held.ID); n != 1 || h != 0 || held.ReadyAt == "" {
			t.Fatalf("offers: %d of the order ready now (want 1), %d of the one ready in 30 min (want 0, ready_at %q)", n, h, held.ReadyAt)
		}
		for _, id := range []string{now, held.ID} {
			r[0].Must(t, 200, "POST", "/v1/orders/"+id+"/cancel", merchant.Token, map[string]any{"reason": "test"})
		}
	})

	t.Run("webhooks", func(t *testing.T) {
		// A day of orders booked and cancelled through every replica: the
		// receiver sees every event id of the outbox, each delivered once,
		// except the retries it asked for by failing a first attempt.
		sink := newSink()
		defer sink.srv.Close()
		r[0].Must(t, 201, "POST", "/v1/webhooks", merchant.Token, map[string]any{"url": sink.srv.URL,
			"events": []string{"order.booked", "order.cancelled"}}, "Idempotency-Key", "cluster-webhook")
		const nOrders = 24
		for i := 0; i < nOrders; i++ {
			id := book(t, r[i%3], merchant, fmt.Sprintf("day-%d", i))
			r[(i+1)%3].Must(t, 200, "POST", "/v1/orders/"+id+"/cancel", merchant.Token, map[string]any{"reason": "customer changed mind"})
		}
		want := outboxIDs(t, c, merchant.MerchantID)
		if len(want) < 2*nOrders {
			t.Fatalf("outbox holds %d deliveries for %d booked+cancelled orders", len(want), nOrders)
		}
		eventually(t, "every event delivered", 60*time.Second, func() bool { return sink.delivered(want) })
		time.Sleep(2 * time.Second) // the senders' next rounds: a duplicate would show now
		got, failed := sink.counts()
		var dups []string
		for _, id := range want {
			if got[id] != 1+failed[id] {
				dups = append(dups, fmt.Sprintf("%s: %d deliveries, %d failed on purpose", id, got[id], failed[id]))
			}
		}
		retried := 0
		for _, n := range failed {
			retried += n
		}
		t.Logf("%d events, %d retried after a failed first attempt", len(want), retried)
		if len(dups) > 0 {
			sort.Strings(dups)
			t.Fatalf("%d of %d events not delivered exactly once (plus asked retries): %v", len(dups), len(want), dups)
		}
	})

	t.Run("killed", func(t *testing.T) {
		// A replica killed with SIGKILL and started again (same port, same
		// client id) serves a full live index again once devices publish.
		c.Kill(3)
		for i, d := range devices[:5] {
			d.At(t, darkStore[0]+0.001*float64(i+1), darkStore[1]+0.0005, time.Now())
		}
		for _, rep := range r[:2] {
			eventually(t, fmt.Sprintf("replica %d serves while 3 is down", rep.N), 15*time.Second, func() bool {
				return seesAll(t, rep, dispatcher.Token, onShift(couriers[:5]))
			})
		}
		c.Start(3)
		for i, d := range devices[:5] {
			d.At(t, darkStore[0]+0.001*float64(i+1), darkStore[1]+0.001, time.Now())
		}
		eventually(t, "restarted replica sees every courier", 15*time.Second, func() bool {
			return seesAll(t, r[2], dispatcher.Token, onShift(couriers[:5]))
		})
	})

	t.Run("tasks", func(t *testing.T) {
		// The agent applies a task only if its number is above the last one
		// applied (agent/internal/tasks): tasks published by different
		// replicas must keep increasing per device, or newer offers and
		// plans would be dropped as stale; none may come twice. Orders booked,
		// assigned and cancelled through different replicas make them.
		count := func() int {
			n := 0
			for _, d := range devices {
				n += len(d.Tasks())
			}
			return n
		}
		before := count()
		for i := 0; i < 3; i++ {
			id := book(t, r[i], merchant, fmt.Sprintf("tasks-%d", i))
			r[(i+1)%3].Must(t, 200, "POST", "/v1/orders/"+id+"/assign", dispatcher.Token, map[string]any{"courier_id": couriers[0].CourierID})
			r[(i+2)%3].Must(t, 200, "POST", "/v1/orders/"+id+"/cancel", merchant.Token, map[string]any{"reason": "test"})
		}
		eventually(t, "tasks from every replica", 15*time.Second, func() bool { return count() >= before+6 })
		for i, d := range devices {
			var last, lastPlan uint64
			for _, tk := range d.Tasks() {
				if tk.Seq <= last {
					t.Errorf("courier %d: task %s seq %d after %d: the agent drops it as stale", i, tk.Type, tk.Seq, last)
				}
				last = tk.Seq
				if tk.Type == wire.TaskRoutePlan && tk.Route != nil {
					if tk.Route.Version < lastPlan {
						t.Errorf("courier %d: route plan version %d after %d", i, tk.Route.Version, lastPlan)
					}
					lastPlan = tk.Route.Version
				}
			}
		}
	})
}

func onShift(us []User) []string {
	var ids []string
	for _, u := range us {
		ids = append(ids, u.CourierID)
	}
	return ids
}

// seesAll reports whether rep's GET /v1/couriers?near= lists every one of ids.
func seesAll(t *testing.T, rep *Replica, token string, ids []string) bool {
	t.Helper()
	var out struct {
		Couriers []struct {
			ID string `json:"id"`
		} `json:"couriers"`
	}
	rep.Must(t, 200, "GET", fmt.Sprintf("/v1/couriers?near=%f,%f&limit=50", darkStore[0], darkStore[1]), token, nil).JSON(t, &out)
	seen := map[string]bool{}
	for _, c := range out.Couriers {
		seen[c.ID] = true
	}
	for _, id := range ids {
		if !seen[id] {
			return false
		}
	}
	return true
}

func book(tb testing.TB, r *Replica, merchant User, key string) string {
	tb.Helper()
	var o struct {
		ID string `json:"id"`
	}
	r.Must(tb, 201, "POST", "/v1/orders", merchant.Token, bookBody("Brahim"), "Idempotency-Key", key).JSON(tb, &o)
	return o.ID
}

// outboxIDs reads the merchant's webhook deliveries from the shared store.
func outboxIDs(tb testing.TB, c *Cluster, merchantID string) []string {
	tb.Helper()
	ctx := context.Background()
	cl, err := mongo.Connect(ctx, options.Client().ApplyURI(c.StoreURI))
	if err != nil {
		tb.Fatal(err)
	}
	defer cl.Disconnect(ctx)
	cur, err := cl.Database(c.DB).Collection("webhook_outbox").Find(ctx, bson.M{})
	if err != nil {
		tb.Fatal(err)
	}
	var docs []bson.M
	if err := cur.All(ctx, &docs); err != nil {
		tb.Fatal(err)
	}
	var ids []string
	for _, d := range docs {
		ids = append(ids, fmt.Sprint(d["_id"]))
	}
	return ids
}

// sink is a webhook receiver that fails the first attempt of every third
// event id it sees (so retries happen) and counts deliveries per id.
type sink struct {
	mu     sync.Mutex
	got    map[string]int
	failed map[string]int
	srv    *httptest.Server
}

func newSink() *sink {
	s := &sink{got: map[string]int{}, failed: map[string]int{}}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("Tawsil-Event-Id")
		s.mu.Lock()
		defer s.mu.Unlock()
		s.got[id]++
		if s.got[id] == 1 && len(s.got)%3 == 0 {
			s.failed[id]++
			w.WriteHeader(503)
			return
		}
		w.WriteHeader(204)
	}))
	return s
}

func (s *sink) delivered(ids []string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		if s.got[id] <= s.failed[id] {
			return false
		}
	}
	return true
}

func (s *sink) counts() (got, failed map[string]int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	got, failed = map[string]int{}, map[string]int{}
	for k, v := range s.got {
		got[k] = v
	}
	for k, v := range s.failed {
		failed[k] = v
	}
	return got, failed
}
