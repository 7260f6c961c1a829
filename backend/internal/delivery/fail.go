package delivery

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tawsil/tawsil/backend/internal/failure"
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
	fixes := make([]wire.Fix, len(ps))
	for i, p := range ps {
		fixes[i] = wire.Fix{Seq: p.Seq, Time: p.T, Lat: p.Lat, Lng: p.Lng, Accuracy: p.AccuracyM, Speed: p.SpeedMPS, Heading: p.HeadingDeg, Battery: p.Battery}
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
	failed, _, err := s.change(ctx, id, order.Action{Kind: order.ActFail, At: now, Where: where, Reason: string(reason), Note: note, Verified: v.Verified}, courier, nil)
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

// execute carries out a rules decision on an order in failed_attempt.
func (s *Service) execute(ctx context.Context, o *mongostore.StoredOrder, dec failure.Decision, courier string) (*mongostore.StoredOrder, error) {
	now := s.now().UTC()
	why := fmt.Sprintf("rule %s: %s", dec.Rule, dec.Action)
	switch dec.Action {
	case failure.RetryLater, failure.ContactCustomer:
		wait := time.Duration(dec.Params.RetryAfterMinutes) * time.Minute
		if dec.Action == failure.ContactCustomer {
			// Hold the parcel with the courier for the reply window; the
			// merchant relays the customer's answer (customer-reply), or the
			// rule's "then" applies when the window closes.
			wait = time.Duration(dec.Params.ReplyWindowMinutes) * time.Minute
			if s.webhooks != nil {
				s.webhooks.Enqueue(ctx, o.MerchantID, "order.contact_customer", map[string]any{"order_id": o.ID,
					"reason": o.Attempts[len(o.Attempts)-1].Reason, "reply_window_minutes": dec.Params.ReplyWindowMinutes,
					"reply_by": now.Add(wait), "at": now})
			}
			s.awaitReply(o.ID, courier, wait, dec.Params)
		}
		next, _, err := s.change(ctx, o.ID, order.Action{Kind: order.ActReattempt, At: now, Reason: why}, rulesActor, nil)
		if err != nil {
			return nil, err
		}
		s.mu.Lock()
		notBefore := time.Time{}
		if wait > 0 {
			notBefore = now.Add(wait)
		}
		if n := dec.Params.AfterNextStops; n > 0 && dec.Action == failure.RetryLater {
			// After the next n other stops: not before the courier leaves the n-th.
			if r := s.routes[courier]; r != nil {
				k := 0
				for _, v := range r.Visits {
					if v.OrderID == o.ID {
						continue
					}
					if k++; k == n {
						notBefore = maxTime(notBefore, v.Depart)
						break
					}
				}
				if k < n && len(r.Visits) > 0 { // fewer stops left: after all of them
					notBefore = maxTime(notBefore, r.Visits[len(r.Visits)-1].Depart)
				}
			}
		}
		if notBefore.IsZero() {
			delete(s.retryAt, o.ID)
		} else {
			s.retryAt[o.ID] = notBefore
		}
		s.mu.Unlock()
		s.replan(ctx, courier, why)
		return next, nil
	case failure.RelayPoint:
		relay, _, err := failure.NearestRelay(s.cfg.Relays, o.Dropoff.Lat, o.Dropoff.Lng, now)
		if err != nil || !o.Policy.AllowRelay {
			// No open relay point (or not allowed): bring it back instead.
			return s.execute(ctx, o, failure.Decision{Action: failure.ReturnToMerchant, Rule: dec.Rule + "/no-relay"}, courier)
		}
		next, _, err := s.change(ctx, o.ID, order.Action{Kind: order.ActReattempt, At: now, Reason: why + " " + relay.ID}, rulesActor,
			func(n *mongostore.StoredOrder) {
				n.RelayID = relay.ID
				n.Dropoff = order.Place{Lat: relay.Lat, Lng: relay.Lng, Address: "Relay point " + relay.Name}
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
			func(n *mongostore.StoredOrder) {
				if n.OrigPickup == nil {
					p := n.Pickup
					n.OrigPickup = &p
				}
				n.Pickup = handover
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
	next, err := s.execute(ctx, o, failure.Decision{Action: a, Rule: "dispatcher:" + actor.ID}, o.CourierID)
	if err != nil {
		return nil, err
	}
	return next, nil
}

// DryRun shows which rule a situation hits and why.
func (s *Service) DryRun(sit failure.Situation) failure.Decision { return s.d.Rules.Decide(sit) }

// ReasonError reports whether err is an unknown failure reason.
func ReasonError(err error) bool { return errors.Is(err, failure.ErrUnknownReason) }

// pendingContact is a contact_customer decision waiting for the reply.
type pendingContact struct {
	courier string
	then    failure.Params
	timer   *time.Timer
}

// awaitReply arms the reply window of a contact_customer decision.
func (s *Service) awaitReply(orderID, courier string, window time.Duration, p failure.Params) {
	pc := &pendingContact{courier: courier, then: p}
	s.mu.Lock()
	if old := s.contacts[orderID]; old != nil {
		old.timer.Stop()
	}
	s.contacts[orderID] = pc
	s.mu.Unlock()
	pc.timer = time.AfterFunc(window, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := s.applyThen(ctx, orderID, pc, "no reply within the window"); err != nil {
			s.d.Log.Warn("contact window", "order_id", orderID, "err", err)
		}
	})
}

// takeContact removes and returns the pending contact of an order, if it is pc (or any, when pc is nil).
func (s *Service) takeContact(orderID string, pc *pendingContact) *pendingContact {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.contacts[orderID]
	if cur == nil || (pc != nil && cur != pc) {
		return nil
	}
	delete(s.contacts, orderID)
	cur.timer.Stop()
	return cur
}

// applyThen carries out a contact_customer decision's "then" action.
func (s *Service) applyThen(ctx context.Context, orderID string, pc *pendingContact, why string) error {
	if s.takeContact(orderID, pc) == nil {
		return nil // answered or superseded meanwhile
	}
	o, err := s.load(ctx, orderID, true)
	if err != nil {
		return err
	}
	if o.Status != order.StatusReattemptScheduled {
		return nil // delivered, failed again or changed by a dispatcher
	}
	now := s.now().UTC()
	reason := "contact_customer then " + string(pc.then.Then) + ": " + why
	switch pc.then.Then {
	case failure.ReturnToMerchant:
		if _, _, err := s.change(ctx, orderID, order.Action{Kind: order.ActReturn, At: now, Reason: reason}, rulesActor, nil); err != nil {
			return err
		}
	case failure.Cancel:
		if _, _, err := s.change(ctx, orderID, order.Action{Kind: order.ActCancel, At: now, Reason: reason}, rulesActor, nil); err != nil {
			return err
		}
		s.released(ctx, pc.courier, "", "")
		return nil
	case failure.RetryLater, "":
		s.mu.Lock()
		if m := pc.then.RetryAfterMinutes; m > 0 {
			s.retryAt[orderID] = now.Add(time.Duration(m) * time.Minute)
		} else {
			delete(s.retryAt, orderID)
		}
		s.mu.Unlock()
		s.hub.Publish("order.contact_closed", map[string]any{"order_id": orderID, "then": "retry_later", "reason": why})
	default: // relay, reassign: a dispatcher decides with the parcel in hand
		if err := s.flagForDispatchers(ctx, orderID, reason); err != nil {
			return err
		}
	}
	s.replan(ctx, pc.courier, reason)
	return nil
}

// CustomerReply records the customer's answer relayed by the merchant during
// a contact_customer window: reachable → retry as soon as the route allows;
// not reachable → the rule's "then" now.
func (s *Service) CustomerReply(ctx context.Context, orderID string, reachable bool) (*mongostore.StoredOrder, error) {
	s.mu.Lock()
	pc := s.contacts[orderID]
	s.mu.Unlock()
	if pc == nil {
		return nil, fmt.Errorf("%w: no customer contact is pending for this order", order.ErrInvalidTransition)
	}
	if !reachable {
		if err := s.applyThen(ctx, orderID, pc, "customer not reachable"); err != nil {
			return nil, err
		}
		return s.load(ctx, orderID, true)
	}
	if s.takeContact(orderID, pc) == nil {
		return nil, fmt.Errorf("%w: the reply window has closed", order.ErrInvalidTransition)
	}
	s.mu.Lock()
	delete(s.retryAt, orderID)
	s.mu.Unlock()
	s.hub.Publish("order.contact_closed", map[string]any{"order_id": orderID, "then": "retry_now", "reason": "customer reachable"})
	s.replan(ctx, pc.courier, "customer reachable: retry")
	return s.load(ctx, orderID, true)
}
