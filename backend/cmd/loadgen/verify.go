package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"golang.org/x/sync/errgroup"
)

// courierCheck compares what one courier had acknowledged with what the
// backend stored.
type courierCheck struct {
	CourierID string
	Sent      int    // distinct acknowledged fixes
	Stored    int    // distinct stored fixes of this run
	Missing   int    // acknowledged, not stored
	Unknown   int    // stored, never acknowledged (a publish that failed after reaching the broker)
	MaxSent   uint64 // highest acknowledged seq
	MaxStored uint64 // highest stored seq of this run
}

func (c courierCheck) ok() bool { return c.Missing == 0 && c.MaxSent == c.MaxStored }

// compare checks stored fixes against the acknowledged sequence ranges of
// one courier; stored fixes outside [firstSeq, ∞) belong to other runs and
// are ignored.
func compare(s sent, stored []storedFix) courierCheck {
	c := courierCheck{CourierID: s.CourierID, MaxSent: s.MaxSeq}
	acked := make(map[uint64]bool, s.Acked)
	for _, r := range s.Ranges {
		for q := r[0]; q <= r[1]; q++ {
			acked[q] = true
		}
	}
	c.Sent = len(acked)
	seen := make(map[uint64]bool, len(stored))
	for _, f := range stored {
		if f.Seq < s.FirstSeq || seen[f.Seq] {
			continue
		}
		seen[f.Seq] = true
		c.MaxStored = max(c.MaxStored, f.Seq)
		if !acked[f.Seq] {
			c.Unknown++
		}
	}
	c.Stored = len(seen)
	for q := range acked {
		if !seen[q] {
			c.Missing++
		}
	}
	return c
}

// lossReport sums the per-courier checks.
type lossReport struct {
	Couriers    int
	Sent        int
	Stored      int
	Missing     int
	Unknown     int
	BadCouriers []courierCheck // those with a missing fix or a max-seq mismatch
}

func (r lossReport) zeroLoss() bool { return r.Missing == 0 && len(r.BadCouriers) == 0 }

func summarize(checks []courierCheck) lossReport {
	r := lossReport{Couriers: len(checks)}
	for _, c := range checks {
		r.Sent += c.Sent
		r.Stored += c.Stored
		r.Missing += c.Missing
		r.Unknown += c.Unknown
		if !c.ok() {
			r.BadCouriers = append(r.BadCouriers, c)
		}
	}
	return r
}

// verify reads every courier's stored track for the run's time window
// through the API and compares it with what was acknowledged.
func verify(ctx context.Context, a *api, token string, res fleetResult, from time.Time, log *slog.Logger) (lossReport, error) {
	to := time.Now().Add(time.Minute)
	checks := make([]courierCheck, len(res.PerCourier))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for i, s := range res.PerCourier {
		g.Go(func() error {
			stored, err := a.track(gctx, token, s.CourierID, from, to)
			if err != nil {
				return fmt.Errorf("verify %s: %w", s.CourierID, err)
			}
			checks[i] = compare(s, stored)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return lossReport{}, err
	}
	r := summarize(checks)
	for _, c := range r.BadCouriers {
		log.Warn("courier history incomplete", "courier_id", c.CourierID, "sent", c.Sent, "stored", c.Stored,
			"missing", c.Missing, "max_sent", c.MaxSent, "max_stored", c.MaxStored)
	}
	return r, nil
}

// waitStored polls the backend's tawsil_history_written_total until it grew
// by want fixes since base, or made no progress for stall. It returns the
// time the last of them was seen written.
func waitStored(ctx context.Context, a *api, base float64, want int, stall time.Duration) (time.Time, float64, error) {
	const name = "tawsil_history_written_total"
	last, lastChange := base, time.Now()
	for {
		m, err := a.metrics(ctx, name)
		if err != nil {
			return time.Time{}, last - base, err
		}
		now := time.Now()
		if v := m[name]; v != last {
			last, lastChange = v, now
		}
		if last-base >= float64(want) {
			return now, last - base, nil
		}
		if now.Sub(lastChange) > stall {
			return lastChange, last - base, fmt.Errorf("history stalled at %.0f of %d fixes for %s", last-base, want, stall)
		}
		// The time stored is that of the poll that saw it: every 10 ms, not
		// 50, so the ingest figure (a run of about two seconds) is not
		// charged up to 50 ms that the ceiling's exact last delivery is not.
		select {
		case <-time.After(10 * time.Millisecond):
		case <-ctx.Done():
			return time.Time{}, last - base, ctx.Err()
		}
	}
}
