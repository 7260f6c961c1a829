package delivery

import (
	"context"
	"time"

	"github.com/tawsil/tawsil/backend/internal/dispatch"
	"github.com/tawsil/tawsil/backend/internal/mongostore"
	"github.com/tawsil/tawsil/backend/internal/order"
)

// CourierGone takes a disabled or erased courier out of dispatch at once
// (the caller removes it from the live index first, so no new round ranks
// it and offerNext skips it in rounds ranked before): the offer it holds
// goes to the next candidate, orders assigned to it and not yet picked up
// go back to dispatch without it, and orders it carries are flagged for a
// dispatcher. by is the admin who disabled or erased the account.
func (s *Service) CourierGone(ctx context.Context, courierID string, by order.Actor) {
	var offered, assigned, carried []string
	s.mu.Lock()
	for id, o := range s.active {
		switch {
		case o.Status == order.StatusOffered && o.OfferedTo == courierID:
			offered = append(offered, id)
		case o.CourierID == courierID && o.Status == order.StatusAssigned:
			assigned = append(assigned, id)
		case o.CourierID == courierID:
			carried = append(carried, id)
		}
	}
	s.mu.Unlock()
	const why = "courier account disabled"
	for _, id := range offered {
		var prev *mongostore.StoredOrder
		_, _, err := s.change(ctx, id, order.Action{Kind: order.ActExpire, At: s.now().UTC(), Reason: why}, systemActor,
			func(n *mongostore.StoredOrder) error {
				p := n.Clone()
				prev = &p
				if n.Round != nil {
					r := dispatch.RestoreOfferRound(*n.Round)
					if err := r.Decline(courierID, s.now()); err == nil {
						st := r.State()
						n.Round = &st
					}
				}
				return nil
			})
		if err != nil {
			s.d.Log.Warn("offer of a disabled courier not withdrawn", "order_id", id, "err", err)
			continue
		}
		s.cancelOfferTimer(ctx, prev)
		s.bg.Add(1)
		go func() {
			defer s.bg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			if err := s.dispatchOrder(ctx, id, map[string]struct{}{courierID: {}}); err != nil {
				s.d.Log.Warn("offer next", "order_id", id, "err", err)
			}
		}()
	}
	for _, id := range assigned {
		if _, err := s.Unassign(ctx, by, id, why); err != nil {
			s.d.Log.Warn("order of a disabled courier not unassigned", "order_id", id, "err", err)
		}
	}
	for _, id := range carried {
		if err := s.flagForDispatchers(ctx, id, why+" while carrying the order"); err != nil {
			s.d.Log.Warn("order of a disabled courier not flagged", "order_id", id, "err", err)
		}
	}
}

// reachable reports whether a courier may get an offer: in the live index
// and on shift (a disabled or erased courier has left the index).
func (s *Service) reachable(courierID string) bool {
	lc, ok := s.d.Index.Get(courierID)
	return ok && lc.OnShift
}
