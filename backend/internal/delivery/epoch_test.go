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

// Two replicas run the epoch loop's step (RunEpoch) every 30 s of the
// virtual clock over one store: an order booked ready in 30 minutes, with a
// courier at the shop, is offered once, by one replica, at the first epoch
// where its courier would be at most the commit lead (10 min) early.
func TestRunEpochHoldsAndRunsOnce(t *testing.T) {
	w := mustWorld(t)
	ctx := context.Background()
	at := map[string]order.Place{"c1": shop}
	a, b := w.process(t, at), w.process(t, at)
	o, err := order.Book(order.Booking{ID: "r1", MerchantID: "m1", Pickup: shop, Dropoff: custA, Size: order.SizeS,
		CustomerName: "Amina", CustomerPhone: "+212612345678", PriceMAD: 20, ReadyAt: day.Add(30 * time.Minute)}, day)
	if err != nil {
		t.Fatal(err)
	}
	so := mongostore.StoredOrder{Order: o}
	if err := w.st.InsertOrder(ctx, so); err != nil {
		t.Fatal(err)
	}
	if err := w.st.Commit(ctx, so, order.Event{OrderID: o.ID, To: order.StatusBooked, Action: "book", At: day, Version: 1}); err != nil {
		t.Fatal(err)
	}
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
