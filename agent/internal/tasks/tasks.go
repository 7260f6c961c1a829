// Package tasks keeps the courier's current work as the backend last said
// it: open offers, assignments and the latest route plan. Messages are
// applied in sequence-number order; a message whose number is not above the
// last applied one is stale (a redelivery, or overtaken) and ignored.
//
// Route plans are ordered by their own version instead: the plan in force
// is replaced only by a higher version, whatever the sequence numbers. Two
// backend replicas re-planning at once may publish their plans in the
// opposite order of their versions, and an unrelated task may overtake a
// plan on the way: by sequence alone the device would keep an older plan,
// or drop the newest one. The plan in force is persisted with the sequence
// number, so neither rule forgets across a restart of the agent.
package tasks

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/tawsil/tawsil/shared/wire"
)

// Errors of Apply for messages that are well formed but not applied.
var (
	ErrStale   = errors.New("stale task message")                          // seq at or below the last applied
	ErrOldPlan = errors.New("route plan not newer than the plan in force") // version at or below the applied plan's
)

// Store persists what the book must keep across restarts.
type Store interface {
	// TaskState returns the last applied sequence number and the route
	// plan message in force (nil when none).
	TaskState() (seq uint64, plan []byte, err error)
	// SetTaskState stores the last applied sequence number and, when plan
	// is not nil, the route plan message now in force, in one write.
	SetTaskState(seq uint64, plan []byte) error
}

// Book is the current task list. It is safe for concurrent use.
type Book struct {
	store Store
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

// NewBook loads the last applied sequence number and the plan in force
// from store. A stored plan that no longer decodes is dropped: the next
// plan the backend sends replaces it.
func NewBook(store Store, now func() time.Time) (*Book, error) {
	seq, plan, err := store.TaskState()
	if err != nil {
		return nil, fmt.Errorf("load task seq: %w", err)
	}
	if now == nil {
		now = time.Now
	}
	b := &Book{store: store, now: now, lastSeq: seq,
		offers: make(map[string]wire.Task), assignments: make(map[string]wire.Task)}
	if plan != nil {
		if t, err := wire.DecodeTask(plan); err == nil && t.Type == wire.TaskRoutePlan {
			b.route = &t
		}
	}
	return b, nil
}

// Apply decodes and applies one message from the tasks topic. It returns
// the decoded task, ErrStale for an old one, ErrOldPlan for a route plan
// not newer than the plan in force, or the decoding error.
func (b *Book) Apply(payload []byte) (wire.Task, error) {
	t, err := wire.DecodeTask(payload)
	if err != nil {
		return t, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if t.Type == wire.TaskRoutePlan {
		return t, b.applyPlan(t, payload)
	}
	if t.Seq <= b.lastSeq {
		return t, fmt.Errorf("%w: seq %d, last applied %d", ErrStale, t.Seq, b.lastSeq)
	}
	// Persist first: after a crash the message is not applied twice, and a
	// redelivered copy is recognised as stale.
	if err := b.store.SetTaskState(t.Seq, nil); err != nil {
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
	}
	return t, nil
}

// applyPlan puts a route plan in force if its version is above the plan in
// force; the last applied sequence number only ever moves up.
func (b *Book) applyPlan(t wire.Task, payload []byte) error {
	if b.route != nil && t.Route.Version <= b.route.Route.Version {
		return fmt.Errorf("%w: version %d (seq %d), in force %d (seq %d)", ErrOldPlan, t.Route.Version, t.Seq, b.route.Route.Version, b.route.Seq)
	}
	seq := max(b.lastSeq, t.Seq)
	if err := b.store.SetTaskState(seq, payload); err != nil {
		return fmt.Errorf("persist route plan: %w", err)
	}
	b.lastSeq, b.route = seq, &t
	return nil
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
