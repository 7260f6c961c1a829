package delivery

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tawsil/tawsil/backend/internal/core"
	"github.com/tawsil/tawsil/backend/internal/failure"
	"github.com/tawsil/tawsil/backend/internal/geo"
	"github.com/tawsil/tawsil/backend/internal/mongostore"
	"github.com/tawsil/tawsil/backend/internal/order"
	"github.com/tawsil/tawsil/shared/wire"
)

// FailRequest is a courier's report of a failed delivery attempt.
type FailRequest struct {
	Reason       string
	Note         string
	PhotoRef     string
	CallAttempts int
}

// FailResult says what happened: the attempt, the decision, the new route.
type FailResult struct {
	Attempt struct {
		N        int    `json:"n"`
		Reason   string `json:"reason"`
		Verified bool   `json:"verified"`
		Why      string `json:"verification"`
	} `json:"attempt"`
	Decision struct {
		Action  string   `json:"action"`
		Rule    string   `json:"rule"`
		Explain []string `json:"explain,omitempty"`
	} `json:"decision"`
	Status string `json:"status"`
	Route  struct {
		Version uint64      `json:"version"`
		Stops   []RouteStop `json:"stops"`
	} `json:"route"`
}

// Fail records a failed attempt, checks it against GPS, applies the rules
// and re-routes the courier.
func (s *Service) Fail(ctx context.Context, courier order.Actor, id string, req FailRequest) (FailResult, error) {
	var res FailResult
	reason, err := failure.ParseReason(req.Reason)
	if err != nil {
		return res, fmt.Errorf("%w: %v", ErrInput, err)
	}
	if utf8.RuneCountInString(req.Note) > 500 || len(req.PhotoRef) > 200 || req.CallAttempts < 0 || req.CallAttempts > 50 {
		return res, fmt.Errorf("%w: note ≤ 500 characters, photo_ref ≤ 200, call_attempts 0..50", ErrInput)
	}
	cur, err := s.load(ctx, id, true)
	if err != nil {
		return res, err
	}
	if cur.CourierID != courier.ID {
		return res, order.ErrNotFound // not yours: as if it did not exist
	}
	now := s.now().UTC()
	win := s.cfg.Verify.Window
	ps, err := s.d.Store.Track(ctx, courier.ID, now.Add(-win), now.Add(time.Minute), 5000)
	if err != nil {
		return res, err
	}
	// Evidence only from fixes that passed the live plausibility checks and
	// arrived in time: late ones (out of order, or long in transit) skip the
	// speed check and could be forged "at the door" after the fact.
	fixes := make([]wire.Fix, 0, len(ps))
	for _, p := range ps {
		if p.Late {
			continue
		}
		fixes = append(fixes, wire.Fix{Epoch: p.Epoch, Seq: p.Seq, Time: p.T, Lat: p.Lat, Lng: p.Lng, Accuracy: p.AccuracyM, Speed: p.SpeedMPS, Heading: p.HeadingDeg, Battery: p.Battery})
	}
	v := failure.Verify(s.cfg.Verify, failure.Evidence{Reason: reason, At: now, DropLat: cur.Dropoff.Lat, DropLng: cur.Dropoff.Lng,
		Fixes: fixes, CallAttempts: req.CallAttempts})
	note := req.Note
	if req.PhotoRef != "" {
		note = strings.TrimSpace(note + " [photo " + req.PhotoRef + "]")
	}
	var where *order.Point
	if lc, ok := s.d.Index.Get(courier.ID); ok && lc.HasFix {
		where = &order.Point{Lat: lc.Fix.Lat, Lng: lc.Fix.Lng}
	}
	failed, _, err := s.change(ctx, id, order.Action{Kind: order.ActFail, At: now, Where: where, Reason: string(reason), Note: note, Verified: v.Verified}, courier, clearOps)
	if err != nil {
		return res, err
	}
	s.d.Density.Failed(failed.Dropoff.Lat, failed.Dropoff.Lng, now)
	n := len(failed.Attempts)
	res.Attempt.N, res.Attempt.Reason, res.Attempt.Verified, res.Attempt.Why = n, string(reason), v.Verified, v.Reason

	policy, _, err := s.d.Merchant(ctx, failed.MerchantID)
	if err != nil {
		return res, err
	}
	dec := s.d.Rules.Decide(failure.Situation{Reason: reason, Attempt: n, MinutesLeft: failed.PromiseBy.Sub(now).Minutes(),
		MerchantPolicy: policy, COD: failed.CODAmountMAD > 0, ParcelSize: string(failed.Size), Verified: v.Verified})
	res.Decision.Action, res.Decision.Rule, res.Decision.Explain = string(dec.Action), dec.Rule, dec.Explain
	final, err := s.execute(ctx, failed, dec, courier.ID)
	if err != nil {
		return res, err
	}
	res.Status = string(final.Status)
	res.Route.Version, res.Route.Stops = s.Route(courier.ID)
	return res, nil
}

var rulesActor = order.Actor{Role: order.RoleSystem, ID: "failure-rules"}

// execute carries out a rules decision on an order in failed_attempt: the
// decision's effect comes from the core (the simulator uses the same), the
// shell commits it, arms its timer and re-plans.
func (s *Service) execute(ctx context.Context, o *mongostore.StoredOrder, dec failure.Decision, courier string) (*mongostore.StoredOrder, error) {
	now := s.now().UTC()
	eff := core.AfterFailure(dec, core.Situation{Now: now, Dropoff: geo.Point{Lat: o.Dropoff.Lat, Lng: o.Dropoff.Lng},
		AllowRelay: o.Policy.AllowRelay, Relays: s.cfg.Relays, Departs: s.departsExcept(courier, o.ID)})
	why := fmt.Sprintf("rule %s: %s", eff.Rule, eff.Action)
	switch eff.Action {
	case failure.RetryLater, failure.ContactCustomer:
		// A contact window holds the parcel with the courier; the merchant
		// relays the customer's answer (customer-reply), or the rule's then
		// applies when the window closes. Its end is a timer in the store,
		// armed with the change that opens it (a stale timer finds nothing
		// to do).
		next, _, err := s.change(ctx, o.ID, order.Action{Kind: order.ActReattempt, At: now, Reason: why}, rulesActor,
			func(n *mongostore.StoredOrder) error {
				n.NotBefore, n.Contact = eff.NotBefore, nil
				if w := eff.Window; w != nil {
					c := mongostore.Contact{ID: n.Version, Courier: courier, Until: w.Until, Then: w.Then} // named by the version that opens it
					if err := s.d.Store.ArmTimer(ctx, mongostore.Timer{ID: contactTimerID(n.ID, c.ID), Kind: timerContact, OrderID: n.ID,
						Courier: courier, Ref: c.ID, Due: c.Until}); err != nil {
						return err
					}
					n.Contact = &c
				}
				return nil
			})
		if err != nil {
			return nil, err
		}
		if w := eff.Window; w != nil && s.webhooks != nil {
			s.webhooks.Enqueue(ctx, o.MerchantID, "order.contact_customer", map[string]any{"order_id": o.ID,
				"reason": o.Attempts[len(o.Attempts)-1].Reason, "reply_window_minutes": dec.Params.ReplyWindowMinutes,
				"reply_by": w.Until, "at": now})
		}
		s.replan(ctx, courier, why)
		return next, nil
	case failure.RelayPoint:
		relay := eff.Relay
		next, _, err := s.change(ctx, o.ID, order.Action{Kind: order.ActReattempt, At: now, Reason: why + " " + relay.ID}, rulesActor,
			func(n *mongostore.StoredOrder) error {
				n.RelayID = relay.ID
				n.Dropoff = order.Place{Lat: relay.Lat, Lng: relay.Lng, Address: "Relay point " + relay.Name}
				return nil
			})
		if err != nil {
			return nil, err
		}
		s.replan(ctx, courier, why)
		return next, nil
	case failure.ReturnToMerchant:
		next, _, err := s.change(ctx, o.ID, order.Action{Kind: order.ActReturn, At: now, Reason: why}, rulesActor, nil)
		if err != nil {
			return nil, err
		}
		s.replan(ctx, courier, why)
		return next, nil
	case failure.Reassign:
		// The parcel is on board: the next courier picks it up where this one is.
		handover := order.Place{Lat: o.Dropoff.Lat, Lng: o.Dropoff.Lng, Address: "hand-over from courier"}
		if lc, ok := s.d.Index.Get(courier); ok && lc.HasFix {
			handover = order.Place{Lat: lc.Fix.Lat, Lng: lc.Fix.Lng, Address: "hand-over from courier"}
		}
		next, _, err := s.change(ctx, o.ID, order.Action{Kind: order.ActReassign, At: now, Reason: why}, rulesActor,
			func(n *mongostore.StoredOrder) error {
				if n.OrigPickup == nil {
					p := n.Pickup
					n.OrigPickup = &p
				}
				n.Pickup = handover
				return nil
			})
		if err != nil {
			return nil, err
		}
		s.released(ctx, courier, o.ID, "handed to another courier")
		s.goDispatch(o.ID, map[string]struct{}{courier: {}})
		return next, nil
	case failure.Cancel:
		next, _, err := s.change(ctx, o.ID, order.Action{Kind: order.ActCancel, At: now, Reason: why}, rulesActor, nil)
		if err != nil {
			return nil, err
		}
		s.released(ctx, courier, "", "")
		return next, nil
	case failure.DispatcherReview:
		if err := s.flagForDispatchers(ctx, o.ID, "unverified failed attempt: "+dec.Rule); err != nil {
			return nil, err
		}
		s.replan(ctx, courier, "awaiting dispatcher review of "+o.ID)
		return s.load(ctx, o.ID, true)
	}
	return nil, fmt.Errorf("unknown rule action %q", dec.Action)
}

// Resolve lets a dispatcher decide an attempt the rules left to a human.
func (s *Service) Resolve(ctx context.Context, actor order.Actor, id, action string) (*mongostore.StoredOrder, error) {
	o, err := s.load(ctx, id, true)
	if err != nil {
		return nil, err
	}
	if o.Status != order.StatusFailedAttempt {
		return nil, fmt.Errorf("%w: order is %s, not failed_attempt", order.ErrInvalidTransition, o.Status)
	}
	a := failure.Action(action)
	switch a {
	case failure.RetryLater, failure.Reassign, failure.ReturnToMerchant, failure.Cancel, failure.RelayPoint:
	default:
		return nil, fmt.Errorf("%w: action must be retry_later, reassign, relay_point, return_to_merchant or cancel", ErrInput)
	}
	if a == failure.RelayPoint {
		// The rules fall back to a return when a relay is not possible; a
		// dispatcher who asks for one is told why not instead.
		if !o.Policy.AllowRelay {
			return nil, fmt.Errorf("%w: relay_point refused: the merchant's policy does not allow relay points", order.ErrInvalidTransition)
		}
		if _, _, err := failure.NearestRelay(s.cfg.Relays, o.Dropoff.Lat, o.Dropoff.Lng, s.now()); err != nil {
			return nil, fmt.Errorf("%w: relay_point refused: no open relay point near the drop-off", order.ErrInvalidTransition)
		}
	}
	s.d.Log.Info("dispatcher resolves", "order_id", id, "action", action, "dispatcher_id", actor.ID)
	next, err := s.execute(ctx, o, failure.Decision{Action: a, Rule: "dispatcher"}, o.CourierID)
	if err != nil {
		return nil, err
	}
	return next, nil
}

// DryRun shows which rule a situation hits and why.
func (s *Service) DryRun(sit failure.Situation) failure.Decision { return s.d.Rules.Decide(sit) }

// ReasonError reports whether err is an unknown failure reason.
func ReasonError(err error) bool { return errors.Is(err, failure.ErrUnknownReason) }

// departsExcept lists the planned departures from a courier's stops other
// than those of one order, in route order.
func (s *Service) departsExcept(courier, orderID string) []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.routes[courier]
	if r == nil {
		return nil
	}
	var out []time.Time
	for _, v := range r.Visits {
		if v.OrderID != orderID {
			out = append(out, v.Depart)
		}
	}
	return out
}

// applyThen closes the contact_customer window contact (an order version)
// of an order without a "reachable" reply, once: the window's end and a "not
// reachable" reply race through the same claimed change. What it does is the
// core's decision (core.CloseContact).
func (s *Service) applyThen(ctx context.Context, orderID string, contact int, how core.Closing, why string) error {
	o, err := s.load(ctx, orderID, true)
	if err != nil {
		return err
	}
	pc := o.Contact
	if pc == nil || pc.ID != contact || o.Status != order.StatusReattemptScheduled {
		return nil // answered, superseded, delivered, failed again or changed by a dispatcher
	}
	now := s.now().UTC()
	eff := core.CloseContact(core.Window{Until: pc.Until, Then: pc.Then}, how, now, s.departsExcept(pc.Courier, orderID))
	reason := "contact_customer then " + string(pc.Then.Then) + ": " + why
	mine := func(n *mongostore.StoredOrder) error {
		if n.Contact == nil || n.Contact.ID != contact {
			return fmt.Errorf("%w: the reply window has closed", order.ErrInvalidTransition)
		}
		n.Contact = nil
		return nil
	}
	switch eff.Action {
	case failure.ReturnToMerchant:
		if _, _, err := s.change(ctx, orderID, order.Action{Kind: order.ActReturn, At: now, Reason: reason}, rulesActor, mine); err != nil {
			return err
		}
	case failure.Cancel:
		if _, _, err := s.change(ctx, orderID, order.Action{Kind: order.ActCancel, At: now, Reason: reason}, rulesActor, mine); err != nil {
			return err
		}
		s.released(ctx, pc.Courier, "", "")
		return nil
	case failure.RetryLater:
		if _, err := s.update(ctx, orderID, "contact_closed", rulesActor, reason, func(n *mongostore.StoredOrder) error {
			if err := mine(n); err != nil {
				return err
			}
			n.NotBefore = eff.NotBefore
			return nil
		}); err != nil {
			return err
		}
		s.hub.Publish("order.contact_closed", map[string]any{"order_id": orderID, "then": "retry_later", "reason": why})
	default: // relay, reassign: a dispatcher decides with the parcel in hand
		if _, err := s.update(ctx, orderID, "needs_dispatcher", rulesActor, reason, func(n *mongostore.StoredOrder) error {
			if err := mine(n); err != nil {
				return err
			}
			n.Flags.NeedsDispatcher = true
			return nil
		}); err != nil {
			return err
		}
		s.hub.Publish("order.needs_dispatcher", map[string]any{"order_id": orderID, "reason": reason})
		s.observe("order.needs_dispatcher", "needs_dispatcher")
	}
	s.replan(ctx, pc.Courier, reason)
	return nil
}

// CustomerReply records the customer's answer relayed by the merchant during
// a contact_customer window: reachable → retry as soon as the route allows;
// not reachable → the rule's "then" now. The window is in the store, so a
// reply is accepted after a restart, on any replica.
func (s *Service) CustomerReply(ctx context.Context, orderID string, reachable bool) (*mongostore.StoredOrder, error) {
	o, err := s.load(ctx, orderID, true)
	if err != nil {
		return nil, err
	}
	pc := o.Contact
	if pc == nil || o.Status != order.StatusReattemptScheduled {
		return nil, fmt.Errorf("%w: no customer contact is pending for this order", order.ErrInvalidTransition)
	}
	if !reachable {
		if err := s.applyThen(ctx, orderID, pc.ID, core.NotReachable, "customer not reachable"); err != nil {
			return nil, err
		}
		s.cancelTimer(ctx, contactTimerID(orderID, pc.ID))
		return s.load(ctx, orderID, true)
	}
	next, err := s.update(ctx, orderID, "contact_reply", order.Actor{Role: order.RoleMerchant, ID: o.MerchantID}, "customer reachable",
		func(n *mongostore.StoredOrder) error {
			if n.Contact == nil || n.Contact.ID != pc.ID {
				return fmt.Errorf("%w: the reply window has closed", order.ErrInvalidTransition)
			}
			n.Contact = nil
			n.NotBefore = core.CloseContact(core.Window{Until: pc.Until, Then: pc.Then}, core.Reachable, s.now(), nil).NotBefore
			return nil
		})
	if err != nil {
		return nil, err
	}
	s.cancelTimer(ctx, contactTimerID(orderID, pc.ID))
	s.hub.Publish("order.contact_closed", map[string]any{"order_id": orderID, "then": "retry_now", "reason": "customer reachable"})
	s.replan(ctx, pc.Courier, "customer reachable: retry")
	return next, nil
}
