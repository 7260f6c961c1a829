package routing

import (
	"context"
	"fmt"
	"log/slog"
)

// WithFallback returns a Planner that asks primary first and falls back to
// fallback when primary fails (transport error, timeout, unserved stops) or
// returns a plan that does not hold exactly the problem's stops in a valid
// order. A nil primary (no external optimiser configured) means fallback only.
// The fallback's error is returned when both fail; when ctx itself has ended
// the fallback is not tried.
func WithFallback(primary, fallback Planner, logger *slog.Logger) Planner {
	if primary == nil {
		return fallback
	}
	return &fallbackPlanner{primary: primary, fallback: fallback, logger: logger}
}

type fallbackPlanner struct {
	primary, fallback Planner
	logger            *slog.Logger
}

func (f *fallbackPlanner) Plan(ctx context.Context, p Problem) (Solution, error) {
	sol, err := f.primary.Plan(ctx, p)
	if err == nil {
		if err = Check(p, sol); err == nil {
			return sol, nil
		}
		err = fmt.Errorf("primary planner: %w", err)
	}
	if ctx.Err() != nil {
		return Solution{}, fmt.Errorf("plan: %w (primary: %w)", ctx.Err(), err)
	}
	f.logger.WarnContext(ctx, "route planner failed, using fallback", "stops", len(p.Stops), "err", err)
	return f.fallback.Plan(ctx, p)
}
