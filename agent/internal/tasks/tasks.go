// Package tasks keeps the courier's current work as the backend last said
// it: open offers, assignments and the latest route plan. Messages are
// applied in sequence-number order; a message whose number is not above the
// last applied one is stale (a redelivery, or overtaken) and ignored.
package tasks

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/tawsil/tawsil/shared/wire"
)

// ErrStale reports a task message at or below the last applied sequence.
var ErrStale = errors.New("stale task message")

// SeqStore persists the last applied task sequence number.
type SeqStore interface {
	TaskSeq() (uint64, error)
	SetTaskSeq(uint64) error
}

// Book is the current task list. It is safe for concurrent use.
type Book struct {
	store SeqStore
	now   func() time.Time

	mu          sync.Mutex
	lastSeq     uint64
	offers      map[string]wire.Task
	assignments map[string]wire.Task
	route       *wire.Task
}

// View is what GET /tasks shows.
type View struct {
	LastTaskSeq uint64      `json:"last_task_seq"`
	Offers      []wire.Task `json:"offers"`
	Assignments []wire.Task `json:"assignments"`
	Route       *wire.Route `json:"route,omitempty"`
	RouteSeq    uint64      `json:"route_seq,omitempty"`
}

// NewBook loads the last applied sequence number from store.
func NewBook(store SeqStore, now func() time.Time) (*Book, error) {
	seq, err := store.TaskSeq()
	if err != nil {
		return nil, fmt.Errorf("load task seq: %w", err)
	}
	if now == nil {
		now = time.Now
	}
	return &Book{store: store, now: now, lastSeq: seq,
		offers: make(map[string]wire.Task), assignments: make(map[string]wire.Task)}, nil
}

// Apply decodes and applies one message from the tasks topic. It returns
// the decoded task, ErrStale for an old one, or the decoding error.
func (b *Book) Apply(payload []byte) (wire.Task, error) {
	t, err := wire.DecodeTask(payload)
	if err != nil {
		return t, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if t.Seq <= b.lastSeq {
		return t, fmt.Errorf("%w: seq %d, last applied %d", ErrStale, t.Seq, b.lastSeq)
	}
	// Persist first: after a crash the message is not applied twice, and a
	// redelivered copy is recognised as stale.
	if err := b.store.SetTaskSeq(t.Seq); err != nil {
		return t, fmt.Errorf("persist task seq: %w", err)
	}
	b.lastSeq = t.Seq
	switch t.Type {
	case wire.TaskOffer:
		b.offers[t.OrderID] = t
	case wire.TaskOfferExpired:
		delete(b.offers, t.OrderID)
	case wire.TaskAssignment:
		delete(b.offers, t.OrderID)
		b.assignments[t.OrderID] = t
	case wire.TaskCancellation:
		delete(b.offers, t.OrderID)
		delete(b.assignments, t.OrderID)
	case wire.TaskRoutePlan:
		if b.route == nil || t.Route.Version >= b.route.Route.Version {
			b.route = &t
		}
	}
	return t, nil
}

// View returns the current list: offers not yet expired and assignments,
// by order id, and the latest route plan.
func (b *Book) View() View {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	v := View{LastTaskSeq: b.lastSeq, Offers: []wire.Task{}, Assignments: []wire.Task{}}
	for _, t := range b.offers {
		if t.ExpiresAt == nil || t.ExpiresAt.After(now) {
			v.Offers = append(v.Offers, t)
		}
	}
	for _, t := range b.assignments {
		v.Assignments = append(v.Assignments, t)
	}
	sort.Slice(v.Offers, func(i, j int) bool { return v.Offers[i].OrderID < v.Offers[j].OrderID })
	sort.Slice(v.Assignments, func(i, j int) bool { return v.Assignments[i].OrderID < v.Assignments[j].OrderID })
	if b.route != nil {
		v.Route, v.RouteSeq = b.route.Route, b.route.Seq
	}
	return v
}
