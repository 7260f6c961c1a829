package delivery

import (
	"encoding/json"
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
	seq    atomic.Uint64
	closed chan struct{}
	once   sync.Once
}

// Subscription is one stream.
type Subscription struct {
	C       chan StreamEvent
	Dropped atomic.Uint64
}

// NewHub returns an empty hub.
func NewHub() *Hub { return &Hub{subs: map[*Subscription]struct{}{}, closed: make(chan struct{})} }

// Closed is closed when the hub shuts down: streams end.
func (h *Hub) Closed() <-chan struct{} { return h.closed }

// Close ends every stream (graceful shutdown).
func (h *Hub) Close() { h.once.Do(func() { close(h.closed) }) }

// Subscribe adds a stream.
func (h *Hub) Subscribe() *Subscription {
	s := &Subscription{C: make(chan StreamEvent, 256)}
	h.mu.Lock()
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	return s
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
	delete(h.subs, s)
	h.mu.Unlock()
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
