package e2e

import (
	"testing"
	"time"

	"github.com/tawsil/tawsil/shared/wire"
)

// A courier ends its shift over HTTP: the offer it has not answered is
// withdrawn and the order it has not picked up yet is unassigned (its
// device is told why, "shift ended"); the parcel on board stays with it.
func TestShiftEndHandsOnOrders(t *testing.T) {
	b := mustBackend(t, nil)
	admin, _ := b.login(t, adminEmail, adminPass)
	merchant := b.mustUser(t, admin, "merchant")
	dispatcher := b.mustUser(t, admin, "dispatcher")
	cd := b.mustCourierDevice(t, admin)
	cd.at(t, store, time.Now())

	take := func(key string, drop [2]float64) orderOut {
		o := b.book(t, merchant, key, bookBody(drop, "Amina"))
		if offer := cd.waitTask(t, wire.TaskOffer); offer.OrderID != o.ID {
			t.Fatalf("offer for %s: %+v", o.ID, offer)
		}
		return o
	}
	onboard := take("shift-onboard", custA)
	b.mustStatus(t, 200, "POST", "/v1/orders/"+onboard.ID+"/accept", cd.Token, nil)
	b.mustStatus(t, 200, "POST", "/v1/orders/"+onboard.ID+"/pickup", cd.Token, nil)
	assigned := take("shift-assigned", custB)
	b.mustStatus(t, 200, "POST", "/v1/orders/"+assigned.ID+"/accept", cd.Token, nil)
	offered := take("shift-offered", custC)

	b.mustStatus(t, 200, "POST", "/v1/me/shift", cd.Token, map[string]any{"on_duty": false})
	told := map[string]wire.Task{}
	for len(told) < 2 {
		select {
		case tk := <-cd.tasks:
			if tk.Reason == "shift ended" && tk.OrderID != "" {
				told[tk.OrderID] = tk
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("the device was told %v", told)
		}
	}
	if told[offered.ID].Type != wire.TaskOfferExpired || told[assigned.ID].Type != wire.TaskCancellation {
		t.Fatalf("the device was told %v", told)
	}
	status := func(id string) (string, any) {
		m := b.mustStatus(t, 200, "GET", "/v1/orders/"+id, dispatcher.Token, nil).m(t)
		return m["status"].(string), m["courier_id"]
	}
	for _, id := range []string{offered.ID, assigned.ID} {
		if st, c := status(id); st != "booked" || (c != nil && c != "") {
			t.Errorf("order %s after the shift's end: %s with %v, want booked with nobody (no other courier)", id, st, c)
		}
	}
	if st, c := status(onboard.ID); st != "picked_up" || c != cd.CourierID {
		t.Errorf("the parcel on board: %s with %v", st, c)
	}
}
