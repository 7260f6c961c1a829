package app

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tawsil/tawsil/backend/internal/metrics"
)

// relayBus is a broker connection for relayOut's tests: publish calls
// block until the caller's context ends while stuck, fail while failing,
// and are recorded otherwise; onPublish runs inside each call.
type relayBus struct {
	mu        sync.Mutex
	stuck     bool
	failing   bool
	sent      []string // topic=payload
	onPublish func(topic string)
}

func (b *relayBus) Publish(ctx context.Context, t string, payload []byte, _ byte, _ bool) error {
	b.mu.Lock()
	stuck, failing, hook := b.stuck, b.failing, b.onPublish
	b.mu.Unlock()
	if hook != nil {
		hook(t)
	}
	if stuck {
		<-ctx.Done()
		return ctx.Err()
	}
	if failing {
		return errors.New("broker said no")
	}
	b.mu.Lock()
	b.sent = append(b.sent, t+"="+string(payload))
	b.mu.Unlock()
	return nil
}

func (b *relayBus) Connected() bool { return true }
func (b *relayBus) Close() error    { return nil }

func relayMain(b *relayBus) *Main {
	return &Main{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Metrics: metrics.New(func() float64 { return 0 }), Bus: b}
}

// TestRelayPositionsNeverWait: with the broker holding every publish, a
// relayed position is queued or dropped at once, never waited on, and the
// drops are counted.
func TestRelayPositionsNeverWait(t *testing.T) {
	b := &relayBus{stuck: true}
	m := relayMain(b)
	o := newRelayOut()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { o.sendPositions(ctx, m); close(done) }()
	defer func() { cancel(); <-done }()

	queued := make(chan struct{})
	go func() {
		for range relayQueue + 50 {
			o.position(m, relayMsg{courier: "c1", topic: "tawsil/v1/backend/positions/c1", payload: []byte("{}")})
		}
		close(queued)
	}()
	select {
	case <-queued:
	case <-time.After(time.Minute): // a hang, not a speed limit
		t.Fatal("queueing relayed positions waited on the broker")
	}
	// One may be in the sender's hands; the rest past the queue are dropped.
	if got := testutil.ToFloat64(m.Metrics.ClusterRelays.WithLabelValues("position", "dropped")); got < 49 {
		t.Errorf("dropped %v relayed positions, want at least 49 of the %d past the queue", got, 50)
	}
}

// TestRelayNotesNewestRetried: a note the broker refuses is kept and tried
// again, unless a newer note of its courier came meanwhile; only the newest
// note of each courier is sent.
func TestRelayNotesNewestRetried(t *testing.T) {
	b := &relayBus{failing: true}
	m := relayMain(b)
	o := newRelayOut()
	ctx := context.Background()
	var sent []<-chan struct{} // of every note queued
	note := func(courier, v string) {
		sent = append(sent, o.note(relayMsg{courier: courier, topic: "n/" + courier, payload: []byte(v)}))
	}
	closed := func() (n int) {
		for _, c := range sent {
			select {
			case <-c:
				n++
			default:
			}
		}
		return n
	}
	note("a", "1")
	note("a", "2") // replaces 1 before anything is sent
	note("b", "1")
	if o.flushNotes(ctx, m) {
		t.Fatal("flushNotes reported all sent while the broker refused them")
	}
	if n := closed(); n != 0 {
		t.Errorf("%d notes reported sent while the broker refused them", n)
	}
	// While a's note 2 is refused, a newer one arrives: 2 must not come back over it.
	b.mu.Lock()
	b.onPublish = func(topic string) {
		if topic != "n/a" {
			return
		}
		b.mu.Lock()
		b.onPublish = nil
		b.mu.Unlock()
		note("a", "3")
	}
	b.mu.Unlock()
	if o.flushNotes(ctx, m) {
		t.Fatal("flushNotes reported all sent while the broker refused them")
	}
	note("b", "2")
	b.mu.Lock()
	b.failing = false
	b.mu.Unlock()
	if !o.flushNotes(ctx, m) {
		t.Fatal("flushNotes failed with the broker taking everything")
	}
	if n := closed(); n != len(sent) {
		t.Errorf("%d of the %d notes queued reported sent, want all (each replaced by a newer note that was sent)", n, len(sent))
	}
	got := map[string]bool{}
	for _, s := range b.sent {
		got[s] = true
	}
	if len(b.sent) != 2 || !got["n/a=3"] || !got["n/b=2"] {
		t.Errorf("sent %q, want the newest note of each courier once: n/a=3 and n/b=2", b.sent)
	}
	if n := testutil.ToFloat64(m.Metrics.ClusterRelays.WithLabelValues("note", "failed")); n != 4 {
		t.Errorf("counted %v failed notes, want 4 (a and b, twice)", n)
	}
}
