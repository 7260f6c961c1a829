package mongostore_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tawsil/tawsil/backend/internal/account"
	"github.com/tawsil/tawsil/backend/internal/mongostore"
	"github.com/tawsil/tawsil/backend/internal/order"
)

var t0 = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

func mustBooked(tb testing.TB, st *mongostore.Store, id string) mongostore.StoredOrder {
	tb.Helper()
	o, err := order.Book(order.Booking{ID: id, MerchantID: "m1", Pickup: order.Place{Lat: 33.59, Lng: -7.62}, Dropoff: order.Place{Lat: 33.58, Lng: -7.63},
		Size: order.SizeS, CustomerName: "Amina", CustomerPhone: "+212612345678", PriceMAD: 20}, t0)
	if err != nil {
		tb.Fatal(err)
	}
	so := mongostore.StoredOrder{Order: o}
	if err := st.InsertOrder(context.Background(), so); err != nil {
		tb.Fatal(err)
	}
	ev := order.Event{OrderID: id, To: order.StatusBooked, Action: "book", At: t0, Version: o.Version}
	if err := st.Commit(context.Background(), so, ev); err != nil {
		tb.Fatal(err)
	}
	return so
}

// Twenty concurrent assigns of one order, each to another courier, with no
// lock anywhere: exactly one commits, in every round. (A compare-and-set
// ReplaceOne on {_id, version} lets several win on FerretDB.)
func TestCommitOneWinner(t *testing.T) {
	st := mustStore(t)
	ctx := context.Background()
	for round := range 5 {
		id := fmt.Sprintf("race-%d", round)
		base := mustBooked(t, st, id)
		var wins atomic.Int32
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				next := base.Clone()
				ev, err := order.Apply(next.Order, order.Action{Kind: order.ActAssign, At: t0.Add(time.Minute), CourierID: fmt.Sprintf("c%d", i)},
					order.Actor{Role: order.RoleDispatcher, ID: "d1"})
				if err != nil {
					t.Error(err)
					return
				}
				<-start
				err = st.Commit(ctx, next, ev)
				switch {
				case err == nil:
					wins.Add(1)
				case !errors.Is(err, order.ErrConflict):
					t.Error(err)
				}
			}()
		}
		close(start)
		wg.Wait()
		if n := wins.Load(); n != 1 {
			t.Fatalf("round %d: %d winners, want exactly 1", round, n)
		}
		got, err := st.Order(ctx, id)
		if err != nil || got.Version != 2 || got.Status != order.StatusAssigned {
			t.Fatalf("after the race: %+v, %v", got.Order, err)
		}
		evs, err := st.Events(ctx, id)
		if err != nil || len(evs) != 2 || evs[1].Action != order.ActAssign {
			t.Fatalf("events: %+v, %v", evs, err)
		}
	}
}

// A crash between the event and the order document loses nothing: a reader
// applies the event's state and repairs the document.
func TestCommitCatchUp(t *testing.T) {
	st := mustStore(t)
	ctx := context.Background()
	base := mustBooked(t, st, "crash-1")
	next := base.Clone()
	ev, err := order.Apply(next.Order, order.Action{Kind: order.ActAssign, At: t0.Add(time.Minute), CourierID: "c1"}, order.Actor{Role: order.RoleDispatcher, ID: "d1"})
	if err != nil {
		t.Fatal(err)
	}
	next.NotBefore = t0.Add(time.Hour)
	if err := st.Commit(ctx, next, ev); err != nil {
		t.Fatal(err)
	}
	// Put the document back where it was: as if the process died after the event.
	if err := st.UpdateOrder(ctx, base, next.Version); err != nil {
		t.Fatal(err)
	}
	active, err := st.ActiveOrders(ctx)
	if err != nil || len(active) != 1 || active[0].Version != 2 || active[0].CourierID != "c1" || !active[0].NotBefore.Equal(t0.Add(time.Hour)) {
		t.Fatalf("active after the crash: %+v, %v", active, err)
	}
	got, err := st.Order(ctx, "crash-1")
	if err != nil || got.Version != 2 || got.Status != order.StatusAssigned {
		t.Fatalf("order after the crash: %+v, %v", got.Order, err)
	}
	// The next writer claims version 3; an old writer still at version 2 loses.
	if err := st.Commit(ctx, next, ev); !errors.Is(err, order.ErrConflict) {
		t.Fatalf("second commit of version 2: %v", err)
	}
}

func TestClaimOnceAndTakeover(t *testing.T) {
	st := mustStore(t)
	ctx := context.Background()
	var wins atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := st.Claim(ctx, "timer/x", t0, time.Minute)
			if err != nil {
				t.Error(err)
			}
			if ok {
				wins.Add(1)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d claims won, want 1", wins.Load())
	}
	if ok, _ := st.Claim(ctx, "timer/x", t0.Add(30*time.Second), time.Minute); ok {
		t.Fatal("claim taken over within its lease")
	}
	// The claimer died: after the lease one other process takes over, once.
	wins.Store(0)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if ok, err := st.Claim(ctx, "timer/x", t0.Add(2*time.Minute), time.Minute); err != nil {
				t.Error(err)
			} else if ok {
				wins.Add(1)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d takeovers won, want 1", wins.Load())
	}
}

// Sequence numbers from concurrent issuers (replicas) are unique, and each
// issuer sees them rise, even when its clock floor is behind.
func TestNextSeqMonotonic(t *testing.T) {
	st := mustStore(t)
	ctx := context.Background()
	var mu sync.Mutex
	seen := map[uint64]bool{}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var last, hint uint64
			for range 15 {
				n, err := st.NextSeq(ctx, "task/c1", uint64(1000-w*100), hint)
				if err != nil {
					t.Error(err)
					return
				}
				if n <= last {
					t.Errorf("issuer %d: %d after %d", w, n, last)
				}
				last, hint = n, n
				mu.Lock()
				if seen[n] {
					t.Errorf("%d issued twice", n)
				}
				seen[n] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	var top uint64
	for n := range seen {
		top = max(top, n)
	}
	// A restarted process (no hint, clock floor far behind) continues above.
	n, err := st.NextSeq(ctx, "task/c1", 1, 0)
	if err != nil || n != top+1 {
		t.Fatalf("after restart: %d, %v; want %d", n, err, top+1)
	}
}

func TestRefreshSingleUseConcurrent(t *testing.T) {
	st := mustStore(t)
	ctx := context.Background()
	now := time.Now().UTC()
	if err := st.InsertRefresh(ctx, account.RefreshToken{Hash: "h2", UserID: "u", Family: "f", ExpiresAt: now.Add(time.Hour), CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	var wins atomic.Int32
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := st.UseRefresh(ctx, "h2", now)
			switch {
			case err == nil:
				wins.Add(1)
			case !errors.Is(err, account.ErrTokenRevoked):
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d uses of one refresh token succeeded", wins.Load())
	}
}
