package delivery

import (
	"context"
	"testing"
	"time"

	"github.com/tawsil/tawsil/backend/internal/order"
)

// at moves a courier in one process's live index.
func (w *world) at(tb testing.TB, s *Service, id string, p order.Place) {
	tb.Helper()
	w.clock.Add(time.Second) // a newer fix
	w.idx = s.d.Index
	w.courier(tb, id, p)
}

// Two replicas over one store, each with its active-order cache: a courier
// action or a due timer handled by the replica whose cached copy is behind
// the other's write is decided on the store's copy, not refused (409) or
// dropped from the old one.
func TestStaleCacheAcrossReplicas(t *testing.T) {
	w := mustWorld(t)
	ctx := context.Background()
	c1 := order.Actor{Role: order.RoleCourier, ID: "c1"}
	near := map[string]order.Place{"c1": shop, "c2": {Lat: shop.Lat + 0.003, Lng: shop.Lng}}
	a := w.process(t, near)
	b := w.process(t, near)
	w.book(t, a, "o1")
	mustOrder(t, b, "o1") // b caches the booking
	if err := a.dispatchOrder(ctx, "o1", nil); err != nil {
		t.Fatal(err)
	}
	if o := mustOrder(t, a, "o1"); o.Status != order.StatusOffered || o.OfferedTo != "c1" {
		t.Fatalf("offer: %s to %q", o.Status, o.OfferedTo)
	}
	// b has the order booked, a offered it: c1 accepts on b.
	if o, err := b.Accept(ctx, c1, "o1"); err != nil || o.Status != order.StatusAssigned {
		t.Fatalf("accept on the replica with the booking cached: %v (%+v)", err, o)
	}
	// a has it offered, b assigned: c1 picks it up on a.
	if o, err := a.Pickup(ctx, c1, "o1"); err != nil || o.Status != order.StatusPickedUp {
		t.Fatalf("pickup on the replica with the offer cached: %v (%+v)", err, o)
	}
	// b has it assigned, a picked up: c1 delivers on b.
	w.at(t, b, "c1", custA)
	code := mustOrder(t, a, "o1").HandoverCode
	if o, err := b.Deliver(ctx, c1, "o1", code, "", 0, 0); err != nil || o.Status != order.StatusDelivered {
		t.Fatalf("deliver on the replica with the assignment cached: %v (%+v)", err, o)
	}

	// An offer made on a whose deadline b fires, with the order cached as
	// booked: the offer expires and the next courier gets it.
	w.at(t, a, "c1", shop)
	w.at(t, b, "c1", shop)
	w.book(t, a, "o2")
	mustOrder(t, b, "o2")
	if err := a.dispatchOrder(ctx, "o2", nil); err != nil {
		t.Fatal(err)
	}
	first := mustOrder(t, a, "o2").OfferedTo
	if first == "" {
		t.Fatal("o2 not offered")
	}
	b.mu.Lock()
	cached := b.active["o2"].Status
	b.mu.Unlock()
	if cached != order.StatusBooked {
		t.Fatalf("b's cached copy of o2 is %s; the test needs it behind a's offer", cached)
	}
	w.clock.Add(31 * time.Second)
	if n, err := b.FireDue(ctx); err != nil || n != 1 {
		t.Fatalf("b fired %d (%v)", n, err)
	}
	if err := b.dispatchOrder(ctx, "o2", nil); err != nil { // the next epoch, on b
		t.Fatal(err)
	}
	o := mustOrder(t, a, "o2")
	if o.Status != order.StatusOffered || o.OfferedTo == first || o.OfferedTo == "" {
		t.Fatalf("after the first offer's deadline (fired on b): %s to %q, first offer to %q", o.Status, o.OfferedTo, first)
	}
}

// A hand-over decided on one replica moves the pick-up to where the first
// courier stood; the next courier picks the parcel up there on the replica
// whose cached copy still has the merchant's pick-up: the "at the place"
// check is made on the store's copy, not refused as too far.
func TestStaleCachePickupAtHandover(t *testing.T) {
	w := mustWorld(t)
	ctx := context.Background()
	c1, c2 := order.Actor{Role: order.RoleCourier, ID: "c1"}, order.Actor{Role: order.RoleCourier, ID: "c2"}
	near := map[string]order.Place{"c1": shop, "c2": {Lat: shop.Lat + 0.003, Lng: shop.Lng}}
	a := w.process(t, near)
	b := w.process(t, near)
	w.book(t, a, "h")
	mustOrder(t, b, "h") // b caches the booking, pick-up at the shop
	w.assignAndPickup(t, a, "h")
	w.at(t, a, "c1", custA)
	if res, err := a.Fail(ctx, c1, "h", FailRequest{Reason: "ADDRESS_INACCESSIBLE"}); err != nil || res.Decision.Action != "dispatcher_review" {
		t.Fatalf("fail: %+v, %v", res, err)
	}
	if _, err := a.Resolve(ctx, order.Actor{Role: order.RoleDispatcher, ID: "d1"}, "h", "reassign"); err != nil {
		t.Fatal(err)
	}
	a.bg.Wait()                                            // the hand-over's dispatch
	if err := a.dispatchOrder(ctx, "h", nil); err != nil { // the next epoch
		t.Fatal(err)
	}
	if o := mustOrder(t, a, "h"); o.OfferedTo != "c2" || o.Pickup.Lat != custA.Lat {
		t.Fatalf("hand-over: %s to %q, pick-up %+v", o.Status, o.OfferedTo, o.Pickup)
	}
	if _, err := a.Accept(ctx, c2, "h"); err != nil {
		t.Fatal(err)
	}
	w.at(t, b, "c2", custA)
	if o, err := b.Pickup(ctx, c2, "h"); err != nil || o.Status != order.StatusPickedUp || o.CourierID != "c2" {
		t.Fatalf("pickup at the hand-over on the replica with the booking cached: %v (%+v)", err, o)
	}
}
