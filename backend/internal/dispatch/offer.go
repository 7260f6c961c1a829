package dispatch

import (
	"fmt"
	"sync"
	"time"
)

// OfferState is where one courier stands in an offer round.
type OfferState string

// Offer states.
const (
	OfferPending  OfferState = "pending"
	OfferAccepted OfferState = "accepted"
	OfferDeclined OfferState = "declined"
	OfferExpired  OfferState = "expired"
)

// Offer is one courier's offer in a round.
type Offer struct {
	CourierID string     `json:"courier_id"`
	SentAt    time.Time  `json:"sent_at"`
	ExpiresAt time.Time  `json:"expires_at"`
	State     OfferState `json:"state"`
	AnswerAt  time.Time  `json:"answer_at,omitzero"`
}

// OfferRound offers one order to ranked couriers one at a time, as a pure
// state machine: the integrator sends each Offer, arms a timer for
// ExpiresAt and calls Next when it fires or when the courier declines.
// Couriers are offered once per round, in rank order. It is safe for
// concurrent use (timer and HTTP handler may race).
type OfferRound struct {
	mu      sync.Mutex
	orderID string
	ranked  []Ranked
	timeout time.Duration
	next    int
	log     []Offer
	done    bool
}

// NewOfferRound starts a round over ranked (best first); timeout <= 0
// means 30 seconds.
func NewOfferRound(orderID string, ranked []Ranked, timeout time.Duration) *OfferRound {
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	return &OfferRound{orderID: orderID, ranked: ranked, timeout: timeout}
}

// Next returns the next offer to send. A pending offer that has expired at
// now is marked expired first. Errors: ErrOfferPending while the current
// offer runs; ErrNoCandidate when every candidate has been offered (the
// order needs a dispatcher) or the round is over.
func (r *OfferRound) Next(now time.Time) (Offer, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done {
		return Offer{}, fmt.Errorf("order %s: round closed: %w", r.orderID, ErrNoCandidate)
	}
	if cur := r.current(); cur != nil {
		if now.Before(cur.ExpiresAt) {
			return *cur, fmt.Errorf("order %s: %s until %v: %w", r.orderID, cur.CourierID, cur.ExpiresAt, ErrOfferPending)
		}
		cur.State, cur.AnswerAt = OfferExpired, cur.ExpiresAt
	}
	if r.next >= len(r.ranked) {
		r.done = true
		return Offer{}, fmt.Errorf("order %s: %d offered: %w", r.orderID, len(r.log), ErrNoCandidate)
	}
	o := Offer{CourierID: r.ranked[r.next].CourierID, SentAt: now, ExpiresAt: now.Add(r.timeout), State: OfferPending}
	r.next++
	r.log = append(r.log, o)
	return o, nil
}

// Decline records the courier's refusal; call Next for the next offer.
// Errors: ErrNotOffered.
func (r *OfferRound) Decline(courierID string, now time.Time) error {
	return r.answer(courierID, now, OfferDeclined)
}

// Accept records the courier's acceptance and closes the round; the
// integrator then applies order.ActAccept. Errors: ErrNotOffered,
// ErrOfferExpired (answered after ExpiresAt: the offer is marked expired).
func (r *OfferRound) Accept(courierID string, now time.Time) error {
	return r.answer(courierID, now, OfferAccepted)
}

func (r *OfferRound) answer(courierID string, now time.Time, s OfferState) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	cur := r.current()
	if cur == nil || cur.CourierID != courierID {
		return fmt.Errorf("order %s: %s: %w", r.orderID, courierID, ErrNotOffered)
	}
	if !now.Before(cur.ExpiresAt) {
		cur.State, cur.AnswerAt = OfferExpired, cur.ExpiresAt
		return fmt.Errorf("order %s: %s answered at %v: %w", r.orderID, courierID, now, ErrOfferExpired)
	}
	cur.State, cur.AnswerAt = s, now
	if s == OfferAccepted {
		r.done = true
	}
	return nil
}

// current returns the pending offer, if any.
func (r *OfferRound) current() *Offer {
	if n := len(r.log); n > 0 && r.log[n-1].State == OfferPending {
		return &r.log[n-1]
	}
	return nil
}

// Log returns every offer of the round so far, in order.
func (r *OfferRound) Log() []Offer {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Offer(nil), r.log...)
}

// RoundState is an offer round as data, so the store can keep it and any
// process can continue the round after a restart.
type RoundState struct {
	OrderID string        `json:"order_id" bson:"order_id"`
	Ranked  []string      `json:"ranked" bson:"ranked"` // courier ids, best first
	Timeout time.Duration `json:"timeout" bson:"timeout"`
	Next    int           `json:"next" bson:"next"`
	Log     []Offer       `json:"log" bson:"log"`
	Done    bool          `json:"done" bson:"done"`
}

// State returns a copy of the round's state.
func (r *OfferRound) State() RoundState {
	r.mu.Lock()
	defer r.mu.Unlock()
	ids := make([]string, len(r.ranked))
	for i, c := range r.ranked {
		ids[i] = c.CourierID
	}
	return RoundState{OrderID: r.orderID, Ranked: ids, Timeout: r.timeout, Next: r.next, Log: append([]Offer(nil), r.log...), Done: r.done}
}

// Current returns the pending offer, if any.
func (r *OfferRound) Current() (Offer, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c := r.current(); c != nil {
		return *c, true
	}
	return Offer{}, false
}

// RestoreOfferRound continues a round from its state.
func RestoreOfferRound(st RoundState) *OfferRound {
	ranked := make([]Ranked, len(st.Ranked))
	for i, id := range st.Ranked {
		ranked[i] = Ranked{CourierID: id}
	}
	r := NewOfferRound(st.OrderID, ranked, st.Timeout)
	r.next, r.log, r.done = st.Next, append([]Offer(nil), st.Log...), st.Done
	return r
}

// Clone returns a deep copy.
func (st RoundState) Clone() RoundState {
	st.Ranked = append([]string(nil), st.Ranked...)
	st.Log = append([]Offer(nil), st.Log...)
	return st
}
