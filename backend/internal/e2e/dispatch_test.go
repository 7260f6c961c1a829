package e2e

import (
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tawsil/tawsil/backend/internal/config"
	"github.com/tawsil/tawsil/shared/wire"
)

func TestOfferLoopAndAssignRace(t *testing.T) {
	b := mustBackend(t, func(c *config.Config) { c.OfferTimeout = 2 * time.Second })
	admin, _ := b.login(t, adminEmail, adminPass)
	merchant := b.mustUser(t, admin, "merchant")
	d1 := b.mustUser(t, admin, "dispatcher")
	d2 := b.mustUser(t, admin, "dispatcher")
	near := b.mustCourierDevice(t, admin)
	far := b.mustCourierDevice(t, admin)
	now := time.Now().Add(-10 * time.Minute) // device times leave room for realistic rides later
	near.at(t, [2]float64{store[0] + 0.002, store[1]}, now)
	far.at(t, [2]float64{store[0] + 0.02, store[1]}, now)

	o := b.book(t, merchant, "race-1", bookBody(custB, "Brahim"))
	// The nearer courier is offered first; a decline passes it on.
	if off := near.waitTask(t, wire.TaskOffer); off.OrderID != o.ID {
		t.Fatalf("first offer: %+v", off)
	}
	b.mustStatus(t, 403, "POST", "/v1/orders/"+o.ID+"/decline", merchant.Token, nil)
	b.mustStatus(t, 404, "POST", "/v1/orders/"+o.ID+"/accept", far.Token, nil) // not offered to far yet
	b.mustStatus(t, 200, "POST", "/v1/orders/"+o.ID+"/decline", near.Token, map[string]any{"reason": "flat tyre"})
	if off := far.waitTask(t, wire.TaskOffer); off.OrderID != o.ID {
		t.Fatalf("second offer: %+v", off)
	}
	// The far courier lets it expire; nobody is left: dispatchers are asked.
	far.waitTask(t, wire.TaskOfferExpired)
	eventually(t, "order flagged for dispatchers", 10*time.Second, func() bool {
		r := b.do(t, "GET", "/v1/orders/"+o.ID, d1.Token, nil)
		m := r.m(t)
		flags, _ := m["flags"].(map[string]any)
		return m["status"] == "booked" && flags["needs_dispatcher"] == true
	})
	// Two dispatchers assign at once: exactly one wins.
	var wg sync.WaitGroup
	codes := make([]int, 2)
	for i, tok := range []string{d1.Token, d2.Token} {
		wg.Add(1)
		go func(i int, tok, courier string) {
			defer wg.Done()
			codes[i] = b.do(t, "POST", "/v1/orders/"+o.ID+"/assign", tok, map[string]any{"courier_id": courier}).status
		}(i, tok, []string{near.CourierID, far.CourierID}[i])
	}
	wg.Wait()
	if !(codes[0] == 200 && codes[1] == 409 || codes[0] == 409 && codes[1] == 200) {
		t.Fatalf("racing assigns answered %v, want one 200 and one 409", codes)
	}
	r := b.mustStatus(t, 200, "GET", "/v1/orders/"+o.ID+"/events", d1.Token, nil)
	var evs struct {
		Events []struct {
			Action string `json:"action"`
		} `json:"events"`
	}
	r.json(t, &evs)
	assigns := 0
	for _, e := range evs.Events {
		if e.Action == "assign" {
			assigns++
		}
	}
	if assigns != 1 {
		t.Fatalf("%d assign events, want 1: %s", assigns, r.body)
	}
	// A merchant may cancel before pick-up; a courier never.
	winner := near
	if codes[1] == 200 {
		winner = far
	}
	b.mustStatus(t, 403, "POST", "/v1/orders/"+o.ID+"/cancel", winner.Token, nil)
	b.mustStatus(t, 200, "POST", "/v1/orders/"+o.ID+"/cancel", merchant.Token, map[string]any{"reason": "customer changed mind"})
	if c := winner.waitTask(t, wire.TaskCancellation); c.OrderID != o.ID {
		t.Fatalf("cancellation task: %+v", c)
	}
	b.mustStatus(t, 409, "POST", "/v1/orders/"+o.ID+"/cancel", merchant.Token, nil)

	// Cash on delivery: the courier must record the amount due.
	body := bookBody(custB, "Brahim")
	body["cod_amount_mad"] = 249.5
	cod := b.book(t, merchant, "cod-1", body)
	b.mustStatus(t, 200, "POST", "/v1/orders/"+cod.ID+"/assign", d1.Token, map[string]any{"courier_id": winner.CourierID})
	winner.at(t, store, time.Now())
	b.mustStatus(t, 200, "POST", "/v1/orders/"+cod.ID+"/pickup", winner.Token, nil)
	// A scooter ride the test does not replay: a fix dated ahead no longer
	// buys the distance, but consistent fixes at the door re-anchor the courier.
	at := time.Now()
	winner.at(t, custB, at, at.Add(time.Second), at.Add(2*time.Second))
	b.mustStatus(t, 400, "POST", "/v1/orders/"+cod.ID+"/deliver", winner.Token, map[string]any{"handover_code": cod.HandoverCode, "cash_collected_mad": 200})
	b.mustStatus(t, 200, "POST", "/v1/orders/"+cod.ID+"/deliver", winner.Token, map[string]any{"handover_code": cod.HandoverCode, "cash_collected_mad": 249.5})
	r = b.mustStatus(t, 200, "GET", "/v1/orders/"+cod.ID, merchant.Token, nil)
	if r.m(t)["cash_collected_mad"] != 249.5 {
		t.Fatalf("cash not recorded: %s", r.body)
	}

	// The day as /metrics tells it: two bookings (not one per expiry),
	// offers made, declined and expired, a dispatcher asked, two manual
	// assignments, one delivery, one cancellation, devices connected.
	mt := b.metrics(t)
	for _, c := range []struct {
		series   string
		min, max float64
	}{
		{`tawsil_order_events_total{event="order.booked"}`, 2, 2},
		{`tawsil_order_events_total{event="order.offer_declined"}`, 1, 1},
		{`tawsil_order_events_total{event="order.offer_expired"}`, 1, 100},
		{`tawsil_order_events_total{event="order.delivered"}`, 1, 1},
		{`tawsil_order_events_total{event="order.cancelled"}`, 1, 1},
		{`tawsil_offers_total{outcome="made"}`, 2, 100},
		{`tawsil_offers_total{outcome="declined"}`, 1, 1},
		{`tawsil_offers_total{outcome="expired"}`, 1, 100},
		{`tawsil_dispatch_total{outcome="offered"}`, 2, 100},
		{`tawsil_dispatch_total{outcome="needs_dispatcher"}`, 1, 100},
		{`tawsil_dispatch_total{outcome="assigned"}`, 2, 2},
		{`tawsil_orders_needs_dispatcher`, 0, 0},
		{`tawsil_stream_clients`, 0, 0},
		{`tawsil_mqtt_sessions`, 2, 100},
	} {
		v, ok := mt[c.series]
		if !ok || v < c.min || v > c.max {
			t.Errorf("%s = %v (present %v), want %v..%v", c.series, v, ok, c.min, c.max)
		}
	}
}

// metrics reads /metrics into series → value.
func (b *backend) metrics(tb testing.TB) map[string]float64 {
	tb.Helper()
	out := map[string]float64{}
	for _, line := range strings.Split(string(b.mustStatus(tb, 200, "GET", "/metrics", "", nil).body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			tb.Fatalf("metrics line %q", line)
		}
		out[line[:i]] = v
	}
	return out
}
