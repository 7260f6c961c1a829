package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/tawsil/tawsil/shared/wire"
)

// A booking may carry the merchant's preparation time (ready_in_min): a bad
// one is a problem in the client's language; a parcel ready in 30 minutes is
// held by the dispatch epochs (its courier would be more than the 10 min
// commit lead early) while a booking ready now, made later, is offered.
func TestReadyInHeldByEpochs(t *testing.T) {
	b := mustBackend(t, nil)
	admin, _ := b.login(t, adminEmail, adminPass)
	merchant := b.mustUser(t, admin, "merchant")
	c := b.mustCourierDevice(t, admin)
	c.at(t, [2]float64{store[0] + 0.002, store[1]}, time.Now())

	for _, give := range []any{-1, 46, "soon"} {
		body := bookBody(custB, "Brahim")
		body["ready_in_min"] = give
		r := b.do(t, "POST", "/v1/orders", merchant.Token, body, "Idempotency-Key", "bad-ready", "Accept-Language", "fr")
		if r.status != 400 || !strings.HasPrefix(r.header.Get("Content-Type"), "application/problem+json") {
			t.Fatalf("ready_in_min %v: %d %s", give, r.status, r.body)
		}
		if give != "soon" && !strings.Contains(string(r.body), "ready_in_min doit être entre 0 et 45") {
			t.Fatalf("ready_in_min %v: detail %s", give, r.body)
		}
	}

	// The quote counts the preparation: the courier beside the store waits
	// for the parcel, so ready in 30 hands over about 30 min (less its 1 min
	// ride to the store) later than ready now; a bad value is refused too.
	quote := func(readyIn any) (int, float64) {
		body := bookBody(custB, "Brahim")
		delete(body, "customer")
		body["ready_in_min"] = readyIn
		r := b.do(t, "POST", "/v1/quotes", merchant.Token, body)
		var q struct {
			ETAMinutes float64 `json:"eta_minutes"`
		}
		if r.status == 200 {
			r.json(t, &q)
		}
		return r.status, q.ETAMinutes
	}
	_, etaNow := quote(0)
	if st, eta := quote(30); st != 200 || eta < etaNow+28 {
		t.Fatalf("quote ready in 30: %d, eta %.1f min; ready now: %.1f min", st, eta, etaNow)
	}
	if st, _ := quote(46); st != 400 {
		t.Fatalf("quote ready in 46: %d, want 400", st)
	}

	later := bookBody(custB, "Brahim")
	later["ready_in_min"] = 30
	booked := time.Now()
	r := b.mustStatus(t, 201, "POST", "/v1/orders", merchant.Token, later, "Idempotency-Key", "ready-later")
	var held struct {
		ID      string    `json:"id"`
		ReadyAt time.Time `json:"ready_at"`
	}
	r.json(t, &held)
	if d := held.ReadyAt.Sub(booked); d < 29*time.Minute || d > 31*time.Minute {
		t.Fatalf("ready_at %v, booked %v", held.ReadyAt, booked)
	}
	time.Sleep(time.Second) // five epochs
	now := b.book(t, merchant, "ready-now", bookBody(custB, "Amina"))
	if off := c.waitTask(t, wire.TaskOffer); off.OrderID != now.ID {
		t.Fatalf("offered %s first; want %s (the other is ready in 30 min)", off.OrderID, now.ID)
	}
	m := b.mustStatus(t, 200, "GET", "/v1/orders/"+held.ID, merchant.Token, nil).m(t)
	if m["status"] != "booked" || m["offered_to"] != nil {
		t.Fatalf("held order: %v offered to %v", m["status"], m["offered_to"])
	}
}
