package outbox

import (
	"sort"
	"sync"
	"time"

	"github.com/tawsil/tawsil/shared/wire"
)

// Memory is an outbox in RAM, for simulated fleets: hundreds of couriers in
// one process would otherwise cost one fsync per fix each, and a simulated
// courier has nothing to lose in a crash. Same semantics as Outbox.
type Memory struct {
	mu      sync.Mutex
	epoch   uint64
	fixes   []wire.Fix // oldest first, Seq strictly increasing
	lastSeq uint64
	max     int
	dropped uint64
}

// NewMemory returns an empty in-memory outbox holding at most maxFixes,
// whose first fix gets sequence number lastSeq+1.
// Its epoch is new.
func NewMemory(maxFixes int, lastSeq uint64) *Memory {
	return &Memory{max: maxFixes, lastSeq: lastSeq, epoch: wire.NewDeviceEpoch(time.Now())}
}

// Epoch is the sequence epoch of this outbox.
func (m *Memory) Epoch() uint64 { return m.epoch }

// Confirm deletes the fixes the backend acknowledged as stored.
func (m *Memory) Confirm(epoch uint64, ranges []wire.SeqRange) (int, error) {
	if epoch != m.epoch {
		return 0, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	a := wire.Ack{Epoch: epoch, Ranges: ranges}
	kept := m.fixes[:0]
	for _, f := range m.fixes {
		if !a.Contains(epoch, f.Seq) {
			kept = append(kept, f)
		}
	}
	n := len(m.fixes) - len(kept)
	m.fixes = kept
	return n, nil
}

// SetMax changes the bound.
func (m *Memory) SetMax(n int) {
	m.mu.Lock()
	m.max = n
	m.mu.Unlock()
}

// Enqueue numbers and stores f, dropping the oldest if full.
func (m *Memory) Enqueue(f wire.Fix) (wire.Fix, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lastSeq++
	f.Seq, f.Epoch = m.lastSeq, m.epoch
	if over := len(m.fixes) - m.max + 1; over > 0 {
		m.fixes = append(m.fixes[:0], m.fixes[over:]...)
		m.dropped += uint64(over)
	}
	m.fixes = append(m.fixes, f)
	return f, nil
}

// PeekAfter returns up to n fixes with Seq > after, oldest first.
func (m *Memory) PeekAfter(after uint64, n int) ([]wire.Fix, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	i := sort.Search(len(m.fixes), func(i int) bool { return m.fixes[i].Seq > after })
	end := min(len(m.fixes), i+n)
	return append([]wire.Fix(nil), m.fixes[i:end]...), nil
}

// Remove deletes the given fixes.
func (m *Memory) Remove(seqs []uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	drop := make(map[uint64]bool, len(seqs))
	for _, s := range seqs {
		drop[s] = true
	}
	kept := m.fixes[:0]
	for _, f := range m.fixes {
		if !drop[f.Seq] {
			kept = append(kept, f)
		}
	}
	m.fixes = kept
	return nil
}

// Depth is the number of fixes waiting.
func (m *Memory) Depth() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.fixes)
}

// LastSeq is the last sequence number given.
func (m *Memory) LastSeq() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lastSeq
}

// Dropped counts fixes dropped because the outbox was full.
func (m *Memory) Dropped() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.dropped
}
