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
	note := req.Note
	if req.PhotoRef != "" {
		note = strings.TrimSpace(note + " [photo " + req.PhotoRef + "]")
	}
	// The core verifies, records the attempt and decides it with the rules;
	// the decision is its follow-up, carried out before run returns.
	failed, step, err := s.run(ctx, id, core.FailureReport{Courier: courier.ID, Where: s.position(courier.ID), Reason: reason, Note: note,
		Evidence: failure.Evidence{Fixes: fixes, CallAttempts: req.CallAttempts}}, true)
	if err != nil {
		return res, err
	}
	s.d.Density.Failed(failed.Dropoff.Lat, failed.Dropoff.Lng, now)
	v, dec := step.Verification, step.Decision
	res.Attempt.N, res.Attempt.Reason, res.Attempt.Verified, res.Attempt.Why = len(failed.Attempts), string(reason), v.Verified, v.Reason
	res.Decision.Action, res.Decision.Rule, res.Decision.Explain = string(dec.Action), dec.Rule, dec.Explain
	final, err := s.load(ctx, id, false)
	if err != nil {
		return res, err
	}
	res.Status = string(final.Status)
	res.Route.Version, res.Route.Stops = s.Route(courier.ID)
	return res, nil
}

// Resolve lets a dispatcher decide an attempt the rules left to a human.
func (s *Service) Resolve(ctx context.Context, actor order.Actor, id, action string) (*mongostore.StoredOrder, error) {
	if _, err := s.load(ctx, id, true); err != nil {
		return nil, err
	}
	s.d.Log.Info("dispatcher resolves", "order_id", id, "action", action, "dispatcher_id", actor.ID)
	o, _, err := s.run(ctx, id, core.Resolve{Actor: actor, Action: failure.Action(action)}, true)
	if errors.Is(err, order.ErrInvalidAction) {
		return nil, fmt.Errorf("%w: %v", ErrInput, err)
	}
	return o, err
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
	return core.DepartsExcept(r.Visits, orderID)
}

// CustomerReply records the customer's answer relayed by the merchant during
// a contact_customer window: reachable → retry as soon as the route allows;
// not reachable → the rule's "then" now. The window is in the store, so a
// reply is accepted after a restart, on any replica.
func (s *Service) CustomerReply(ctx context.Context, orderID string, reachable bool) (*mongostore.StoredOrder, error) {
	if _, err := s.load(ctx, orderID, true); err != nil {
		return nil, err
	}
	o, _, err := s.run(ctx, orderID, core.CustomerReply{Reachable: reachable}, true)
	return o, err
}
