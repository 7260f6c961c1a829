package ingest

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/tawsil/tawsil/backend/internal/metrics"
	"github.com/tawsil/tawsil/backend/internal/mongostore"
)

// HistoryStore writes position batches; fixes already stored are skipped.
type HistoryStore interface {
	InsertPositions(ctx context.Context, ps []mongostore.Position) (int, error)
}

// ErrQueueFull means the store has been failing long enough that the memory
// queue is full: the message must not be acknowledged.
var ErrQueueFull = errors.New("history queue full")

// History is a group-commit writer for position history.
//
// Normal mode: a message's fixes are acknowledged to the broker only after
// the InsertMany that holds them returned (zero loss window). Many messages
// share one InsertMany, flushed every interval or at maxBatch fixes, with up
// to two InsertMany calls in flight. At most activeMax fixes wait: past
// that Add blocks, so a store slower than the traffic holds messages back in
// the broker (backpressure) instead of a queue here that grows to seconds
// and delays every message behind it.
//
// Degraded mode (the last flush failed: store outage): fixes are acknowledged
// as soon as they are queued, so ingest and the live index go on, up to
// queueMax fixes; past that Add blocks and the broker keeps the messages.
// The loss window is therefore: fixes queued during a store outage, if this
// process is killed before the store comes back. A graceful stop flushes.
type History struct {
	store    HistoryStore
	interval time.Duration
	maxBatch int
	writers  int // InsertMany calls in flight at once
	// activeMax bounds the queue while the store keeps up (a full batch
	// for every writer), queueMax during an outage.
	activeMax int
	queueMax  int
	log       *slog.Logger
	m         *metrics.Metrics

	mu       sync.Mutex
	pending  []item
	queued   int
	degraded bool
	space    *sync.Cond
	kick     chan struct{}
	stopped  bool
	done     chan struct{}
}

type item struct {
	ps       []mongostore.Position
	done     func(error) // nil once answered early (degraded mode)
	onStored func()      // run once written, even when answered early; may be nil
}

// NewHistory starts the writer; call Close to flush and stop.
func NewHistory(store HistoryStore, interval time.Duration, queueMax int, log *slog.Logger, m *metrics.Metrics) *History {
	// A write costs about the same for 4,000 or 16,000 fixes (one bucket
	// per courier either way: BenchmarkInsertPositions), so batches are
	// large, and the store's CPU per fix falls with the fixes per bucket:
	// two writers of up to 48,000 fixes took a fifth less CPU (backend and
	// PostgreSQL) than four of 16,000 in the saturated e2e bench.
	const maxBatch, writers, activeMax = 48_000, 2, 96_000
	h := &History{store: store, interval: interval, maxBatch: maxBatch, writers: writers, queueMax: queueMax,
		activeMax: min(queueMax, activeMax), log: log, m: m, kick: make(chan struct{}, 1), done: make(chan struct{})}
	h.space = sync.NewCond(&h.mu)
	go h.loop()
	return h
}

// Add queues fixes and returns a channel that yields nil once they are
// durable (or queued, in degraded mode), or an error.
func (h *History) Add(ctx context.Context, ps []mongostore.Position) <-chan error {
	return h.AddNotify(ctx, ps, nil)
}

// AddNotify is Add, and also runs onStored (if not nil) once the fixes are
// actually written, whatever the mode: what a device is told is stored
// must be in the store, not in the memory queue.
func (h *History) AddNotify(ctx context.Context, ps []mongostore.Position, onStored func()) <-chan error {
	ch := make(chan error, 1)
	h.AddFunc(ctx, ps, onStored, func(err error) { ch <- err })
	return ch
}

// AddFunc is AddNotify with a callback instead of a channel: done is called
// exactly once, with nil once the fixes are durable (or queued, in degraded
// mode) or with the error, possibly before AddFunc returns. It runs on the
// writer's goroutine, under its lock: it must not block or call History.
func (h *History) AddFunc(ctx context.Context, ps []mongostore.Position, onStored func(), done func(error)) {
	if len(ps) == 0 {
		if onStored != nil {
			onStored()
		}
		done(nil)
		return
	}
	h.mu.Lock()
	// A batch larger than the bound is taken into an empty queue.
	for h.queued > 0 && h.queued+len(ps) > h.limit() && !h.stopped {
		if ctx.Err() != nil {
			h.mu.Unlock()
			done(ErrQueueFull)
			return
		}
		waitCond(ctx, h.space)
	}
	if h.stopped {
		h.mu.Unlock()
		done(errors.New("history writer stopped"))
		return
	}
	it := item{ps: ps, done: done, onStored: onStored}
	if h.degraded {
		done(nil)
		it.done = nil
	}
	h.pending = append(h.pending, it)
	h.queued += len(ps)
	full := h.queued >= h.maxBatch
	h.m.HistoryQueue.Set(float64(h.queued))
	h.mu.Unlock()
	if full {
		select {
		case h.kick <- struct{}{}:
		default:
		}
	}
}

// limit is the queue's bound in the current mode; h.mu is held.
func (h *History) limit() int {
	if h.degraded {
		return h.queueMax
	}
	return h.activeMax
}

// waitCond waits on c (whose lock is held) until signalled or ctx ends.
func waitCond(ctx context.Context, c *sync.Cond) {
	stop := context.AfterFunc(ctx, func() {
		c.L.Lock()
		c.Broadcast()
		c.L.Unlock()
	})
	defer stop()
	c.Wait()
}

// Ready reports whether history writes are healthy.
func (h *History) Ready() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.degraded {
		return errors.New("history store failing: fixes queued in memory")
	}
	return nil
}

// Queued is the number of fixes not yet written.
func (h *History) Queued() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.queued
}

// flight is one batch being written.
type flight struct {
	items []item
	count int
	err   error
}

// loop starts writes and takes their results. A free writer takes a full
// batch as soon as one is queued, and a partial one at each tick (or when
// stopping); writers do not wait for each other, so under load every
// writer is busy and a message waits for about one write, not for a round.
// After a failed write no write starts for a backoff (the interval,
// doubling up to 5 s); the failed fixes go back to the head of the queue.
func (h *History) loop() {
	defer close(h.done)
	t := time.NewTicker(h.interval)
	defer t.Stop()
	results := make(chan *flight, h.writers)
	inflight, inflightFixes := 0, 0
	backoff, due := h.interval, false
	var retry <-chan time.Time
	var stopErr error
	for {
		h.mu.Lock()
		for retry == nil && stopErr == nil && inflight < h.writers && len(h.pending) > 0 &&
			(h.queued-inflightFixes >= h.maxBatch || due || h.stopped) {
			f := &flight{}
			n := 0
			for n < len(h.pending) && (f.count == 0 || f.count+len(h.pending[n].ps) <= h.maxBatch) {
				f.count += len(h.pending[n].ps)
				n++
			}
			f.items = h.pending[:n:n]
			h.pending = h.pending[n:]
			inflight++
			inflightFixes += f.count
			due = false
			go h.write(f, results)
		}
		if h.stopped && inflight == 0 && (len(h.pending) == 0 || stopErr != nil) {
			h.mu.Unlock()
			if stopErr != nil {
				h.log.Error("history not flushed at shutdown", "fixes", h.Queued(), "err", stopErr)
				h.failAll(stopErr)
			}
			return
		}
		h.mu.Unlock()
		select {
		case <-t.C:
			due = true
		case <-h.kick:
		case <-retry:
			retry, due = nil, true
		case f := <-results:
			inflight--
			inflightFixes -= f.count
			if err := h.finish(f); err != nil {
				h.mu.Lock()
				stopping := h.stopped
				h.mu.Unlock()
				if stopping {
					stopErr = cmp.Or(stopErr, err)
					continue
				}
				if retry == nil {
					retry = time.After(backoff)
				}
				backoff = min(backoff*2, 5*time.Second)
			} else {
				backoff = h.interval
			}
		}
	}
}

// BatchStore is a HistoryStore that takes a flush as the messages' batches,
// sparing a copy of every fix into one slice.
type BatchStore interface {
	InsertPositionBatches(ctx context.Context, batches [][]mongostore.Position) (int, error)
}

var _ BatchStore = (*mongostore.Store)(nil)

// write runs one InsertMany.
func (h *History) write(f *flight, results chan<- *flight) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if bs, ok := h.store.(BatchStore); ok {
		batches := make([][]mongostore.Position, len(f.items))
		for i, it := range f.items {
			batches[i] = it.ps
		}
		_, f.err = bs.InsertPositionBatches(ctx, batches)
	} else {
		ps := make([]mongostore.Position, 0, f.count)
		for _, it := range f.items {
			ps = append(ps, it.ps...)
		}
		_, f.err = h.store.InsertPositions(ctx, ps)
	}
	h.m.HistoryFlushSecs.Observe(time.Since(start).Seconds())
	results <- f
}

// finish answers the waiters of a written batch, or puts a failed one back
// at the head of the queue (the unique bucket ids make a retried write
// idempotent) and enters degraded mode.
func (h *History) finish(f *flight) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	defer h.space.Broadcast()
	if f.err != nil {
		h.m.HistoryFlushErrs.Inc()
		h.pending = append(append([]item(nil), f.items...), h.pending...)
		if !h.degraded {
			h.log.Warn("history store failing; acknowledging from memory queue", "queued", h.queued, "err", f.err)
		}
		h.degraded = true
		// Answer the waiters now: from here on the memory queue carries them.
		for i := range h.pending {
			if h.pending[i].done != nil {
				h.pending[i].done(nil)
				h.pending[i].done = nil
			}
		}
		return f.err
	}
	for _, it := range f.items {
		if it.onStored != nil {
			it.onStored() // must not block: Acks.Add only records; before done, so a handled message's ack is already due
		}
		if it.done != nil {
			it.done(nil)
		}
	}
	h.queued -= f.count
	h.m.HistoryWritten.Add(float64(f.count))
	h.m.HistoryQueue.Set(float64(h.queued))
	if h.degraded {
		h.log.Info("history store back", "queued", h.queued)
	}
	h.degraded = false
	return nil
}

func (h *History) failAll(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, it := range h.pending {
		if it.done != nil {
			it.done(err)
		}
	}
	h.pending = nil
	h.space.Broadcast()
}

// Close flushes what is queued (until ctx ends) and stops.
func (h *History) Close(ctx context.Context) error {
	h.mu.Lock()
	h.stopped = true
	h.space.Broadcast()
	h.mu.Unlock()
	select {
	case h.kick <- struct{}{}:
	default:
	}
	select {
	case <-h.done:
		if q := h.Queued(); q > 0 {
			return errors.New("history: fixes left unwritten at shutdown")
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
