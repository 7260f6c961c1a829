package delivery

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/tawsil/tawsil/backend/internal/mongostore"
	"github.com/tawsil/tawsil/backend/internal/order"
	"github.com/tawsil/tawsil/shared/wire"
)

// bookReady books an order at the shop whose parcel is ready after readyIn.
func (w *world) bookReady(tb testing.TB, id string, readyIn time.Duration) *order.Order {
	tb.Helper()
	ctx := context.Background()
	now := w.clock.Now()
	o, err := order.Book(order.Booking{ID: id, MerchantID: "m1", Pickup: shop, Dropoff: custA, Size: order.SizeS,
		CustomerName: "Amina", CustomerPhone: "+212612345678", PriceMAD: 20, ReadyAt: now.Add(readyIn)}, now)
	if err != nil {
		tb.Fatal(err)
	}
	so := mongostore.StoredOrder{Order: o}
	if err := w.st.InsertOrder(ctx, so); err != nil {
		tb.Fatal(err)
	}
	if err := w.st.Commit(ctx, so, order.Event{OrderID: o.ID, To: order.StatusBooked, Action: "book", At: now, Version: 1}); err != nil {
		tb.Fatal(err)
	}
	return o
}

// Two orders of the shop, ready in 15 minutes, are offered together by one
// epoch to the courier at the shop, not one to each of the two couriers;
// an epoch's slot runs once (a booking made after it waits for the next).
func TestRunEpochBundles(t *testing.T) {
	w := mustWorld(t)
	ctx := context.Background()
	s := w.process(t, map[string]order.Place{"c1": shop, "c2": {Lat: shop.Lat + 0.02, Lng: shop.Lng}})
	w.bookReady(t, "b1", 15*time.Minute)
	w.bookReady(t, "b2", 15*time.Minute)
	w.clock.Add(5 * time.Minute) // ready in 10: not held any more
	if n, err := s.RunEpoch(ctx); err != nil || n != 2 {
		t.Fatalf("epoch offered %d (%v), want 2", n, err)
	}
	for _, id := range []string{"b1", "b2"} {
		if o := mustOrder(t, s, id); o.OfferedTo != "c1" {
			t.Fatalf("%s offered to %q, want c1 (both to the courier at the shop)", id, o.OfferedTo)
		}
	}
	// The slot is claimed: another booking waits for the next epoch.
	w.bookReady(t, "b3", 0)
	if n, err := s.RunEpoch(ctx); err != nil || n != 0 {
		t.Fatalf("the same slot ran twice: %d offered (%v)", n, err)
	}
	w.clock.Add(s.cfg.DispatchEvery)
	if n, err := s.RunEpoch(ctx); err != nil || n != 1 || mustOrder(t, s, "b3").OfferedTo == "" {
		t.Fatalf("next slot offered %d (%v), want b3", n, err)
	}
}

// Two replicas run the epoch loop's step (RunEpoch) every 30 s of the
// virtual clock over one store: an order booked ready in 30 minutes, with a
// courier at the shop, is offered once, by one replica, at the first epoch
// where its courier would be at most the commit lead (10 min) early.
func TestRunEpochHoldsAndRunsOnce(t *testing.T) {
	w := mustWorld(t)
	ctx := context.Background()
	at := map[string]order.Place{"c1": shop}
	a, b := w.process(t, at), w.process(t, at)
	o := w.bookReady(t, "r1", 30*time.Minute)
	lead := a.d.Dispatch.Config().CommitLead
	var offeredAt time.Time
	total := 0
	for step := 0; step < 60; step++ { // 30 minutes of epochs
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, p := range []*Service{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				n, err := p.RunEpoch(ctx)
				if err != nil {
					t.Error(err)
				}
				mu.Lock()
				total += n
				mu.Unlock()
			}()
		}
		wg.Wait()
		if total > 0 && offeredAt.IsZero() {
			offeredAt = w.clock.Now()
		}
		w.clock.Add(30 * time.Second)
	}
	if want := o.ReadyAt.Add(-lead); !offeredAt.Equal(want) || total != 1 {
		t.Fatalf("offered %d times, first at %v; want once at %v (ready less the commit lead)", total, offeredAt, want)
	}
	offers := 0
	for _, ts := range w.bus.all() {
		for _, task := range ts {
			if task.Type == wire.TaskOffer {
				offers++
			}
		}
	}
	if got := mustOrder(t, a, "r1"); got.OfferedTo != "c1" || offers != 1 {
		t.Fatalf("order %s to %q, %d offer tasks sent", got.Status, got.OfferedTo, offers)
	}
}
