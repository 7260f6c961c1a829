package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/tawsil/tawsil/backend/internal/config"
	"github.com/tawsil/tawsil/shared/topic"
	"github.com/tawsil/tawsil/shared/wire"
)

// Casablanca: a dark store in Maarif and three customers around it.
var (
	store = [2]float64{33.5850, -7.6330}
	custA = [2]float64{33.5950, -7.6180} // ~1.8 km
	custB = [2]float64{33.5780, -7.6200} // ~1.4 km
	custC = [2]float64{33.5900, -7.6450} // ~1.2 km
)

// courierDevice is a courier with a connected device.
type courierDevice struct {
	user
	dev    device
	client paho.Client
	seq    uint64
	tasks  chan wire.Task
}

func (b *backend) mustCourierDevice(tb testing.TB, admin string) *courierDevice {
	tb.Helper()
	u := b.mustUser(tb, admin, "courier")
	cd := &courierDevice{user: u, dev: b.mustDevice(tb, admin, u.CourierID), tasks: make(chan wire.Task, 100)}
	c, err := connect(tb, b.MQTTAddr(), cd.dev.ClientID, cd.dev.Username, cd.dev.Password, &wire.State{}, topic.Courier(topic.DefaultPrefix, u.CourierID, topic.State))
	if err != nil {
		tb.Fatal(err)
	}
	cd.client = c
	tok := c.Subscribe(topic.Courier(topic.DefaultPrefix, u.CourierID, topic.Tasks), 1, func(_ paho.Client, m paho.Message) {
		t, err := wire.DecodeTask(m.Payload())
		if err == nil {
			cd.tasks <- t
		}
	})
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		tb.Fatalf("subscribe tasks: %v", tok.Error())
	}
	b.mustStatus(tb, 200, "POST", "/v1/me/shift", u.Token, map[string]any{"on_duty": true})
	return cd
}

// at publishes fixes at p for the given device times (in order).
func (cd *courierDevice) at(tb testing.TB, p [2]float64, times ...time.Time) {
	tb.Helper()
	var fs []wire.Fix
	for _, t := range times {
		cd.seq++
		fs = append(fs, wire.Fix{Seq: cd.seq, Time: t.UTC().Truncate(time.Millisecond), Lat: p[0], Lng: p[1], Accuracy: 6, Speed: 0, Heading: wire.Unknown, Battery: 70})
	}
	mustPublish(tb, cd.client, topic.Courier(topic.DefaultPrefix, cd.CourierID, topic.Pos), mustEncode(tb, fs), false)
}

// waitTask waits for a task message of a type on the device.
func (cd *courierDevice) waitTask(tb testing.TB, typ string) wire.Task {
	tb.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case t := <-cd.tasks:
			if t.Type == typ {
				return t
			}
		case <-deadline:
			tb.Fatalf("no %s task arrived", typ)
		}
	}
}

func bookBody(drop [2]float64, name string) map[string]any {
	return map[string]any{
		"pickup":   map[string]any{"lat": store[0], "lng": store[1], "address": "Dark store Maarif"},
		"dropoff":  map[string]any{"lat": drop[0], "lng": drop[1], "address": "Appartement " + name},
		"parcel":   map[string]any{"size": "S"},
		"customer": map[string]any{"name": name + " Alaoui", "phone": "+212612345678"},
	}
}

type orderOut struct {
	ID            string    `json:"id"`
	Status        string    `json:"status"`
	PromiseBy     time.Time `json:"promise_by"`
	TrackingToken string    `json:"tracking_token"`
	HandoverCode  string    `json:"handover_code"`
	PriceMAD      float64   `json:"price_mad"`
	CourierID     string    `json:"courier_id"`
	CustomerPhone string    `json:"customer_phone"`
}

func (b *backend) book(tb testing.TB, merchant user, key string, body map[string]any) orderOut {
	tb.Helper()
	r := b.mustStatus(tb, 201, "POST", "/v1/orders", merchant.Token, body, "Idempotency-Key", key)
	var o orderOut
	r.json(tb, &o)
	if o.Status != "booked" || o.HandoverCode == "" || o.TrackingToken == "" || o.PriceMAD <= 0 {
		tb.Fatalf("booking answer: %s", r.body)
	}
	return o
}

// webhookSink records signed webhook deliveries.
type webhookSink struct {
	mu     sync.Mutex
	events []map[string]any
	sigs   []string
	srv    *httptest.Server
}

func newSink(tb testing.TB) *webhookSink {
	s := &webhookSink{}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev map[string]any
		if err := json.NewDecoder(r.Body).Decode(&ev); err != nil {
			w.WriteHeader(400)
			return
		}
		s.mu.Lock()
		s.events = append(s.events, ev)
		s.sigs = append(s.sigs, r.Header.Get("Tawsil-Signature"))
		s.mu.Unlock()
	}))
	tb.Cleanup(s.srv.Close)
	return s
}

func (s *webhookSink) types() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, e := range s.events {
		out = append(out, fmt.Sprint(e["type"]))
	}
	return out
}

func TestDeliveryWithFailedAttemptAndReroute(t *testing.T) {
	b := mustBackend(t, func(c *config.Config) { c.WebhookAllowPrivate = true })
	admin, _ := b.login(t, adminEmail, adminPass)
	merchant := b.mustUser(t, admin, "merchant")
	dispatcher := b.mustUser(t, admin, "dispatcher")
	sink := newSink(t)
	b.mustStatus(t, 201, "POST", "/v1/webhooks", merchant.Token, map[string]any{"url": sink.srv.URL, "events": []string{"order.booked", "order.failed_attempt", "order.delivered"}})

	// No courier yet: an hour cannot be promised.
	b.mustStatus(t, 409, "POST", "/v1/orders", merchant.Token, bookBody(custA, "Amina"), "Idempotency-Key", "k-none")
	cd := b.mustCourierDevice(t, admin)
	t0 := time.Now().Add(-20 * time.Minute)
	cd.at(t, store, t0)

	// Book three orders; each is offered to our only courier, who accepts.
	var orders []orderOut
	for i, c := range []struct {
		p    [2]float64
		name string
	}{{custA, "Amina"}, {custB, "Brahim"}, {custC, "Chaimae"}} {
		o := b.book(t, merchant, fmt.Sprintf("key-%d", i), bookBody(c.p, c.name))
		offer := cd.waitTask(t, wire.TaskOffer)
		if offer.OrderID != o.ID || offer.Order == nil || offer.ExpiresAt == nil {
			t.Fatalf("offer for %s: %+v", o.ID, offer)
		}
		if strings.Contains(fmt.Sprint(offer.Order), "+212") {
			t.Fatal("the courier's offer carries the customer's phone")
		}
		b.mustStatus(t, 200, "POST", "/v1/orders/"+o.ID+"/accept", cd.Token, nil)
		cd.waitTask(t, wire.TaskAssignment)
		orders = append(orders, o)
	}
	// Replaying a booking returns the same order; another body under the key is refused.
	r := b.mustStatus(t, 200, "POST", "/v1/orders", merchant.Token, bookBody(custA, "Amina"), "Idempotency-Key", "key-0")
	if r.m(t)["id"] != orders[0].ID {
		t.Fatalf("replay gave another order: %s", r.body)
	}
	b.mustStatus(t, 422, "POST", "/v1/orders", merchant.Token, bookBody(custB, "Amina"), "Idempotency-Key", "key-0")

	// Delivering before pick-up is an illegal transition; picking up far away is refused.
	b.mustStatus(t, 409, "POST", "/v1/orders/"+orders[1].ID+"/deliver", cd.Token, map[string]any{"handover_code": orders[1].HandoverCode})
	for _, o := range orders {
		b.mustStatus(t, 200, "POST", "/v1/orders/"+o.ID+"/pickup", cd.Token, nil)
	}

	// Ride to A and wait at the door for 2.5 minutes, calling twice.
	cd.at(t, custA, t0.Add(4*time.Minute), t0.Add(5*time.Minute), t0.Add(5*time.Minute+40*time.Second),
		t0.Add(6*time.Minute+20*time.Second), t0.Add(7*time.Minute))
	r = b.mustStatus(t, 200, "POST", "/v1/orders/"+orders[0].ID+"/fail", cd.Token,
		map[string]any{"reason": "CUSTOMER_UNAVAILABLE", "note": "no answer at the door", "evidence": map[string]any{"call_attempts": 2}})
	var fail struct {
		Attempt struct {
			N        int    `json:"n"`
			Reason   string `json:"reason"`
			Verified bool   `json:"verified"`
		} `json:"attempt"`
		Decision struct {
			Action string `json:"action"`
			Rule   string `json:"rule"`
		} `json:"decision"`
		Route struct {
			Stops []struct {
				OrderID string    `json:"order_id"`
				Kind    string    `json:"kind"`
				ETA     time.Time `json:"eta"`
			} `json:"stops"`
		} `json:"route"`
	}
	r.json(t, &fail)
	if fail.Attempt.N != 1 || !fail.Attempt.Verified || fail.Decision.Action != "retry_later" || fail.Decision.Rule != "unavailable-same-route" {
		t.Fatalf("fail answer: %s", r.body)
	}
	if n := len(fail.Route.Stops); n != 3 || fail.Route.Stops[n-1].OrderID != orders[0].ID {
		t.Fatalf("failed order not moved after the next stops: %s", r.body)
	}
	// The device receives the re-ordered route over MQTT, with a higher sequence.
	var plan wire.Task
	for {
		plan = cd.waitTask(t, wire.TaskRoutePlan)
		if strings.Contains(plan.Reason, "retry_later") {
			break
		}
	}
	if len(plan.Route.Stops) != 3 || plan.Route.Stops[2].OrderID != orders[0].ID || plan.Route.Stops[2].Kind != "dropoff" {
		t.Fatalf("route plan on MQTT: %+v", plan.Route)
	}

	// A wrong handover code is refused; the right one delivers B and C.
	cd.at(t, custB, t0.Add(10*time.Minute))
	b.mustStatus(t, 422, "POST", "/v1/orders/"+orders[1].ID+"/deliver", cd.Token, map[string]any{"handover_code": "000000x"})
	b.mustStatus(t, 200, "POST", "/v1/orders/"+orders[1].ID+"/deliver", cd.Token, map[string]any{"handover_code": orders[1].HandoverCode})
	cd.at(t, custC, t0.Add(15*time.Minute))
	b.mustStatus(t, 200, "POST", "/v1/orders/"+orders[2].ID+"/deliver", cd.Token, map[string]any{"handover_code": orders[2].HandoverCode})
	// Back to A: the retry succeeds.
	cd.at(t, custA, time.Now())
	b.mustStatus(t, 200, "POST", "/v1/orders/"+orders[0].ID+"/deliver", cd.Token, map[string]any{"handover_code": orders[0].HandoverCode})

	// KPIs count one failed attempt and three deliveries.
	r = b.mustStatus(t, 200, "GET", "/v1/kpis", dispatcher.Token, nil)
	var k struct {
		KPIs []struct {
			Orders         int      `json:"orders"`
			Delivered      int      `json:"delivered"`
			FailedAttempts int      `json:"failed_attempts"`
			OnTimeRate     *float64 `json:"on_time_rate"`
		} `json:"kpis"`
	}
	r.json(t, &k)
	if len(k.KPIs) != 1 || k.KPIs[0].Orders != 3 || k.KPIs[0].Delivered != 3 || k.KPIs[0].FailedAttempts != 1 || k.KPIs[0].OnTimeRate == nil {
		t.Fatalf("kpis: %s", r.body)
	}
	// The order's events tell the whole story.
	r = b.mustStatus(t, 200, "GET", "/v1/orders/"+orders[0].ID+"/events", merchant.Token, nil)
	for _, want := range []string{`"booked"`, `"offered"`, `"assigned"`, `"picked_up"`, `"failed_attempt"`, `"reattempt_scheduled"`, `"delivered"`} {
		if !strings.Contains(string(r.body), want) {
			t.Fatalf("events lack %s: %s", want, r.body)
		}
	}
	// Webhooks arrived, signed.
	eventually(t, "webhooks delivered", 10*time.Second, func() bool { return len(sink.types()) >= 3+1+3 })
	got := strings.Join(sink.types(), ",")
	for _, want := range []string{"order.booked", "order.failed_attempt", "order.delivered"} {
		if !strings.Contains(got, want) {
			t.Fatalf("webhook %s missing: %s", want, got)
		}
	}
	sink.mu.Lock()
	sig := sink.sigs[0]
	sink.mu.Unlock()
	if !strings.HasPrefix(sig, "t=") || !strings.Contains(sig, ",v1=") {
		t.Fatalf("webhook signature header: %q", sig)
	}
	// Public tracking shows status, no personal data.
	r = b.mustStatus(t, 200, "GET", "/v1/track/"+orders[0].TrackingToken, "", nil)
	if strings.Contains(string(r.body), "Amina") || strings.Contains(string(r.body), "+212") || r.m(t)["status"] != "delivered" {
		t.Fatalf("track: %s", r.body)
	}
	// Logs never hold secrets.
	assertNoSecrets(t, b.logs.String(), adminPass, merchant.Password, cd.Password, cd.dev.Password, "+212612345678", "612345678", admin, orders[0].TrackingToken)
	// Six-digit codes could match inside timestamps or ids by chance: look
	// for them as whole JSON values and fields.
	for _, o := range orders {
		assertNoSecrets(t, b.logs.String(), `"`+o.HandoverCode+`"`, "="+o.HandoverCode, "handover_code")
	}
}

func assertNoSecrets(tb testing.TB, logs string, secrets ...string) {
	tb.Helper()
	for _, s := range secrets {
		if i := strings.Index(logs, s); i >= 0 {
			lo, hi := max(0, i-200), min(len(logs), i+200)
			tb.Fatalf("log output contains a secret %q: ...%s...", s, logs[lo:hi])
		}
	}
}
