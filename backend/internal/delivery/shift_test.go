package delivery

import (
	"context"
	"testing"

	"github.com/tawsil/tawsil/backend/internal/core"
	"github.com/tawsil/tawsil/backend/internal/order"
	"github.com/tawsil/tawsil/shared/topic"
	"github.com/tawsil/tawsil/shared/wire"
)

// A courier ends its shift on a replica whose cache knows none of its
// orders (another replica made them): its offer goes to the next courier,
// its assignment not picked up is unassigned ("shift ended") and
// dispatched again without it, the parcel it carries stays with it.
func TestShiftEndedHandsOn(t *testing.T) {
	w := mustWorld(t)
	ctx := context.Background()
	couriers := map[string]order.Place{"c1": shop, "c2": {Lat: shop.Lat + 0.003, Lng: shop.Lng}}
	a := w.process(t, couriers)
	b := w.process(t, couriers)
	dispatcher := order.Actor{Role: order.RoleDispatcher, ID: "d1"}
	w.book(t, a, "offer")
	if err := a.dispatchOrder(ctx, "offer", nil); err != nil {
		t.Fatal(err)
	}
	if o := mustOrder(t, a, "offer"); o.OfferedTo != "c1" {
		t.Fatalf("first offer to %q", o.OfferedTo)
	}
	w.book(t, a, "assigned")
	if _, err := a.Assign(ctx, dispatcher, "assigned", "c1"); err != nil {
		t.Fatal(err)
	}
	w.book(t, a, "onboard")
	w.assignAndPickup(t, a, "onboard")

	b.d.Index.SetShift("c1", false) // as app.SetShift does before
	if err := b.ShiftEnded(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	b.bg.Wait()                                                // the follow-up dispatches
	if err := b.dispatchOrder(ctx, "offer", nil); err != nil { // the next epoch
		t.Fatal(err)
	}

	if o := mustOrder(t, a, "offer"); o.Status != order.StatusOffered || o.OfferedTo != "c2" {
		t.Fatalf("the open offer: %s to %q, want offered to c2", o.Status, o.OfferedTo)
	}
	o := mustOrder(t, a, "assigned")
	if o.CourierID != "" || (o.Status == order.StatusOffered && o.OfferedTo == "c1") || o.Status == order.StatusAssigned {
		t.Fatalf("the assignment: %s, courier %q, offered to %q", o.Status, o.CourierID, o.OfferedTo)
	}
	evs, err := w.st.Events(ctx, "assigned")
	if err != nil {
		t.Fatal(err)
	}
	unassigned := false
	for _, e := range evs {
		unassigned = unassigned || e.Action == order.ActUnassign && e.Reason == core.ShiftEndedReason
	}
	if !unassigned {
		t.Fatalf("no unassign for the shift's end in %+v", evs)
	}
	if o := mustOrder(t, a, "onboard"); o.Status != order.StatusPickedUp || o.CourierID != "c1" {
		t.Fatalf("the parcel on board: %s with %q", o.Status, o.CourierID)
	}
	told := map[string]string{}
	for _, tk := range w.bus.all()[topic.Courier(topic.DefaultPrefix, "c1", topic.Tasks)] {
		if tk.Reason == core.ShiftEndedReason && tk.OrderID != "" {
			told[tk.OrderID] = tk.Type
		}
	}
	if told["offer"] != wire.TaskOfferExpired || told["assigned"] != wire.TaskCancellation || len(told) != 2 {
		t.Fatalf("c1's device was told %v", told)
	}
}

// A courier disabled on a replica whose cache knows none of its orders:
// its assignment not picked up goes back to dispatch, its parcel on board
// to a dispatcher.
func TestCourierGoneAcrossReplicas(t *testing.T) {
	w := mustWorld(t)
	ctx := context.Background()
	couriers := map[string]order.Place{"c1": shop, "c2": {Lat: shop.Lat + 0.003, Lng: shop.Lng}}
	a := w.process(t, couriers)
	b := w.process(t, couriers)
	w.book(t, a, "assigned")
	if _, err := a.Assign(ctx, order.Actor{Role: order.RoleDispatcher, ID: "d1"}, "assigned", "c1"); err != nil {
		t.Fatal(err)
	}
	w.book(t, a, "onboard")
	w.assignAndPickup(t, a, "onboard")
	b.d.Index.Remove("c1") // as the revocation does before
	b.CourierGone(ctx, "c1", order.Actor{Role: order.RoleAdmin, ID: "a1"})
	b.bg.Wait()
	if o := mustOrder(t, a, "assigned"); o.CourierID != "" || o.Status == order.StatusAssigned {
		t.Fatalf("the assignment: %s with %q", o.Status, o.CourierID)
	}
	if o := mustOrder(t, a, "onboard"); !o.Flags.NeedsDispatcher || o.Status != order.StatusPickedUp {
		t.Fatalf("the parcel on board: %s, needs dispatcher %v", o.Status, o.Flags.NeedsDispatcher)
	}
}
