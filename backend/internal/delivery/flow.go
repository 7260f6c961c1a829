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
	"github.com/tawsil/tawsil/backend/internal/core"
	"github.com/tawsil/tawsil/backend/internal/mongostore"
	"github.com/tawsil/tawsil/backend/internal/order"
)

// Accept takes an offered order (before its offer's deadline).
func (s *Service) Accept(ctx context.Context, courier order.Actor, id string) (*mongostore.StoredOrder, error) {
	o, _, err := s.run(ctx, id, core.Answered{Courier: courier.ID, Accept: true}, true)
	return o, err
}

// Decline refuses an offered order; the next candidate gets it.
func (s *Service) Decline(ctx context.Context, courier order.Actor, id, reason string) (*mongostore.StoredOrder, error) {
	o, _, err := s.run(ctx, id, core.Answered{Courier: courier.ID, Reason: reason}, true)
	return o, err
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
	if _, err := s.load(ctx, id, true); err != nil {
		return nil, err
	}
	o, _, err := s.run(ctx, id, core.Assign{Actor: actor, Courier: courierID}, true)
	return o, err
}

// Unassign takes an order back from its courier before pick-up and dispatches it again.
func (s *Service) Unassign(ctx context.Context, actor order.Actor, id, reason string) (*mongostore.StoredOrder, error) {
	if _, err := s.load(ctx, id, true); err != nil {
		return nil, err
	}
	o, _, err := s.run(ctx, id, core.Unassign{Actor: actor, Reason: reason}, true)
	return o, err
}

// Cancel cancels an order (who may when is in the lifecycle table).
func (s *Service) Cancel(ctx context.Context, actor order.Actor, id, reason string) (*mongostore.StoredOrder, error) {
	if _, err := s.load(ctx, id, true); err != nil {
		return nil, err
	}
	o, _, err := s.run(ctx, id, core.Cancel{Actor: actor, Reason: reason}, true)
	return o, err
}

// Pickup records the parcel collected; the courier must be at the pick-up.
func (s *Service) Pickup(ctx context.Context, courier order.Actor, id string) (*mongostore.StoredOrder, error) {
	where, err := s.nearOrder(ctx, id, courier.ID, func(o *mongostore.StoredOrder) order.Place { return o.Pickup })
	if err != nil {
		return nil, err
	}
	o, _, err := s.run(ctx, id, core.PickedUp{Courier: courier.ID, Where: where}, true)
	return o, err
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
	where, err := s.nearOrder(ctx, id, courier.ID, func(o *mongostore.StoredOrder) order.Place { return o.Dropoff })
	if err != nil {
		return nil, err
	}
	attempt, n := "", 0
	if cur.Policy.RequireHandoverCode {
		if attempt, n, err = s.claimHandover(ctx, id, courier.ID); err != nil {
			return nil, err
		}
	}
	o, _, err := s.run(ctx, id, core.Delivered{Courier: courier.ID, Where: where, Code: code, CashMAD: paid - change, Note: proofNote(proofRef)}, true)
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
	if _, err := s.load(ctx, id, false); err != nil {
		return nil, err
	}
	var where *order.Point
	if actor.Role == order.RoleCourier {
		back := func(o *mongostore.StoredOrder) order.Place {
			if o.OrigPickup != nil {
				return *o.OrigPickup
			}
			return o.Pickup
		}
		var err error
		if where, err = s.nearOrder(ctx, id, actor.ID, back); err != nil {
			return nil, err
		}
	}
	o, _, err := s.run(ctx, id, core.ReturnedBack{Actor: actor, Where: where}, true)
	return o, err
}

// nearOrder checks the courier's live position against a place of an order
// (place picks it): on the cached copy, and when the courier is not there,
// on the store's (another replica may have moved the place since: a
// hand-over to another courier, a relay point).
func (s *Service) nearOrder(ctx context.Context, id, courierID string, place func(*mongostore.StoredOrder) order.Place) (*order.Point, error) {
	cur, cached, err := s.lookup(ctx, id, false)
	if err != nil {
		return nil, err
	}
	where, err := s.near(courierID, place(cur))
	if errors.Is(err, ErrTooFar) && cached {
		if cur, err = s.load(ctx, id, true); err != nil {
			return nil, err
		}
		where, err = s.near(courierID, place(cur))
	}
	return where, err
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
