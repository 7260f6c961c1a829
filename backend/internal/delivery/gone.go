package delivery

import (
	"context"
	"errors"

	"github.com/tawsil/tawsil/backend/internal/core"
	"github.com/tawsil/tawsil/backend/internal/order"
)

// CourierGone takes a disabled or erased courier out of dispatch at once
// (the caller removes it from the live index first, so no new round ranks
// it and offerNext skips it in rounds ranked before): the offer it holds
// goes to the next candidate, orders assigned to it and not yet picked up
// go back to dispatch without it, and orders it carries are flagged for a
// dispatcher. by is the admin who disabled or erased the account.
func (s *Service) CourierGone(ctx context.Context, courierID string, by order.Actor) {
	ids, err := s.courierOrders(ctx, courierID)
	if err != nil {
		s.d.Log.Warn("orders of a disabled courier not found", "courier_id", courierID, "err", err)
		return
	}
	for _, id := range ids {
		if _, _, err := s.run(ctx, id, core.CourierGone{Courier: courierID, By: by, Why: "courier account disabled"}, true); err != nil {
			s.d.Log.Warn("order of a disabled courier not handed on", "order_id", id, "err", err)
		}
	}
}

// courierOrders lists the active orders offered or assigned to a courier,
// from the store, not this replica's cache: another replica may have made
// the offer or the assignment a moment ago.
func (s *Service) courierOrders(ctx context.Context, courierID string) ([]string, error) {
	orders, err := s.d.Store.ActiveOrders(ctx)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, o := range orders {
		if o.OfferedTo == courierID || o.CourierID == courierID {
			s.remember(&o)
			ids = append(ids, o.ID)
		}
	}
	return ids, nil
}

// reachable reports whether a courier may get an offer: in the live index
// and on shift (a disabled or erased courier has left the index).
func (s *Service) reachable(courierID string) bool {
	lc, ok := s.d.Index.Get(courierID)
	return ok && lc.OnShift
}

// ShiftEnded hands on what a courier who ended its shift was not carrying
// yet (the caller has marked it off shift in the live index first, so no
// new offer goes to it): its open offer goes to the next candidate, orders
// assigned to it and not picked up are unassigned ("shift ended") and
// dispatched again; parcels on board stay with it.
func (s *Service) ShiftEnded(ctx context.Context, courierID string) error {
	s.mu.Lock()
	s.stepCourier(courierID, core.ShiftEnded{Courier: courierID}, s.now()) // its idle time no longer counts from that shift
	s.mu.Unlock()
	ids, err := s.courierOrders(ctx, courierID)
	if err != nil {
		return err
	}
	var errs []error
	for _, id := range ids {
		if _, _, err := s.run(ctx, id, core.ShiftEnded{Courier: courierID}, true); err != nil {
			s.d.Log.Warn("order of a courier off shift not handed on", "order_id", id, "err", err)
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
