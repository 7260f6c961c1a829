package delivery

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/tawsil/tawsil/backend/internal/core"
	"github.com/tawsil/tawsil/backend/internal/mongostore"
	"github.com/tawsil/tawsil/backend/internal/order"
	"github.com/tawsil/tawsil/shared/wire"
)

// Timer kinds.
const (
	timerOffer   = "offer"   // an offer's deadline
	timerContact = "contact" // a contact_customer reply window's end
	timerPin     = "pin"     // the customer's time to confirm a drop-off pin
)

// timerLease is how long a claimed timer may run before another replica
// takes it over (its claimer is presumed dead).
const timerLease = time.Minute

// timerLoop fires due timers until Close.
func (s *Service) timerLoop() {
	defer s.bg.Done()
	t := time.NewTicker(s.cfg.TimerPoll)
	defer t.Stop()
	purge := time.Now()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			if _, err := s.FireDue(ctx); err != nil {
				s.d.Log.Warn("timers", "err", err)
			}
			if time.Since(purge) > time.Hour {
				purge = time.Now()
				if err := s.d.Store.PurgeClaims(ctx, s.now().Add(-48*time.Hour)); err != nil {
					s.d.Log.Warn("purge claims", "err", err)
				}
			}
			cancel()
		}
	}
}

// FireDue fires the timers due by the service's clock: each one on exactly
// one replica (a claim in the store), then deletes it. It returns how many
// this process fired.
func (s *Service) FireDue(ctx context.Context) (int, error) {
	now := s.now().UTC()
	due, err := s.d.Store.DueTimers(ctx, now, 100)
	if err != nil {
		return 0, err
	}
	fired := 0
	for _, t := range due {
		won, err := s.d.Store.Claim(ctx, "timer/"+t.ID+"@"+strconv.FormatInt(t.Due.UnixMilli(), 10), now, timerLease)
		if err != nil {
			return fired, err
		}
		if !won {
			continue
		}
		fired++
		if err := s.fire(ctx, t); err != nil {
			s.d.Log.Warn("timer", "timer", t.ID, "err", err)
		}
		if err := s.d.Store.CancelTimer(ctx, t.ID); err != nil {
			return fired, err
		}
	}
	return fired, nil
}

func (s *Service) fire(ctx context.Context, t mongostore.Timer) error {
	switch t.Kind {
	case timerOffer:
		return s.expireOffer(ctx, t.OrderID, t.Courier, t.Ref)
	case timerContact:
		return s.applyThen(ctx, t.OrderID, t.Ref, core.NoReply, "no reply within the window")
	case timerPin:
		return s.pinOverdue(ctx, t.OrderID)
	}
	return fmt.Errorf("unknown timer kind %q", t.Kind)
}

func offerTimerID(orderID string, n int, courier string) string {
	return "offer/" + orderID + "/" + strconv.Itoa(n) + "/" + courier
}

func contactTimerID(orderID string, id int) string {
	return "contact/" + orderID + "/" + strconv.Itoa(id)
}

func (s *Service) cancelTimer(ctx context.Context, id string) {
	if err := s.d.Store.CancelTimer(ctx, id); err != nil {
		s.d.Log.Warn("cancel timer", "timer", id, "err", err) // it finds nothing to do when it fires
	}
}

// cancelOfferTimer cancels the timer of an order's current offer.
func (s *Service) cancelOfferTimer(ctx context.Context, o *mongostore.StoredOrder) {
	if o.Round == nil || len(o.Round.Log) == 0 {
		return
	}
	last := o.Round.Log[len(o.Round.Log)-1]
	s.cancelTimer(ctx, offerTimerID(o.ID, len(o.Round.Log), last.CourierID))
}

// expireOffer ends the n-th offer of an order's round at its deadline and
// offers the next courier. A stale timer (the offer was answered, the order
// moved on) finds nothing to do.
func (s *Service) expireOffer(ctx context.Context, orderID, courier string, n int) error {
	o, err := s.load(ctx, orderID, true)
	if err != nil {
		return err
	}
	if o.Status != order.StatusOffered || o.OfferedTo != courier || o.Round == nil || len(o.Round.Log) != n {
		return nil
	}
	_, _, err = s.change(ctx, orderID, order.Action{Kind: order.ActExpire, At: s.now().UTC(), Reason: "offer timeout"}, systemActor,
		func(next *mongostore.StoredOrder) error {
			if next.Round == nil || len(next.Round.Log) != n {
				return fmt.Errorf("%w: offer %d is not current", order.ErrInvalidTransition, n)
			}
			return nil
		})
	if err != nil {
		return nil // accepted or changed meanwhile
	}
	s.publish(courier, wire.Task{Type: wire.TaskOfferExpired, OrderID: orderID}, false)
	return s.offerNext(ctx, orderID, nil)
}
