package link

import (
	"testing"
	"time"

	"github.com/tawsil/tawsil/shared/wire"
)

// drive runs the holder as drain does, in virtual time: fixes arrive every
// period (their device time skewed by skew from the link's clock); at each
// arrival or when the wait it asked for ends, the link asks again and
// publishes everything waiting when told to. It returns the batches and
// the longest time a fix waited in the link.
func drive(t *testing.T, n int, period, skew, delay time.Duration, batchMax int) (batches []int, longest time.Duration) {
	t.Helper()
	t0 := time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)
	var h holder
	var waiting []wire.Fix
	var arrived []time.Time
	next := 0
	now := t0
	wake := time.Time{} // when the current hold ends; zero: none
	for next < n || len(waiting) > 0 {
		arrival := t0.Add(time.Duration(next) * period)
		switch {
		case next < n && (wake.IsZero() || !arrival.After(wake)):
			now = arrival
			waiting = append(waiting, wire.Fix{Seq: uint64(next + 1), Time: now.Add(skew)})
			arrived = append(arrived, now)
			next++
		case !wake.IsZero():
			now = wake
		default:
			t.Fatalf("fixes waiting with no wake-up at %v", now)
		}
		w := h.wait(now, waiting[:min(len(waiting), batchMax)], batchMax, delay, false)
		if w > 0 {
			wake = now.Add(w)
			continue
		}
		k := min(len(waiting), batchMax)
		batches = append(batches, k)
		longest = max(longest, now.Sub(arrived[0]))
		waiting, arrived = waiting[k:], arrived[k:]
		wake = time.Time{}
		if len(waiting) > 0 {
			wake = now // the rest is decided at once
		}
	}
	return batches, longest
}

func TestHolderBatchesByDelay(t *testing.T) {
	tests := []struct {
		name      string
		period    time.Duration
		skew      time.Duration
		delay     time.Duration
		batchMax  int
		wantBatch int // every batch but possibly the last
		wantMax   time.Duration
	}{
		{name: "1 Hz, 5 s", period: time.Second, delay: 5 * time.Second, batchMax: 200, wantBatch: 6, wantMax: 5 * time.Second},
		{name: "1 Hz, 4.5 s", period: time.Second, delay: 4500 * time.Millisecond, batchMax: 200, wantBatch: 5, wantMax: 4500 * time.Millisecond},
		{name: "no delay", period: time.Second, delay: 0, batchMax: 200, wantBatch: 1, wantMax: 0},
		{name: "batch_max first", period: time.Second, delay: 5 * time.Second, batchMax: 3, wantBatch: 3, wantMax: 2 * time.Second},
		{name: "device clock ahead: fixes look old, sent at once", period: time.Second, skew: -10 * time.Second, delay: 5 * time.Second, batchMax: 200, wantBatch: 1, wantMax: 0},
		{name: "device clock behind: the link's clock bounds the wait", period: time.Second, skew: time.Hour, delay: 5 * time.Second, batchMax: 200, wantBatch: 6, wantMax: 5 * time.Second},
		{name: "slow fixes: each alone within the delay", period: 7 * time.Second, delay: 5 * time.Second, batchMax: 200, wantBatch: 1, wantMax: 5 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			batches, longest := drive(t, 60, tt.period, tt.skew, tt.delay, tt.batchMax)
			for i, b := range batches[:len(batches)-1] {
				if b != tt.wantBatch {
					t.Fatalf("batch %d has %d fixes, want %d (batches %v)", i, b, tt.wantBatch, batches)
				}
			}
			if longest != tt.wantMax {
				t.Fatalf("longest wait %v, want %v", longest, tt.wantMax)
			}
		})
	}
}

func TestHolderFlushAndBacklog(t *testing.T) {
	now := time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)
	fresh := []wire.Fix{{Seq: 10, Time: now}, {Seq: 11, Time: now}}
	var h holder
	if w := h.wait(now, fresh, 200, 5*time.Second, false); w != 5*time.Second {
		t.Fatalf("fresh fixes: wait %v, want 5s", w)
	}
	if w := h.wait(now.Add(2*time.Second), fresh, 200, 5*time.Second, false); w != 3*time.Second {
		t.Fatalf("2 s later: wait %v, want 3s", w)
	}
	if w := h.wait(now.Add(2*time.Second), fresh, 200, 5*time.Second, true); w != 0 {
		t.Fatalf("flush: wait %v, want 0", w)
	}
	// A new oldest fix (the previous ones were published) starts a new wait.
	if w := h.wait(now.Add(3*time.Second), []wire.Fix{{Seq: 12, Time: now.Add(3 * time.Second)}}, 200, 5*time.Second, false); w != 5*time.Second {
		t.Fatalf("next batch: wait %v, want 5s", w)
	}
	// A backlog found at connect: its fixes are older than the delay.
	var h2 holder
	old := []wire.Fix{{Seq: 1, Time: now.Add(-time.Minute)}}
	if w := h2.wait(now, old, 200, 5*time.Second, false); w != 0 {
		t.Fatalf("backlog: wait %v, want 0", w)
	}
}
