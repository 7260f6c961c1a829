package delivery

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/tawsil/tawsil/backend/internal/cash"
	"github.com/tawsil/tawsil/backend/internal/core"
	"github.com/tawsil/tawsil/backend/internal/dispatch"
	"github.com/tawsil/tawsil/backend/internal/mongostore"
)

// epochLoop runs a dispatch epoch every DispatchEvery until Close (on
// whichever replica claims the epoch first). It looks twice per epoch so
// that no slot is missed, and claims each slot once.
func (s *Service) epochLoop() {
	defer s.bg.Done()
	t := time.NewTicker(max(s.cfg.DispatchEvery/2, 10*time.Millisecond))
	defer t.Stop()
	var last time.Time
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			slot := s.now().UTC().Truncate(s.cfg.DispatchEvery)
			if slot.Equal(last) {
				continue
			}
			last = slot
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			if _, err := s.RunEpoch(ctx); err != nil {
				s.d.Log.Warn("dispatch epoch", "err", err)
			}
			cancel()
		}
	}
}

// RunEpoch runs the dispatch epoch of the service clock's current slot
// (one every DispatchEvery) unless a replica has run it already (a claim
// in the store: exactly one replica runs each epoch). The orders waiting
// for a courier are read from the store (every replica's bookings), the
// couriers near their pick-ups from the live index; the core decides them
// all at once (core.Core.Decide: dispatch.Epoch, the same decision
// cmd/mdrp and the simulator run), and each decided order's core is
// stepped with its decision (core.Decided: the offer). An order nobody
// may take even late goes to dispatchers (core.Unplaced). It returns how
// many orders this process offered.
func (s *Service) RunEpoch(ctx context.Context) (int, error) {
	now := s.now().UTC()
	slot := now.Truncate(s.cfg.DispatchEvery)
	won, err := s.d.Store.Claim(ctx, "epoch@"+strconv.FormatInt(slot.UnixMilli(), 10), now, timerLease)
	if err != nil || !won {
		return 0, err
	}
	return s.epoch(ctx, now)
}

// epoch decides the waiting orders at now and steps the decisions.
func (s *Service) epoch(ctx context.Context, now time.Time) (int, error) {
	orders, err := s.d.Store.ActiveOrders(ctx)
	if err != nil {
		return 0, fmt.Errorf("epoch: %w", err)
	}
	waiting := orders[:0]
	for _, o := range orders {
		if core.Awaiting(o) {
			waiting = append(waiting, o)
		}
	}
	if len(waiting) == 0 {
		return 0, nil
	}
	cands := s.epochCandidates(waiting)
	decided, unplaced := s.core.Decide(waiting, cands, now, s.cashAccept(cands))
	offered := 0
	for _, d := range decided {
		res, err := s.stepDecision(ctx, d.Order, core.Decided{Courier: d.Courier})
		if err != nil {
			s.d.Log.Warn("epoch offer", "order_id", d.Order, "courier_id", d.Courier, "err", err)
			continue
		}
		if res {
			offered++
		}
	}
	for _, id := range unplaced {
		if _, err := s.stepDecision(ctx, id, core.Unplaced{}); err != nil {
			s.d.Log.Warn("epoch unplaced", "order_id", id, "err", err)
		}
	}
	return offered, nil
}

func (s *Service) stepDecision(ctx context.Context, id string, ev core.Event) (bool, error) {
	_, res, err := s.run(ctx, id, ev, false)
	return res.Changed(), err
}

// epochCandidates are the couriers near the waiting orders' pick-ups (the
// live index's nearest for each distinct pick-up), each once.
func (s *Service) epochCandidates(orders []mongostore.StoredOrder) []dispatch.Candidate {
	type place struct{ lat, lng float64 }
	seenAt := map[place]bool{}
	seen := map[string]bool{}
	var out []dispatch.Candidate
	for _, o := range orders {
		p := place{o.Pickup.Lat, o.Pickup.Lng}
		if seenAt[p] {
			continue
		}
		seenAt[p] = true
		for _, c := range s.candidates(p.lat, p.lng, nil) {
			if !seen[c.CourierID] {
				seen[c.CourierID] = true
				out = append(out, c)
			}
		}
	}
	return out
}

// cashAccept is the shell's last word on an epoch's choice: a courier whose
// cash in hand would pass its cap with a cash-on-delivery order does not
// get it.
func (s *Service) cashAccept(cands []dispatch.Candidate) core.Accept {
	if s.d.Cash == nil {
		return nil
	}
	return func(o *core.State, cand int, _ time.Time, _ dispatch.Ranked) bool {
		if o.CODAmountMAD <= 0 || math.IsNaN(o.CODAmountMAD) {
			return true
		}
		due, err := cash.FromMAD(o.CODAmountMAD)
		return err != nil || !s.d.Cash.Blocks(cands[cand].CourierID, due)
	}
}
