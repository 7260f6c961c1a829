package delivery

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tawsil/tawsil/backend/internal/order"
)

// Regression tests for the data races of the in-memory timers (run with
// -race): a contact window's end racing the customer's reply, an offer's
// deadline racing the courier's accept while Tasks reads the offer, and
// Close while timer work runs. Each race has exactly one outcome, claimed in
// the store.

func TestContactReplyRacesWindowEnd(t *testing.T) {
	w := mustWorld(t)
	ctx := context.Background()
	c1 := order.Actor{Role: order.RoleCourier, ID: "c1"}
	p1 := w.process(t, map[string]order.Place{"c1": shop})
	p2 := w.process(t, map[string]order.Place{"c1": shop})
	const n = 3
	for i := range n {
		id := fmt.Sprintf("o%d", i)
		w.book(t, p1, id)
		w.assignAndPickup(t, p1, id)
	}
	w.courier(t, "c1", custA)
	for i := range n {
		if _, err := p1.Fail(ctx, c1, fmt.Sprintf("o%d", i), FailRequest{Reason: "CUSTOMER_UNAVAILABLE", CallAttempts: 2}); err != nil {
			t.Fatal(err)
		}
	}
	w.clock.Add(20 * time.Minute) // every window ends now
	var wg sync.WaitGroup
	var replied atomic.Int32
	for i := range n {
		id := fmt.Sprintf("o%d", i)
		for _, p := range []*Service{p1, p2} {
			wg.Add(2)
			go func() {
				defer wg.Done()
				if _, err := p.CustomerReply(ctx, id, i%2 == 0); err == nil {
					replied.Add(1)
				} else if !errors.Is(err, order.ErrInvalidTransition) && !errors.Is(err, order.ErrConflict) {
					t.Error(err)
				}
			}()
			go func() {
				defer wg.Done()
				if _, err := p.FireDue(ctx); err != nil {
					t.Error(err)
				}
			}()
		}
	}
	wg.Wait()
	for i := range n {
		id := fmt.Sprintf("o%d", i)
		o := mustOrder(t, p2, id)
		if o.Contact != nil {
			t.Errorf("%s: contact still pending", id)
		}
		evs, err := w.st.Events(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		closed := 0
		for _, e := range evs {
			if e.Action == "contact_reply" || e.Action == order.ActReturn {
				closed++
			}
		}
		if closed != 1 {
			t.Errorf("%s: the window closed %d times: %+v", id, closed, evs)
		}
	}
	if _, err := p1.Cancel(ctx, order.Actor{Role: order.RoleAdmin, ID: "a"}, "o0", ""); err != nil {
		t.Fatal(err)
	}
}

func TestOfferDeadlineRacesAccept(t *testing.T) {
	w := mustWorld(t)
	ctx := context.Background()
	near := map[string]order.Place{"c1": shop, "c2": {Lat: shop.Lat + 0.003, Lng: shop.Lng}}
	p1 := w.process(t, near)
	p2 := w.process(t, near)
	const n = 6
	for i := range n {
		id := fmt.Sprintf("o%d", i)
		w.book(t, p1, id)
		if err := p1.dispatchOrder(ctx, id, nil); err != nil {
			t.Fatal(err)
		}
	}
	w.clock.Add(30*time.Second - time.Millisecond) // the accept lands just inside the deadline...
	var wg sync.WaitGroup
	for i := range n {
		id := fmt.Sprintf("o%d", i)
		wg.Add(3)
		go func() {
			defer wg.Done()
			_, _ = p1.Accept(ctx, order.Actor{Role: order.RoleCourier, ID: "c1"}, id)
		}()
		go func() {
			defer wg.Done()
			_, _, _ = p2.Tasks("c1")
			_, _, _ = p1.Tasks("c1")
		}()
		go func() {
			defer wg.Done()
			_, _ = p2.FireDue(ctx) // ...while the timer poller looks
		}()
	}
	wg.Wait()
	w.clock.Add(time.Second)
	for _, p := range []*Service{p1, p2} {
		if _, err := p.FireDue(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		id := fmt.Sprintf("o%d", i)
		o := mustOrder(t, p2, id)
		switch {
		case o.Status == order.StatusAssigned && o.CourierID == "c1":
		case o.Status == order.StatusOffered && o.OfferedTo == "c2":
		default:
			t.Errorf("%s: %s courier %q offered %q", id, o.Status, o.CourierID, o.OfferedTo)
		}
	}
	// Close waits for the work it started (declines hand the next offer to a goroutine).
	for i := range n {
		_, _ = p2.Decline(ctx, order.Actor{Role: order.RoleCourier, ID: "c2"}, fmt.Sprintf("o%d", i), "busy")
	}
	p2.Close()
	p1.Close()
}
