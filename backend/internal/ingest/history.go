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
// to four InsertMany calls in flight. At most activeMax fixes wait: past
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
	// activeMax bounds the queue while the store keeps up (two rounds of
	// full batches: enough to keep every writer busy), queueMax during an
	// outage.
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
	done     chan error // nil once answered early (degraded mode)
	onStored func()     // run once written, even when answered early; may be nil
}

// NewHistory starts the writer; call Close to flush and stop.
func NewHistory(store HistoryStore, interval time.Duration, queueMax int, log *slog.Logger, m *metrics.Metrics) *History {
	const maxBatch, writers = 4000, 4
	h := &History{store: store, interval: interval, maxBatch: maxBatch, writers: writers, queueMax: queueMax,
		activeMax: min(queueMax, 2*writers*maxBatch), log: log, m: m, kick: make(chan struct{}, 1), done: make(chan struct{})}
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
	done := make(chan error, 1)
	if len(ps) == 0 {
		if onStored != nil {
			onStored()
		}
		done <- nil
		return done
	}
	h.mu.Lock()
	// A batch larger than the bound is taken into an empty queue.
	for h.queued > 0 && h.queued+len(ps) > h.limit() && !h.stopped {
		if ctx.Err() != nil {
			h.mu.Unlock()
			done <- ErrQueueFull
			return done
		}
		waitCond(ctx, h.space)
	}
	if h.stopped {
		h.mu.Unlock()
		done <- errors.New("history writer stopped")
		return done
	}
	it := item{ps: ps, done: done, onStored: onStored}
	if h.degraded {
		done <- nil
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
	return done
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

func (h *History) loop() {
	defer close(h.done)
	t := time.NewTicker(h.interval)
	defer t.Stop()
	backoff := h.interval
	for {
		h.mu.Lock()
		stopped := h.stopped
		h.mu.Unlock()
		if !stopped {
			select {
			case <-t.C:
			case <-h.kick:
			}
		}
		for {
			err := h.flushOnce()
			if err == nil {
				backoff = h.interval
				h.mu.Lock()
				more := h.queued >= h.maxBatch || (h.stopped && h.queued > 0) || len(h.pending) > 0 && h.queued >= h.maxBatch/4
				empty := h.queued == 0
				stop := h.stopped
				h.mu.Unlock()
				if stop && empty {
					return
				}
				if !more {
					break
				}
				continue
			}
			h.mu.Lock()
			stop := h.stopped
			h.mu.Unlock()
			if stop {
				h.log.Error("history not flushed at shutdown", "fixes", h.Queued(), "err", err)
				h.failAll(err)
				return
			}
			time.Sleep(backoff)
			backoff = min(backoff*2, 5*time.Second)
		}
	}
}

// flushOnce writes up to h.writers batches from the head of the queue at
// once (their order does not matter: the unique {courier, seq} index makes
// each write idempotent) and answers the waiters of those that succeeded.
func (h *History) flushOnce() error {
	type batch struct {
		items []item
		count int
	}
	h.mu.Lock()
	var batches []batch
	taken := 0
	for len(batches) < h.writers && taken < len(h.pending) {
		start, count := taken, 0
		for taken < len(h.pending) && (count == 0 || count+len(h.pending[taken].ps) <= h.maxBatch) {
			count += len(h.pending[taken].ps)
			taken++
		}
		batches = append(batches, batch{items: h.pending[start:taken:taken], count: count})
	}
	h.mu.Unlock()
	if len(batches) == 0 {
		return nil
	}
	errs := make([]error, len(batches))
	var wg sync.WaitGroup
	for k := range batches {
		wg.Add(1)
		go func(k int) {
			defer wg.Done()
			ps := make([]mongostore.Position, 0, batches[k].count)
			for _, it := range batches[k].items {
				ps = append(ps, it.ps...)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			start := time.Now()
			_, errs[k] = h.store.InsertPositions(ctx, ps)
			h.m.HistoryFlushSecs.Observe(time.Since(start).Seconds())
		}(k)
	}
	wg.Wait()

	h.mu.Lock()
	defer h.mu.Unlock()
	var failed []item
	var firstErr error
	for k, b := range batches {
		if errs[k] != nil {
			h.m.HistoryFlushErrs.Inc()
			failed = append(failed, b.items...)
			firstErr = cmp.Or(firstErr, errs[k])
			continue
		}
		for _, it := range b.items {
			if it.onStored != nil {
				it.onStored() // must not block: Acks.Add only records; before done, so a handled message's ack is already due
			}
			if it.done != nil {
				it.done <- nil
			}
		}
		h.queued -= b.count
		h.m.HistoryWritten.Add(float64(b.count))
	}
	h.pending = append(failed, h.pending[taken:]...)
	h.m.HistoryQueue.Set(float64(h.queued))
	h.space.Broadcast()
	if firstErr != nil {
		if !h.degraded {
			h.log.Warn("history store failing; acknowledging from memory queue", "queued", h.queued, "err", firstErr)
		}
		h.degraded = true
		// Answer the waiters now: from here on the memory queue carries them.
		for i := range h.pending {
			if h.pending[i].done != nil {
				h.pending[i].done <- nil
				h.pending[i].done = nil
			}
		}
		return firstErr
	}
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
			it.done <- err
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
