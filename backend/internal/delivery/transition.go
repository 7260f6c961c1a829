package delivery

import (
	"context"
	"errors"
	"fmt"

	"github.com/tawsil/tawsil/backend/internal/mongostore"
	"github.com/tawsil/tawsil/backend/internal/order"
)

// change applies one action to an order and commits it: load (from the
// active cache or the store), apply, claim the new version by inserting the
// event in the store (mongostore.Commit: exactly one writer wins a version,
// on every replica, on MongoDB and FerretDB alike), update caches, notify.
// mutate, when given, edits the store-only state (relay, hand-over point,
// round, contact, not-before) in the same version; it may refuse with an
// error. On a lost claim it reloads from the store and tries again (the
// action may still apply to the newer version); after maxTries losses it is
// order.ErrConflict. No in-process lock is needed.
func (s *Service) change(ctx context.Context, id string, a order.Action, actor order.Actor, mutate func(*mongostore.StoredOrder) error) (*mongostore.StoredOrder, order.Event, error) {
	return s.commit(ctx, id, false, func(cur *mongostore.StoredOrder) (*mongostore.StoredOrder, order.Event, error) {
		next := cur.Clone()
		ev, err := order.Apply(next.Order, a, actor)
		if err != nil {
			return nil, order.Event{}, err
		}
		if mutate != nil {
			if err := mutate(&next); err != nil {
				return nil, order.Event{}, err
			}
		}
		return &next, ev, nil
	})
}

// update records a change of an order's operational state that is not a
// lifecycle transition (flags, contact window, not-before): it takes a
// version and an event like a transition, with From == To. mutate returns
// ErrUnchanged when there is nothing to do.
func (s *Service) update(ctx context.Context, id string, kind order.Kind, actor order.Actor, reason string, mutate func(*mongostore.StoredOrder) error) (*mongostore.StoredOrder, error) {
	o, _, err := s.commit(ctx, id, true, func(cur *mongostore.StoredOrder) (*mongostore.StoredOrder, order.Event, error) {
		next := cur.Clone()
		if err := mutate(&next); err != nil {
			return nil, order.Event{}, err
		}
		next.Version++
		return &next, order.Event{OrderID: id, From: cur.Status, To: cur.Status, Action: kind, Actor: actor, At: s.now().UTC(),
			Reason: reason, Version: next.Version}, nil
	})
	return o, err
}

// maxTries bounds the attempts of one change against concurrent writers.
const maxTries = 4

// ErrUnchanged: an update found nothing to change.
var ErrUnchanged = errors.New("nothing to change")

func (s *Service) commit(ctx context.Context, id string, quiet bool, step func(*mongostore.StoredOrder) (*mongostore.StoredOrder, order.Event, error)) (*mongostore.StoredOrder, order.Event, error) {
	for try := 0; ; try++ {
		cur, err := s.load(ctx, id, try > 0)
		if err != nil {
			return nil, order.Event{}, err
		}
		next, ev, err := step(cur)
		if err != nil {
			return nil, order.Event{}, err
		}
		err = s.d.Store.Commit(ctx, *next, ev)
		if errors.Is(err, order.ErrConflict) && try < maxTries-1 {
			continue
		}
		if err != nil {
			return nil, order.Event{}, fmt.Errorf("order %s %s: %w", id, ev.Action, err)
		}
		s.remember(next)
		if !quiet {
			s.emit(next, ev)
		}
		return next, ev, nil
	}
}

// load returns the order from the active cache, or the store when fresh
// is asked or the order is not active.
func (s *Service) load(ctx context.Context, id string, fresh bool) (*mongostore.StoredOrder, error) {
	if !fresh {
		s.mu.Lock()
		o, ok := s.active[id]
		s.mu.Unlock()
		if ok {
			return o, nil
		}
	}
	o, err := s.d.Store.Order(ctx, id)
	if err != nil {
		return nil, err
	}
	s.remember(&o)
	return &o, nil
}

// remember updates the active cache and the density map with an order at
// least as new as the cached one.
func (s *Service) remember(o *mongostore.StoredOrder) {
	s.mu.Lock()
	prev, was := s.active[o.ID]
	if was && prev.Version > o.Version {
		s.mu.Unlock()
		return
	}
	if was && !prev.Flags.PredictedAt.IsZero() && o.Flags.PredictedAt.IsZero() {
		o.Flags.PredictedAt = prev.Flags.PredictedAt // the prediction is recomputed every few seconds, not stored
	}
	if o.Status.Terminal() {
		delete(s.active, o.ID)
	} else {
		s.active[o.ID] = o
	}
	s.mu.Unlock()
	switch {
	case was && o.Status.Terminal():
		s.d.Density.OrderClosed(o.ID)
	case !was && !o.Status.Terminal():
		s.d.Density.OrderOpened(o.ID, o.Pickup.Lat, o.Pickup.Lng, o.BookedAt)
	}
}

// emit tells dispatchers (event stream) and the merchant (webhook).
func (s *Service) emit(o *mongostore.StoredOrder, ev order.Event) {
	name := EventName(ev)
	courier := o.CourierID
	if ev.Action == order.ActOffer || (courier == "" && o.Status == order.StatusOffered) {
		courier = o.OfferedTo // the courier holding the offer
	}
	// One line per business event: ids and the transition, no personal data
	// and no free text (notes and reasons may carry anything).
	s.d.Log.Info("order event", "event", name, "order_id", o.ID, "action", ev.Action, "from", ev.From, "to", ev.To,
		"actor_role", ev.Actor.Role, "courier_id", courier, "version", ev.Version)
	s.observe(name, ev.Action)
	s.hub.Publish(name, map[string]any{"order_id": o.ID, "from": ev.From, "to": ev.To, "action": ev.Action,
		"actor": ev.Actor, "courier_id": courier, "at": ev.At, "reason": ev.Reason})
	if s.webhooks != nil {
		s.webhooks.Enqueue(context.Background(), o.MerchantID, name, webhookOrder(o, ev))
	}
}

// EventName is the stream and webhook name of a transition: one name per
// kind of happening (an expired offer or an unassign is not a booking).
func EventName(ev order.Event) string {
	switch ev.Action {
	case "book":
		return "order.booked"
	case order.ActOffer:
		return "order.offered"
	case order.ActDecline:
		return "order.offer_declined"
	case order.ActExpire:
		return "order.offer_expired"
	case order.ActAccept, order.ActAssign:
		return "order.assigned"
	case order.ActUnassign:
		return "order.unassigned"
	case order.ActReassign:
		return "order.reassigned"
	case order.ActDeliver, order.ActDeliverRelay:
		return "order.delivered"
	case order.ActReattempt:
		return "order.reattempt_scheduled"
	case order.ActReturn:
		return "order.returning"
	}
	return "order." + string(ev.To)
}

// webhookOrder is a merchant's view of a transition: the reason only as a
// failed attempt's code (other reasons are free text: a dispatcher's note,
// a rule or staff name), failed attempts without their notes.
func webhookOrder(o *mongostore.StoredOrder, ev order.Event) map[string]any {
	m := map[string]any{"order_id": o.ID, "status": o.Status, "previous_status": ev.From, "action": ev.Action,
		"at": ev.At, "promise_by": o.PromiseBy, "courier_id": o.CourierID}
	if ev.Action == order.ActFail && ev.Reason != "" {
		m["reason"] = ev.Reason // a failure reason code; other reasons are internal text (notes, rule names)
	}
	if n := len(o.Attempts); n > 0 {
		attempts := make([]order.Attempt, n)
		for i, a := range o.Attempts {
			a.Note = ""
			attempts[i] = a
		}
		m["attempts"] = attempts
	}
	return m
}

func (s *Service) observe(event string, action order.Kind) {
	if s.d.Observe != nil {
		s.d.Observe(event, action)
	}
}

// ActiveCounts reports the orders not yet finished by status, and how many
// of them wait for a dispatcher (gauges).
func (s *Service) ActiveCounts() (byStatus map[order.Status]int, needsDispatcher int) {
	byStatus = map[order.Status]int{}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range s.active {
		byStatus[o.Status]++
		if o.Flags.NeedsDispatcher {
			needsDispatcher++
		}
	}
	return byStatus, needsDispatcher
}
