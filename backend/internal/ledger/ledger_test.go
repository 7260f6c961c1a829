package ledger_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/tawsil/tawsil/backend/internal/cash"
	"github.com/tawsil/tawsil/backend/internal/embedded/docstore"
	"github.com/tawsil/tawsil/backend/internal/ledger"
	"github.com/tawsil/tawsil/backend/internal/mongostore"
)

func mustStore(tb testing.TB) *mongostore.Store {
	tb.Helper()
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := docstore.Start(ctx, docstore.Options{DataDir: tb.TempDir(), Logger: quiet})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(srv.Close)
	st, err := mongostore.Open(ctx, srv.URI(), "tawsil_test", quiet)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = st.Close(context.Background()) })
	return st
}

func mustBook(tb testing.TB, st *mongostore.Store, limit cash.Centimes) *ledger.Book {
	tb.Helper()
	b := ledger.New(st, ledger.Config{DefaultCap: limit}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := b.Load(context.Background()); err != nil {
		tb.Fatal(err)
	}
	return b
}

// Two replicas over one store: a handover reported twice (by both) is
// recorded once; the other replica's cap follows; two dispatchers confirming
// the same shift at once: exactly one settlement; a new replica loads the
// same balance; a handover the ledger lacks is made good from the orders.
func TestLedgerAcrossReplicas(t *testing.T) {
	ctx := context.Background()
	st := mustStore(t)
	r1, r2 := mustBook(t, st, 30000), mustBook(t, st, 30000)
	h := cash.Handover{CourierID: "c1", OrderID: "o1", MerchantID: "m1", Due: 25000, Paid: 30000, Change: 5000, At: time.Now().UTC()}
	var wg sync.WaitGroup
	for _, b := range []*ledger.Book{r1, r2, r1} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := b.Collect(ctx, h); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if err := r2.Follow(ctx); err != nil {
		t.Fatal(err)
	}
	for i, b := range []*ledger.Book{r1, r2} {
		s, err := b.Statement(ctx, "c1")
		if err != nil {
			t.Fatal(err)
		}
		if s.InHand != 25000 || len(s.Entries) != 2 {
			t.Fatalf("replica %d: in hand %s with %d entries, want 250.00 from one collection and its change", i+1, s.InHand, len(s.Entries))
		}
		// 250 + 100 > 300: capped for a COD order on both replicas, not for a prepaid one.
		if !b.Blocks("c1", 10000) || b.Blocks("c1", 0) || !b.Blocks("c1", 5001) || b.Blocks("c1", 5000) {
			t.Errorf("replica %d cap decisions wrong", i+1)
		}
	}

	var wins, conflicts int
	var mu sync.Mutex
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := r1
			if i%2 == 0 {
				b = r2
			}
			_, err := b.Settle(ctx, "c1", "d1")
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
			case errors.Is(err, cash.ErrConflict):
				conflicts++
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	ss, err := r1.Settlements(ctx, "c1")
	if err != nil {
		t.Fatal(err)
	}
	if len(ss) != wins || wins+conflicts != 6 {
		t.Fatalf("%d settlements stored, %d won, %d conflicts", len(ss), wins, conflicts)
	}
	for i, s := range ss { // newest first, numbered without gaps
		if s.N != len(ss)-i {
			t.Fatalf("settlement numbers %+v", ss)
		}
	}
	if ss[len(ss)-1].Collected != 30000 || ss[len(ss)-1].Difference != 25000 {
		t.Fatalf("first settlement %+v", ss[len(ss)-1])
	}

	// A third replica starting now knows the same balance; a delivered order
	// whose collection never reached the ledger is recorded from the order.
	r3 := mustBook(t, st, 30000)
	r3.Delivered = func(context.Context, time.Time) ([]cash.Handover, error) {
		return []cash.Handover{h, {CourierID: "c1", OrderID: "o2", MerchantID: "m1", Due: 1000, Paid: 1000, At: time.Now().UTC()}}, nil
	}
	if n, err := r3.Reconcile(ctx, time.Hour); err != nil || n != 1 {
		t.Fatalf("reconcile added %d (%v), want only o2", n, err)
	}
	if s, err := r3.Statement(ctx, "c1"); err != nil || s.InHand != 26000 {
		t.Fatalf("after reconcile: %+v %v", s.InHand, err)
	}

	// Merchant days and a payout once per day (o2 is collected a moment
	// after h: around midnight they fall on two days, so ask for both).
	from, to := h.At.Format(time.DateOnly), time.Now().UTC().Format(time.DateOnly)
	total := func() (orders int, collected, outstanding cash.Centimes) {
		days, err := r1.MerchantDays(ctx, "m1", from, to)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range days {
			orders, collected, outstanding = orders+d.Orders, collected+d.Collected, outstanding+d.Outstanding
		}
		return orders, collected, outstanding
	}
	if n, c, _ := total(); n != 2 || c != 26000 {
		t.Fatalf("merchant days: %d orders, %s collected", n, c)
	}
	days, err := r1.MerchantDays(ctx, "m1", from, to)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range days {
		if _, err := r1.Payout(ctx, "m1", d.Day, d.Collected, "a1", "ref"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r2.Payout(ctx, "m1", days[0].Day, 1, "a1", "ref"); !errors.Is(err, ledger.ErrSettled) {
		t.Fatalf("second payout of the day: %v", err)
	}
	// Erasure: amounts stay with the merchant's day, the courier is gone.
	if err := r1.Erase(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	if s, err := r1.Statement(ctx, "c1"); err != nil || len(s.Entries) != 0 {
		t.Fatalf("erased courier's statement: %+v %v", s, err)
	}
	if _, c, o := total(); c != 26000 || o != 0 {
		t.Fatalf("merchant days after erasure: %s collected, %s outstanding", c, o)
	}
}
