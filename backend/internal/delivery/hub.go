package delivery

import (
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// StreamEvent is one dispatcher event (Server-Sent Events).
type StreamEvent struct {
	ID   uint64
	Type string
	Data []byte
}

// Hub fans events out to connected dispatcher streams. A slow subscriber
// loses events (counted in its Dropped) rather than slowing the system.
type Hub struct {
	mu     sync.Mutex
	subs   map[*Subscription]struct{}
	byUser map[string]int
	seq    atomic.Uint64
	closed chan struct{}
	once   sync.Once
}

// Subscription is one stream.
type Subscription struct {
	C       chan StreamEvent
	Dropped atomic.Uint64
	user    string
	ended   chan struct{} // closed when the user's access is revoked
}

// Ended is closed when the stream must end at once: its user logged out,
// changed password, or was disabled or erased.
func (s *Subscription) Ended() <-chan struct{} { return s.ended }

// MaxStreamsPerUser bounds the open streams of one user.
const MaxStreamsPerUser = 3

// ErrTooManyStreams is returned by Subscribe beyond MaxStreamsPerUser.
var ErrTooManyStreams = errors.New("too many open event streams for this user")

// NewHub returns an empty hub.
func NewHub() *Hub {
	return &Hub{subs: map[*Subscription]struct{}{}, byUser: map[string]int{}, closed: make(chan struct{})}
}

// Closed is closed when the hub shuts down: streams end.
func (h *Hub) Closed() <-chan struct{} { return h.closed }

// Close ends every stream (graceful shutdown).
func (h *Hub) Close() { h.once.Do(func() { close(h.closed) }) }

// Subscribe adds a stream for a user; ErrTooManyStreams when the user
// already has MaxStreamsPerUser open.
func (h *Hub) Subscribe(userID string) (*Subscription, error) {
	s := &Subscription{C: make(chan StreamEvent, 256), user: userID, ended: make(chan struct{})}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.byUser[userID] >= MaxStreamsPerUser {
		return nil, ErrTooManyStreams
	}
	h.byUser[userID]++
	h.subs[s] = struct{}{}
	return s, nil
}

// Subscribers is the number of connected streams.
func (h *Hub) Subscribers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}

// Unsubscribe removes a stream.
func (h *Hub) Unsubscribe(s *Subscription) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[s]; !ok {
		return
	}
	delete(h.subs, s)
	if h.byUser[s.user]--; h.byUser[s.user] <= 0 {
		delete(h.byUser, s.user)
	}
}

// EndUser ends every open stream of a user at once and returns how many.
func (h *Hub) EndUser(userID string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for s := range h.subs {
		if s.user == userID {
			delete(h.subs, s)
			close(s.ended)
			n++
		}
	}
	delete(h.byUser, userID)
	return n
}

// Publish sends an event to every stream.
func (h *Hub) Publish(typ string, data map[string]any) {
	data["type"] = typ
	if _, ok := data["at"]; !ok {
		data["at"] = time.Now().UTC()
	}
	b, err := json.Marshal(data)
	if err != nil {
		return
	}
	ev := StreamEvent{ID: h.seq.Add(1), Type: typ, Data: b}
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		select {
		case s.C <- ev:
		default:
			s.Dropped.Add(1)
		}
	}
}
