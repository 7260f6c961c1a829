package delivery

import (
	"context"
	"errors"
	"fmt"
	"github.com/tawsil/tawsil/backend/internal/geo"
	"math"
	"strings"
	"time"

	"github.com/tawsil/tawsil/backend/internal/cash"
	"github.com/tawsil/tawsil/backend/internal/dispatch"
	"github.com/tawsil/tawsil/backend/internal/mongostore"
	"github.com/tawsil/tawsil/backend/internal/order"
	"github.com/tawsil/tawsil/shared/wire"
)

// Accept takes an offered order (before its offer's deadline).
func (s *Service) Accept(ctx context.Context, courier order.Actor, id string) (*mongostore.StoredOrder, error) {
	var prev *mongostore.StoredOrder
	o, _, err := s.change(ctx, id, order.Action{Kind: order.ActAccept, At: s.now().UTC(), CourierID: courier.ID}, courier,
		func(n *mongostore.StoredOrder) error {
			if n.Round != nil {
				if err := dispatch.RestoreOfferRound(*n.Round).Accept(courier.ID, s.now()); err != nil {
					return fmt.Errorf("%w: %v", order.ErrInvalidTransition, err)
				}
			}
			p := n.Clone()
			prev = &p
			n.Round = nil
			return nil
		})
	if err != nil {
		return nil, err
	}
	s.cancelOfferTimer(ctx, prev)
	s.assigned(ctx, o)
	return o, nil
}

// Decline refuses an offered order; the next candidate gets it.
func (s *Service) Decline(ctx context.Context, courier order.Actor, id, reason string) (*mongostore.StoredOrder, error) {
	var prev *mongostore.StoredOrder
	o, _, err := s.change(ctx, id, order.Action{Kind: order.ActDecline, At: s.now().UTC(), Reason: reason}, courier,
		func(n *mongostore.StoredOrder) error {
			p := n.Clone()
			prev = &p
			if n.Round != nil {
				r := dispatch.RestoreOfferRound(*n.Round)
				if err := r.Decline(courier.ID, s.now()); err == nil {
					st := r.State()
					n.Round = &st
				}
			}
			return nil
		})
	if err != nil {
		return nil, err
	}
	s.cancelOfferTimer(ctx, prev)
	if o.Round != nil {
		s.bg.Add(1)
		go func() {
			defer s.bg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			if err := s.offerNext(ctx, id, nil); err != nil {
				s.d.Log.Warn("offer next", "order_id", id, "err", err)
			}
		}()
	}
	return o, nil
}

// Assign gives an order to a courier directly (overrides an offer).
func (s *Service) Assign(ctx context.Context, actor order.Actor, id, courierID string) (*mongostore.StoredOrder, error) {
	lc, ok := s.d.Index.Get(courierID)
	if !ok {
		return nil, fmt.Errorf("%w: no courier %s; couriers have their own ids (a courier user's courier_id, or the id in GET /v1/couriers), not user ids", ErrNoCourier, courierID)
	}
	if !lc.OnShift {
		return nil, fmt.Errorf("%w: %s is off shift", ErrNoCourier, courierID)
	}
	if lc.Capacity > 0 && lc.Load >= lc.Capacity {
		return nil, fmt.Errorf("%w: %s carries %d of %d orders", ErrNoCourier, courierID, lc.Load, lc.Capacity)
	}
	prev, err := s.load(ctx, id, true)
	if err != nil {
		return nil, err
	}
	if prev.PinPending() {
		return nil, fmt.Errorf("%w: the drop-off point is not confirmed yet (set it with POST /v1/orders/%s/pin)", ErrPinClosed, id)
	}
	o, _, err := s.change(ctx, id, order.Action{Kind: order.ActAssign, At: s.now().UTC(), CourierID: courierID}, actor,
		func(o *mongostore.StoredOrder) error {
			o.Flags.NeedsDispatcher = false
			o.Round = nil
			return nil
		})
	if err != nil {
		return nil, err
	}
	s.cancelOfferTimer(ctx, prev)
	if prev.OfferedTo != "" && prev.OfferedTo != courierID {
		s.publish(prev.OfferedTo, wire.Task{Type: wire.TaskCancellation, OrderID: id, Reason: "assigned to another courier"}, false)
	}
	s.assigned(ctx, o)
	return o, nil
}

// Unassign takes an order back from its courier before pick-up and dispatches it again.
func (s *Service) Unassign(ctx context.Context, actor order.Actor, id, reason string) (*mongostore.StoredOrder, error) {
	prev, err := s.load(ctx, id, true)
	if err != nil {
		return nil, err
	}
	o, _, err := s.change(ctx, id, order.Action{Kind: order.ActUnassign, At: s.now().UTC(), Reason: reason}, actor, nil)
	if err != nil {
		return nil, err
	}
	s.released(ctx, prev.CourierID, id, "unassigned by a dispatcher")
	s.goDispatch(id, map[string]struct{}{prev.CourierID: {}})
	return o, nil
}

// Cancel cancels an order (who may when is in the lifecycle table).
func (s *Service) Cancel(ctx context.Context, actor order.Actor, id, reason string) (*mongostore.StoredOrder, error) {
	prev, err := s.load(ctx, id, true)
	if err != nil {
		return nil, err
	}
	o, _, err := s.change(ctx, id, order.Action{Kind: order.ActCancel, At: s.now().UTC(), Reason: reason}, actor, clearOps)
	if err != nil {
		return nil, err
	}
	s.cancelOfferTimer(ctx, prev)
	if prev.Contact != nil {
		s.cancelTimer(ctx, contactTimerID(id, prev.Contact.ID))
	}
	if c := prev.CourierID; c != "" {
		s.released(ctx, c, id, "order cancelled")
	} else if c := prev.OfferedTo; c != "" {
		s.publish(c, wire.Task{Type: wire.TaskCancellation, OrderID: id, Reason: "order cancelled"}, false)
	}
	return o, nil
}

// Pickup records the parcel collected; the courier must be at the pick-up.
func (s *Service) Pickup(ctx context.Context, courier order.Actor, id string) (*mongostore.StoredOrder, error) {
	cur, err := s.load(ctx, id, false)
	if err != nil {
		return nil, err
	}
	where, err := s.near(courier.ID, cur.Pickup)
	if err != nil {
		return nil, err
	}
	o, _, err := s.change(ctx, id, order.Action{Kind: order.ActPickup, At: s.now().UTC(), Where: where}, courier, nil)
	if err != nil {
		return nil, err
	}
	s.replan(ctx, courier.ID, "picked up "+id)
	return o, nil
}

// Deliver hands the parcel over, with the customer's code when the policy
// asks for it, and the cash collected on delivery: paid by the customer,
// less the change given back, must be the amount due. The handover goes to
// the courier's cash ledger.
func (s *Service) Deliver(ctx context.Context, courier order.Actor, id, code, proofRef string, paid, change float64) (*mongostore.StoredOrder, error) {
	cur, err := s.load(ctx, id, false)
	if err != nil {
		return nil, err
	}
	if !cur.Policy.RequireHandoverCode && strings.TrimSpace(proofRef) == "" {
		return nil, fmt.Errorf("%w: proof_ref is required by this merchant's policy (a photo or signature reference)", ErrInput)
	}
	if len(proofRef) > 200 {
		return nil, fmt.Errorf("%w: proof_ref longer than 200 characters", ErrInput)
	}
	if math.IsNaN(paid) || math.IsNaN(change) || change < 0 || math.Abs(paid-change-cur.CODAmountMAD) > 0.005 {
		return nil, fmt.Errorf("%w: cash_collected_mad less change_given_mad must be the cash-on-delivery amount, %.2f MAD", ErrInput, cur.CODAmountMAD)
	}
	var handover *cash.Handover
	if cur.CODAmountMAD > 0 {
		h, err := s.handover(cur, courier.ID, paid, change)
		if err != nil {
			return nil, err
		}
		handover = &h
	}
	where, err := s.near(courier.ID, cur.Dropoff)
	if err != nil {
		return nil, err
	}
	attempt, n := "", 0
	if cur.Policy.RequireHandoverCode {
		if attempt, n, err = s.claimHandover(ctx, id, courier.ID); err != nil {
			return nil, err
		}
	}
	kind := order.ActDeliver
	if cur.RelayID != "" {
		kind = order.ActDeliverRelay
	}
	o, _, err := s.change(ctx, id, order.Action{Kind: kind, At: s.now().UTC(), Where: where, Code: code, CashMAD: paid - change, Note: proofNote(proofRef)}, courier, nil)
	if errors.Is(err, order.ErrHandoverCode) {
		return nil, s.handoverFailed(ctx, cur, courier, n)
	}
	if attempt != "" {
		s.dropHandover(ctx, attempt) // delivered, or refused for another reason: not a wrong code
	}
	if err != nil {
		return nil, err
	}
	if handover != nil && s.d.Cash != nil {
		handover.At = s.now().UTC()
		if where != nil {
			handover.Place = &cash.Point{Lat: where.Lat, Lng: where.Lng}
		}
		// The delivery stands; a ledger write that fails here is made good
		// by the ledger's reconciliation of delivered orders (same key).
		if err := s.d.Cash.Collect(ctx, *handover); err != nil {
			s.d.Log.Error("cash ledger: handover not recorded", "order_id", id, "courier_id", courier.ID, "err", err)
		}
	}
	s.released(ctx, courier.ID, "", "")
	return o, nil
}

// handover is the ledger record of a cash-on-delivery handover (checked
// before the delivery is committed).
func (s *Service) handover(o *mongostore.StoredOrder, courierID string, paid, change float64) (cash.Handover, error) {
	due, err1 := cash.FromMAD(o.CODAmountMAD)
	p, err2 := cash.FromMAD(paid)
	c, err3 := cash.FromMAD(change)
	if err := errors.Join(err1, err2, err3); err != nil {
		return cash.Handover{}, fmt.Errorf("%w: %v", ErrInput, err)
	}
	h := cash.Handover{CourierID: courierID, OrderID: o.ID, MerchantID: o.MerchantID, Due: due, Paid: p, Change: c, At: s.now().UTC()}
	if _, err := h.Entries(); err != nil {
		return cash.Handover{}, fmt.Errorf("%w: %v", ErrInput, err)
	}
	return h, nil
}

func proofNote(ref string) string {
	if ref = strings.TrimSpace(ref); ref != "" {
		return "proof " + ref
	}
	return ""
}

// Returned records a parcel back at the merchant.
func (s *Service) Returned(ctx context.Context, actor order.Actor, id string) (*mongostore.StoredOrder, error) {
	cur, err := s.load(ctx, id, false)
	if err != nil {
		return nil, err
	}
	var where *order.Point
	if actor.Role == order.RoleCourier {
		back := cur.Pickup
		if cur.OrigPickup != nil {
			back = *cur.OrigPickup
		}
		if where, err = s.near(actor.ID, back); err != nil {
			return nil, err
		}
	}
	o, _, err := s.change(ctx, id, order.Action{Kind: order.ActReturned, At: s.now().UTC(), Where: where}, actor, nil)
	if err != nil {
		return nil, err
	}
	s.released(ctx, cur.CourierID, "", "")
	return o, nil
}

// near checks the courier's live position against a place.
func (s *Service) near(courierID string, p order.Place) (*order.Point, error) {
	lc, ok := s.d.Index.Get(courierID)
	if !ok || !lc.HasFix || s.now().Sub(lc.LastSeen) > 10*time.Minute {
		return nil, ErrNoPosition
	}
	d := geo.DistanceLatLngM(lc.Fix.Lat, lc.Fix.Lng, p.Lat, p.Lng)
	slack := 0.0
	if lc.Fix.Accuracy > 0 {
		slack = min(lc.Fix.Accuracy, 100)
	}
	if d > s.cfg.ArriveRadiusM+slack {
		return nil, fmt.Errorf("%w: %.0f m away (at most %.0f m)", ErrTooFar, d, s.cfg.ArriveRadiusM)
	}
	return &order.Point{Lat: lc.Fix.Lat, Lng: lc.Fix.Lng}, nil
}

// clearOps drops an order's pending operational state (round, contact
// window, not-before) with a change that ends or restarts its delivery.
func clearOps(o *mongostore.StoredOrder) error {
	o.Round, o.Contact, o.NotBefore = nil, nil, time.Time{}
	return nil
}

// assigned tells the courier, updates its load and re-plans its route.
func (s *Service) assigned(ctx context.Context, o *mongostore.StoredOrder) {
	s.mu.Lock()
	s.rollDay()
	s.today[o.CourierID]++
	s.mu.Unlock()
	s.publish(o.CourierID, wire.Task{Type: wire.TaskAssignment, OrderID: o.ID, Order: taskOrder(o)}, false)
	s.syncLoad(o.CourierID)
	s.replan(ctx, o.CourierID, "assigned "+o.ID)
}

// released tells a courier an order left its hands (when why is given),
// updates its load and re-plans.
func (s *Service) released(ctx context.Context, courier, orderID, why string) {
	if courier == "" {
		return
	}
	if why != "" {
		s.publish(courier, wire.Task{Type: wire.TaskCancellation, OrderID: orderID, Reason: why}, false)
	}
	s.syncLoad(courier)
	s.replan(ctx, courier, why)
}
