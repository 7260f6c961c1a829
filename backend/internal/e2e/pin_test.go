package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tawsil/tawsil/backend/internal/mongostore"
	"github.com/tawsil/tawsil/shared/wire"
)

func informalBody(name string, confirmWithin int) map[string]any {
	b := bookBody(custA, name)
	b["dropoff"] = map[string]any{"address": "Derb Sultan, rue 12", "landmark": "near the mosque, third floor, green door"}
	b["confirm_within_min"] = confirmWithin
	return b
}

// An informal address: booked with a description and no coordinates, the
// order waits for the customer's pin; the pin through the tracking link sets
// the point (an event by the customer), the order is dispatched to it and the
// courier's task carries the landmark; a pin that never comes hands the order
// to a dispatcher, who sets it after calling the customer (audited).
func TestInformalAddressPin(t *testing.T) {
	b := mustBackend(t, nil)
	admin, _ := b.login(t, adminEmail, adminPass)
	merchant := b.mustUser(t, admin, "merchant")
	dispatcher := b.mustUser(t, admin, "dispatcher")
	cd := b.mustCourierDevice(t, admin)
	cd.at(t, store, time.Now())

	// Neither coordinates nor a description: refused.
	noWhere := bookBody(custA, "Nobody")
	noWhere["dropoff"] = map[string]any{}
	b.mustStatus(t, 400, "POST", "/v1/orders", merchant.Token, noWhere, "Idempotency-Key", "pin-0")

	o := b.book(t, merchant, "pin-1", informalBody("Fatima", 10))
	got := b.mustStatus(t, 200, "GET", "/v1/orders/"+o.ID, merchant.Token, nil).m(t)
	pin, _ := got["pin"].(map[string]any)
	if pin["status"] != "unconfirmed" || got["offered_to"] != nil {
		t.Fatalf("informal booking: %v", got)
	}
	select {
	case task := <-cd.tasks:
		t.Fatalf("dispatched before the pin: %+v", task)
	case <-time.After(1500 * time.Millisecond):
	}
	track := b.mustStatus(t, 200, "GET", "/v1/track/"+o.TrackingToken, "", nil)
	if !strings.Contains(string(track.body), `"pin":{"status":"unconfirmed"`) || strings.Contains(string(track.body), "mosque") || strings.Contains(string(track.body), "Derb") {
		t.Fatalf("tracking view of a pending pin: %s", track.body)
	}
	// Outside the service area, or not a point: refused, nothing changes.
	b.mustStatus(t, 422, "POST", "/v1/track/"+o.TrackingToken+"/pin", "", map[string]any{"lat": 48.85, "lng": 2.35})
	b.mustStatus(t, 400, "POST", "/v1/track/"+o.TrackingToken+"/pin", "", map[string]any{"lat": 33.59})

	r := b.mustStatus(t, 200, "POST", "/v1/track/"+o.TrackingToken+"/pin", "", map[string]any{"lat": custA[0], "lng": custA[1]})
	if !strings.Contains(string(r.body), `"status":"confirmed"`) {
		t.Fatalf("pin answer: %s", r.body)
	}
	b.mustStatus(t, 409, "POST", "/v1/track/"+o.TrackingToken+"/pin", "", map[string]any{"lat": custB[0], "lng": custB[1]})
	offer := cd.waitTask(t, wire.TaskOffer)
	if offer.OrderID != o.ID || offer.Order == nil || offer.Order.Dropoff.Lat != custA[0] || offer.Order.Dropoff.Landmark != "near the mosque, third floor, green door" {
		t.Fatalf("offer after the pin: %+v", offer.Order)
	}
	b.mustStatus(t, 200, "POST", "/v1/orders/"+o.ID+"/accept", cd.Token, nil)
	b.mustStatus(t, 200, "POST", "/v1/orders/"+o.ID+"/pickup", cd.Token, nil)
	var plan wire.Task
	for plan.Route == nil || len(plan.Route.Stops) == 0 {
		plan = cd.waitTask(t, wire.TaskRoutePlan)
	}
	last := plan.Route.Stops[len(plan.Route.Stops)-1]
	if last.OrderID != o.ID || last.Lat != custA[0] || last.Lng != custA[1] {
		t.Fatalf("the route does not go to the pin: %+v", plan.Route.Stops)
	}
	ev := string(b.mustStatus(t, 200, "GET", "/v1/orders/"+o.ID+"/events", merchant.Token, nil).body)
	if !strings.Contains(ev, `"pin_confirmed"`) || !strings.Contains(ev, `"customer"`) {
		t.Fatalf("events lack the customer's pin: %s", ev)
	}

	// A pin that never comes: when the window ends (its timer is a document;
	// here made due now), the order goes to the dispatchers, who may not
	// assign it blind but set the pin themselves.
	o2 := b.book(t, merchant, "pin-2", informalBody("Karim", 5))
	if err := b.Store.ArmTimer(context.Background(), mongostore.Timer{ID: "pin/" + o2.ID, Kind: "pin", OrderID: o2.ID, Due: time.Now().UTC()}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "unconfirmed pin flagged for dispatchers", 10*time.Second, func() bool {
		f, _ := b.mustStatus(t, 200, "GET", "/v1/orders/"+o2.ID, dispatcher.Token, nil).m(t)["flags"].(map[string]any)
		return f["needs_dispatcher"] == true
	})
	b.mustStatus(t, 409, "POST", "/v1/orders/"+o2.ID+"/assign", dispatcher.Token, map[string]any{"courier_id": cd.CourierID})
	b.mustStatus(t, 200, "POST", "/v1/orders/"+o2.ID+"/pin", dispatcher.Token, map[string]any{"lat": custC[0], "lng": custC[1]})
	got = b.mustStatus(t, 200, "GET", "/v1/orders/"+o2.ID, dispatcher.Token, nil).m(t)
	if f, _ := got["flags"].(map[string]any); f["needs_dispatcher"] == true {
		t.Fatalf("flag stays after the pin: %v", got)
	}
	if d, _ := got["dropoff"].(map[string]any); d["lat"] != custC[0] {
		t.Fatalf("dispatcher's pin not applied: %v", got)
	}
	if body := string(b.mustStatus(t, 200, "GET", "/v1/audit", admin, nil).body); !strings.Contains(body, "set_dropoff_pin") {
		t.Fatalf("the dispatcher's pin is not audited: %s", body)
	}
}
