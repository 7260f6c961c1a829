package delivery

import (
	"context"
	"strconv"
	"time"

	"github.com/tawsil/tawsil/backend/internal/core"
	"github.com/tawsil/tawsil/backend/internal/mongostore"
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

// fire steps the order of a due timer; a stale timer finds nothing to do.
func (s *Service) fire(ctx context.Context, t mongostore.Timer) error {
	_, _, err := s.run(ctx, t.OrderID, core.TimerDue{Timer: t}, false)
	return err
}

func (s *Service) cancelTimer(ctx context.Context, id string) {
	if err := s.d.Store.CancelTimer(ctx, id); err != nil {
		s.d.Log.Warn("cancel timer", "timer", id, "err", err) // it finds nothing to do when it fires
	}
}
