package delivery

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tawsil/tawsil/backend/internal/core"
	"github.com/tawsil/tawsil/backend/internal/geo"
	"github.com/tawsil/tawsil/backend/internal/mongostore"
	"github.com/tawsil/tawsil/backend/internal/order"
)

// run is the shell around the core: it loads an order (from the active
// cache or the store), gathers what the event needs from the world
// (candidates, planned departures, the merchant's policy), steps the core,
// and carries out the effects: the timers first, then the claim of the new
// version (mongostore.Commit inserts the event under the unique (order,
// version) index: exactly one writer wins a version, on every replica, on
// MongoDB and FerretDB alike), then the rest; the order's follow-up events
// after that. On a lost claim it reloads from the store and steps again
// (the event may still apply to the newer version); after maxTries losses
// it is order.ErrConflict. No in-process lock is needed. A step decided on
// the cached copy that the core refuses (refused) or that changes nothing
// is decided once more on the store's copy: another replica may have moved
// the order on (assigned it, picked it up, made the offer whose deadline
// this is) since this replica's cache last followed the store.
//
// background runs a follow-up dispatch in the background (the caller is a
// request that should not wait for the next offer); otherwise every
// follow-up runs before run returns.
func (s *Service) run(ctx context.Context, id string, ev core.Event, background bool) (*mongostore.StoredOrder, core.Result, error) {
	fresh := false
	for try := 0; ; try++ {
		cur, cached, err := s.lookup(ctx, id, fresh)
		if err != nil {
			return nil, core.Result{}, err
		}
		fresh = true
		in, err := s.input(ctx, cur, ev)
		if err != nil {
			return nil, core.Result{}, err
		}
		res, err := s.core.Step(*cur, ev, in)
		if cached && (refused(err) || err == nil && !res.Changed()) {
			// Decided on the cached copy, which may be behind another
			// replica's write: decided again on the store's.
			continue
		}
		if err != nil {
			return nil, res, err
		}
		if !res.Changed() {
			return cur, res, nil
		}
		next := res.State
		err = s.claim(ctx, next, res.Effects)
		if errors.Is(err, order.ErrConflict) && try < maxTries-1 {
			continue
		}
		if err != nil {
			return nil, res, err
		}
		s.remember(&next)
		s.carry(ctx, &next, res.Effects, background)
		return &next, res, nil
	}
}

// maxTries bounds the attempts of one step against concurrent writers.
const maxTries = 4

// refused reports whether Step refused an event for the state of the
// order it was given (not its own input): a transition not possible from
// that status, an order not (or no longer, or not yet) the courier's, a
// pin closed. On a cached copy this may only mean the copy is old.
func refused(err error) bool {
	return errors.Is(err, order.ErrInvalidTransition) || errors.Is(err, order.ErrForbidden) ||
		errors.Is(err, order.ErrNotFound) || errors.Is(err, core.ErrPinClosed)
}

// claim arms the step's timers, then commits its event; the timers go
// again when the claim is lost (a timer left behind finds nothing to do).
func (s *Service) claim(ctx context.Context, next core.State, effects []core.Effect) error {
	ev := effects[0].(core.Append).Event
	var armed []string
	for _, e := range effects {
		if a, ok := e.(core.ArmTimer); ok {
			if err := s.d.Store.ArmTimer(ctx, a.Timer); err != nil {
				s.cancelTimers(ctx, armed)
				return fmt.Errorf("order %s %s: %w", next.ID, ev.Action, err)
			}
			armed = append(armed, a.Timer.ID)
		}
	}
	var err error
	if ev.Action == "book" {
		err = s.d.Store.InsertOrder(ctx, next)
	}
	if err == nil {
		err = s.d.Store.Commit(ctx, next, ev)
	}
	if err != nil {
		s.cancelTimers(ctx, armed)
		if errors.Is(err, order.ErrConflict) {
			return err
		}
		return fmt.Errorf("order %s %s: %w", next.ID, ev.Action, err)
	}
	return nil
}

func (s *Service) cancelTimers(ctx context.Context, ids []string) {
	for _, id := range ids {
		s.cancelTimer(context.WithoutCancel(ctx), id)
	}
}

// input gathers what the core needs of the world for ev on cur.
func (s *Service) input(ctx context.Context, cur *mongostore.StoredOrder, ev core.Event) (core.Input, error) {
	in := core.Input{Now: s.now().UTC()}
	need := s.core.Needs(*cur, ev)
	if need.Reachable {
		in.Reachable = s.reachable
	}
	if need.Policy {
		policy, _, err := s.d.Merchant(ctx, cur.MerchantID)
		if err != nil {
			return in, err
		}
		in.Policy = policy
	}
	if need.Departs != "" {
		in.Departs = s.departsExcept(need.Departs, cur.ID)
	}
	if need.Position != "" {
		in.Courier = s.position(need.Position)
	}
	return in, nil
}

// position is a courier's last live position, nil when unknown.
func (s *Service) position(courier string) *geo.Point {
	if lc, ok := s.d.Index.Get(courier); ok && lc.HasFix {
		return &geo.Point{Lat: lc.Fix.Lat, Lng: lc.Fix.Lng}
	}
	return nil
}

// carry executes a committed step's effects (its timers are armed already).
func (s *Service) carry(ctx context.Context, o *mongostore.StoredOrder, effects []core.Effect, background bool) {
	bg := context.WithoutCancel(ctx)
	var follow []core.Event
	for _, e := range effects {
		switch e := e.(type) {
		case core.Append:
			s.logEvent(o, e.Event)
		case core.Publish:
			s.publish(e.Courier, e.Task, false)
		case core.ArmTimer: // armed before the claim
		case core.CancelTimer:
			s.cancelTimer(bg, e.ID)
		case core.Webhook:
			if s.webhooks != nil {
				s.webhooks.Enqueue(bg, e.Merchant, e.Name, e.Payload)
			}
		case core.Notify:
			s.hub.Publish(e.Name, e.Data)
		case core.FlagDispatcher:
			s.hub.Publish("order.needs_dispatcher", map[string]any{"order_id": o.ID, "reason": e.Reason})
			s.d.Log.Info("order needs a dispatcher", "order_id", o.ID, "reason", e.Reason)
			s.observe("order.needs_dispatcher", "needs_dispatcher")
		case core.Assigned:
			s.mu.Lock()
			s.stepCourier(e.Courier, core.OrderAssigned{Order: o.ID}, s.now())
			s.mu.Unlock()
			s.syncLoad(e.Courier)
		case core.Released:
			s.syncLoad(e.Courier)
		case core.Replan:
			s.replan(bg, e.Courier, e.Why)
		case core.FollowUp:
			follow = append(follow, e.Event)
		}
	}
	for _, ev := range follow {
		if _, ok := ev.(core.Dispatch); ok && background {
			s.goRun(o.ID, ev)
			continue
		}
		if _, _, err := s.run(bg, o.ID, ev, background); err != nil {
			s.d.Log.Warn("order follow-up", "order_id", o.ID, "event", fmt.Sprintf("%T", ev), "err", err)
		}
	}
}

// goRun steps an order's event in the background (Close waits for it).
func (s *Service) goRun(id string, ev core.Event) {
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if _, _, err := s.run(ctx, id, ev, false); err != nil {
			s.d.Log.Warn("order event", "order_id", id, "event", fmt.Sprintf("%T", ev), "err", err)
		}
	}()
}

// logEvent writes one line per business event: ids and the transition, no
// personal data and no free text (notes and reasons may carry anything).
// Operational marks (From == To) are in the event log only.
func (s *Service) logEvent(o *mongostore.StoredOrder, ev order.Event) {
	if ev.From == ev.To && ev.Action != "book" {
		return
	}
	name := core.EventName(ev)
	courier := o.CourierID
	if ev.Action == order.ActOffer || (courier == "" && o.Status == order.StatusOffered) {
		courier = o.OfferedTo
	}
	s.d.Log.Info("order event", "event", name, "order_id", o.ID, "action", ev.Action, "from", ev.From, "to", ev.To,
		"actor_role", ev.Actor.Role, "courier_id", courier, "version", ev.Version)
	s.observe(name, ev.Action)
}

// load returns the order from the active cache, or the store when fresh
// is asked or the order is not active.
func (s *Service) load(ctx context.Context, id string, fresh bool) (*mongostore.StoredOrder, error) {
	o, _, err := s.lookup(ctx, id, fresh)
	return o, err
}

// lookup is load, and whether the order came from the cache (which follows
// other replicas' writes only every few seconds, in refresh).
func (s *Service) lookup(ctx context.Context, id string, fresh bool) (*mongostore.StoredOrder, bool, error) {
	if !fresh {
		s.mu.Lock()
		o, ok := s.active[id]
		s.mu.Unlock()
		if ok {
			return o, true, nil
		}
	}
	o, err := s.d.Store.Order(ctx, id)
	if err != nil {
		return nil, false, err
	}
	s.remember(&o)
	return &o, false, nil
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
