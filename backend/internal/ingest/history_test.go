package ingest

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/tawsil/tawsil/backend/internal/metrics"
	"github.com/tawsil/tawsil/backend/internal/mongostore"
)

// flakyStore is a HistoryStore whose availability the test switches; it
// keeps what it stored, deduplicating on (courier, seq) like the real index.
type flakyStore struct {
	mu     sync.Mutex
	down   bool
	stored map[uint64]int
	calls  int
}

func (f *flakyStore) InsertPositions(_ context.Context, ps []mongostore.Position) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.down {
		return 0, errors.New("store unreachable")
	}
	n := 0
	for _, p := range ps {
		if f.stored[p.Seq] == 0 {
			n++
		}
		f.stored[p.Seq]++
	}
	return n, nil
}

func (f *flakyStore) set(down bool) {
	f.mu.Lock()
	f.down = down
	f.mu.Unlock()
}

func (f *flakyStore) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.stored)
}

func positions(from, n int) []mongostore.Position {
	ps := make([]mongostore.Position, n)
	for i := range ps {
		ps[i] = mongostore.Position{CourierID: "c", Seq: uint64(from + i)}
	}
	return ps
}

func mustHistory(tb testing.TB, st HistoryStore, queueMax int) *History {
	tb.Helper()
	h := NewHistory(st, 5*time.Millisecond, queueMax, slog.New(slog.NewTextHandler(io.Discard, nil)), metrics.New(func() float64 { return 0 }))
	tb.Cleanup(func() { _ = h.Close(context.Background()) })
	return h
}

func wait(tb testing.TB, ch <-chan error, d time.Duration) (error, bool) {
	tb.Helper()
	select {
	case err := <-ch:
		return err, true
	case <-time.After(d):
		return nil, false
	}
}

func TestHistoryAcksAfterWrite(t *testing.T) {
	st := &flakyStore{stored: map[uint64]int{}}
	h := mustHistory(t, st, 1000)
	err, ok := wait(t, h.Add(context.Background(), positions(1, 10)), 5*time.Second)
	if !ok || err != nil {
		t.Fatalf("add: %v %v", ok, err)
	}
	// Acknowledged means stored: nothing may be acked before the write.
	if st.count() != 10 {
		t.Fatalf("acked with %d of 10 stored", st.count())
	}
	if h.Ready() != nil {
		t.Fatalf("ready: %v", h.Ready())
	}
}

func TestHistoryStoreOutage(t *testing.T) {
	st := &flakyStore{stored: map[uint64]int{}}
	h := mustHistory(t, st, 1000)
	st.set(true)
	// The first batch waits for a write, which fails: it is then carried by
	// the memory queue and answered; ingest goes on.
	if err, ok := wait(t, h.Add(context.Background(), positions(1, 100)), 5*time.Second); !ok || err != nil {
		t.Fatalf("first add during outage: %v %v", ok, err)
	}
	if h.Ready() == nil {
		t.Fatal("ready while the store fails")
	}
	// In degraded mode, adds are answered at once while the queue has room.
	for i := 1; i < 9; i++ {
		if err, ok := wait(t, h.Add(context.Background(), positions(1+100*i, 100)), time.Second); !ok || err != nil {
			t.Fatalf("add %d during outage: %v %v", i, ok, err)
		}
	}
	// Past the bound the add blocks: the broker must keep the message.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err, ok := wait(t, h.Add(ctx, positions(901, 200)), 2*time.Second); !ok || !errors.Is(err, ErrQueueFull) {
		t.Fatalf("add over the bound: %v %v", ok, err)
	}
	if st.count() != 0 {
		t.Fatalf("stored %d during the outage", st.count())
	}
	// The store comes back: everything accepted is written, exactly once.
	st.set(false)
	deadline := time.Now().Add(10 * time.Second)
	for st.count() < 900 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if st.count() != 900 {
		t.Fatalf("after recovery stored %d, want 900", st.count())
	}
	for seq, n := range st.stored {
		if n != 1 {
			t.Fatalf("seq %d written %d times", seq, n)
		}
	}
	if h.Ready() != nil || h.Queued() != 0 {
		t.Fatalf("after recovery ready=%v queued=%d", h.Ready(), h.Queued())
	}
}

func TestHistoryCloseFlushes(t *testing.T) {
	st := &flakyStore{stored: map[uint64]int{}}
	h := NewHistory(st, time.Hour, 1000, slog.New(slog.NewTextHandler(io.Discard, nil)), metrics.New(func() float64 { return 0 }))
	done := h.Add(context.Background(), positions(1, 42))
	if err := h.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err, ok := wait(t, done, time.Second); !ok || err != nil || st.count() != 42 {
		t.Fatalf("close did not flush: %v %v stored %d", ok, err, st.count())
	}
}

// TestHistoryNotifiesOnWrite: during a store outage the broker is answered
// from the memory queue, but onStored (which tells the device its fixes are
// stored) waits for the write itself.
func TestHistoryNotifiesOnWrite(t *testing.T) {
	st := &flakyStore{stored: map[uint64]int{}}
	h := mustHistory(t, st, 1000)
	st.set(true)
	stored := make(chan struct{})
	if err, ok := wait(t, h.AddNotify(context.Background(), positions(1, 10), func() { close(stored) }), 5*time.Second); !ok || err != nil {
		t.Fatalf("add during outage: %v %v", ok, err)
	}
	select {
	case <-stored:
		t.Fatal("told stored while the store was failing")
	default:
	}
	st.set(false)
	select {
	case <-stored:
	case <-time.After(10 * time.Second):
		t.Fatal("never told stored after the store came back")
	}
	if st.count() != 10 {
		t.Fatalf("stored %d, want 10", st.count())
	}
}

// gatedStore is a healthy but slow HistoryStore: writes wait for the gate.
type gatedStore struct {
	flakyStore
	gate chan struct{}
}

func (g *gatedStore) InsertPositions(ctx context.Context, ps []mongostore.Position) (int, error) {
	select {
	case <-g.gate:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	return g.flakyStore.InsertPositions(ctx, ps)
}

// TestHistoryBackpressure: while the store is healthy but slower than the
// traffic, the queue holds at most activeMax fixes, far below the outage
// bound: past it Add waits (the broker keeps the message) instead of
// queueing seconds of data ahead of every later fix.
func TestHistoryBackpressure(t *testing.T) {
	st := &gatedStore{flakyStore: flakyStore{stored: map[uint64]int{}}, gate: make(chan struct{})}
	h := mustHistory(t, st, 1_000_000)
	if h.activeMax >= h.queueMax/10 {
		t.Fatalf("activeMax %d is not far below the outage bound %d", h.activeMax, h.queueMax)
	}
	given := context.Background()
	gone, cancel := context.WithCancel(context.Background())
	cancel() // an Add with an ended context answers ErrQueueFull at once instead of waiting
	var acks []<-chan error
	for i := 0; i*1000 < h.activeMax; i++ {
		acks = append(acks, h.Add(given, positions(1+1000*i, 1000)))
	}
	full := h.Add(gone, positions(1_000_001, 1000))
	if err, ok := wait(t, full, 5*time.Second); !ok || !errors.Is(err, ErrQueueFull) {
		t.Fatalf("add past the bound while healthy: %v %v (queued %d)", ok, err, h.Queued())
	}
	if q := h.Queued(); q > h.activeMax {
		t.Fatalf("queued %d > %d", q, h.activeMax)
	}
	if h.Ready() != nil {
		t.Fatal("a slow store is not an outage")
	}
	close(st.gate)
	for i, ack := range acks {
		if err, ok := wait(t, ack, 10*time.Second); !ok || err != nil {
			t.Fatalf("add %d: %v %v", i, ok, err)
		}
	}
	if st.count() != h.activeMax/1000*1000 {
		t.Fatalf("stored %d", st.count())
	}
	if err, ok := wait(t, h.Add(gone, positions(2_000_001, 1000)), 5*time.Second); !ok || err != nil {
		t.Fatalf("add once drained: %v %v", ok, err)
	}
}
