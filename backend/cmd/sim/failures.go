package main

import (
	"context"
	_ "embed"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/tawsil/tawsil/backend/internal/area"
	"github.com/tawsil/tawsil/backend/internal/dispatch"
	"github.com/tawsil/tawsil/backend/internal/eta"
	"github.com/tawsil/tawsil/backend/internal/failure"
	"github.com/tawsil/tawsil/backend/internal/routing"
)

// relayPointsYAML is a copy of backend/internal/app/relay_points.yaml (the
// list the backend ships); a test keeps the two identical.
//
//go:embed relay_points.yaml
var relayPointsYAML []byte

// Weighted is one outcome of a draw and its weight.
type Weighted[T any] struct {
	Value  T
	Weight float64
}

// FailureProfile is how failed attempts look in the simulated day. Every
// draw comes from its own random stream (seeded by Config.Seed), so the
// same orders fail for the same reasons under every strategy.
type FailureProfile struct {
	// Reasons is the reason mix among failed attempts of cash-on-delivery
	// orders; other orders draw from it without COD_NOT_AVAILABLE.
	Reasons []Weighted[failure.Reason]
	// Policies is the merchant policy mix, drawn once per store.
	Policies []Weighted[string]
	// Sizes is the parcel size mix (relay points take S and M only).
	Sizes []Weighted[string]
	// CODShare is the share of orders paid cash on delivery.
	CODShare float64
	// RetrySuccess is the chance that an attempt after a failed one succeeds.
	RetrySuccess float64
	// ReplyRate is the chance that a contact_customer window reaches the
	// customer (the merchant relays "reachable"); otherwise the rule's then
	// applies when the window ends.
	ReplyRate float64
	// MaxFailures bounds the failed attempts one order can have (the rules'
	// attempt limits end the attempts before that).
	MaxFailures int
}

// DefaultFailureProfile is a Casablanca quick-commerce day as operators
// describe it: most failures are customers who do not answer (≈ 54 % of all
// failures), then addresses not found (≈ 16 %), refusals (≈ 11 %) and no
// cash at the door (≈ 10 %: a quarter of COD failures, with 40 % of orders
// paid cash); most merchants run the standard policy, a quarter accept relay
// points, pharmacies and fresh goods want parcels back fast; a second
// attempt succeeds 70 % of the time.
func DefaultFailureProfile() FailureProfile {
	return FailureProfile{
		Reasons: []Weighted[failure.Reason]{
			{failure.CustomerUnavailable, 0.45},
			{failure.AddressNotFound, 0.13},
			{failure.CustomerRefused, 0.09},
			{failure.CODNotAvailable, 0.25},
			{failure.AddressInaccessible, 0.03},
			{failure.BusinessClosed, 0.02},
			{failure.Damaged, 0.01},
			{failure.UnsafeLocation, 0.01},
			{failure.CourierIncident, 0.01},
		},
		Policies: []Weighted[string]{{"standard", 0.60}, {"relay_ok", 0.25}, {"strict_return", 0.15}},
		Sizes:    []Weighted[string]{{"S", 0.55}, {"M", 0.35}, {"L", 0.10}},
		CODShare: 0.40, RetrySuccess: 0.70, ReplyRate: 0.50, MaxFailures: 4,
	}
}

// Validate reports a profile that cannot be drawn from.
func (p FailureProfile) Validate() error {
	switch {
	case !(p.CODShare >= 0 && p.CODShare <= 1):
		return fmt.Errorf("%w: cod share %v not in 0..1", errConfig, p.CODShare)
	case !(p.RetrySuccess >= 0 && p.RetrySuccess <= 1):
		return fmt.Errorf("%w: retry success %v not in 0..1", errConfig, p.RetrySuccess)
	case !(p.ReplyRate >= 0 && p.ReplyRate <= 1):
		return fmt.Errorf("%w: reply rate %v not in 0..1", errConfig, p.ReplyRate)
	case p.MaxFailures < 1:
		return fmt.Errorf("%w: max failures %d < 1", errConfig, p.MaxFailures)
	case totalWeight(p.Reasons, nil) <= 0 || totalWeight(p.Policies, nil) <= 0 || totalWeight(p.Sizes, nil) <= 0:
		return fmt.Errorf("%w: reason, policy and size mixes need a positive weight", errConfig)
	case totalWeight(p.Reasons, func(r failure.Reason) bool { return r != failure.CODNotAvailable }) <= 0:
		return fmt.Errorf("%w: the reason mix needs a reason other than COD_NOT_AVAILABLE", errConfig)
	}
	return nil
}

func totalWeight[T any](ws []Weighted[T], keep func(T) bool) float64 {
	var sum float64
	for _, w := range ws {
		if w.Weight < 0 {
			return -1
		}
		if keep == nil || keep(w.Value) {
			sum += w.Weight
		}
	}
	return sum
}

// draw picks a value with probability proportional to its weight among
// those keep accepts (all when keep is nil). The mix must have a positive
// total (Validate).
func draw[T any](r *rand.Rand, ws []Weighted[T], keep func(T) bool) T {
	x := r.Float64() * totalWeight(ws, keep)
	var last T
	for _, w := range ws {
		if keep != nil && !keep(w.Value) {
			continue
		}
		last = w.Value
		if x < w.Weight {
			return w.Value
		}
		x -= w.Weight
	}
	return last
}

// drawFailures sets o's failure profile: how many attempts fail, why, and
// the order's payment and size.
func (p FailureProfile) drawFailures(r *rand.Rand, o *simOrder, failRate float64) {
	o.cod = r.Float64() < p.CODShare
	o.size = draw(r, p.Sizes, nil)
	var keep func(failure.Reason) bool
	if !o.cod {
		keep = func(x failure.Reason) bool { return x != failure.CODNotAvailable }
	}
	o.reason = draw(r, p.Reasons, keep)
	if r.Float64() >= failRate {
		return
	}
	o.failures = 1
	for o.failures < p.MaxFailures && r.Float64() >= p.RetrySuccess {
		o.failures++
	}
}

// rig is what every strategy's run shares besides the day: the travel
// model, the real failure rules and relay points, the real route planner.
type rig struct {
	cfg     Config
	model   *eta.Model
	dcfg    dispatch.Config
	rules   *failure.Engine
	relays  []failure.Relay // open relay points inside the simulated city
	planner routing.Planner
	loc     *time.Location // the city's clock, for relay opening hours
	log     *slog.Logger
}

// cityRelays keeps the relay points inside city.
func cityRelays(points []failure.Relay, areas *area.Areas, city string) []failure.Relay {
	var out []failure.Relay
	for _, p := range points {
		if c, ok := areas.Locate(p.Lat, p.Lng); ok && c == city {
			out = append(out, p)
		}
	}
	return out
}

// modelTravel prices the planner's legs with the eta model, as the
// backend's etaTravel does.
type modelTravel struct{ m *eta.Model }

func (t modelTravel) Travel(from, to routing.Point, at time.Time) time.Duration {
	return t.m.Travel(from.Lat, from.Lng, to.Lat, to.Lng, at)
}

// reattemptCall is the extra time at the door of a reattempt: calling the
// customer again.
const reattemptCall = 5 * time.Minute

// serviceOf is the time spent at a stop of o's of the given dispatch kind.
func (g *rig) serviceOf(o *simOrder, k dispatch.StopKind) time.Duration {
	switch {
	case k == dispatch.StopPickup || o.terminal == routing.Return:
		return g.dcfg.PickupService
	case o.terminal == routing.Dropoff && o.attempts > 0:
		return g.dcfg.DropoffService + reattemptCall
	}
	return g.dcfg.DropoffService
}

// routingStops converts a sim route to the planner's stops, as the backend's
// stopsOf does: a drop-off carries the promise and a retry's "not before";
// the order's terminal stop is a drop-off, a relay hand-over or a return.
func (g *rig) routingStops(route []dispatch.Stop, byID map[string]*simOrder) []routing.Stop {
	out := make([]routing.Stop, len(route))
	for i, s := range route {
		o := byID[s.OrderID]
		rs := routing.Stop{OrderID: s.OrderID, Kind: routing.Pickup, Loc: routing.Point{Lat: s.At.Lat, Lng: s.At.Lng}, Service: g.serviceOf(o, s.Kind)}
		if s.Kind != dispatch.StopPickup {
			rs.Kind = o.terminal
			if o.terminal != routing.Return {
				rs.Latest = o.promiseBy
			}
			if o.terminal == routing.Dropoff {
				rs.Earliest = o.notBefore
			}
			// A retry set after the promise: lateness counts from the
			// earliest possible visit (the planner refuses earliest > latest).
			if rs.Earliest.After(rs.Latest) && !rs.Latest.IsZero() {
				rs.Latest = rs.Earliest
			}
		}
		out[i] = rs
	}
	return out
}

// plan re-orders route with the planner for a courier leaving start at t,
// the input order being route's. On a planner error the input order stays,
// as in the backend, and the error is logged.
func (g *rig) plan(ctx context.Context, start dispatch.Point, t time.Time, route []dispatch.Stop, byID map[string]*simOrder) ([]dispatch.Stop, error) {
	if len(route) < 2 {
		return route, nil
	}
	stops := g.routingStops(route, byID)
	sol, err := g.planner.Plan(ctx, routing.Problem{
		Start: start, StartTime: t, Stops: stops, Travel: modelTravel{g.model},
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("plan: %w", ctx.Err())
		}
		g.log.Warn("route plan failed; keeping the input order", "stops", len(stops), "err", err)
		return route, nil
	}
	type key struct {
		id     string
		pickup bool
	}
	idx := make(map[key]dispatch.Stop, len(route))
	for _, s := range route {
		idx[key{s.OrderID, s.Kind == dispatch.StopPickup}] = s
	}
	out := make([]dispatch.Stop, 0, len(route))
	for _, v := range sol.Visits {
		out = append(out, idx[key{v.OrderID, v.Kind == routing.Pickup}])
	}
	return out, nil
}

// departures returns when a courier leaving start at t leaves each stop of
// route, by the planner's own evaluation.
func (g *rig) departures(start dispatch.Point, t time.Time, route []dispatch.Stop, byID map[string]*simOrder) ([]time.Time, error) {
	p := routing.Problem{Start: start, StartTime: t,
		Stops: g.routingStops(route, byID), Travel: modelTravel{g.model}}
	sol, err := routing.Evaluate(p, p.Stops)
	if err != nil {
		return nil, fmt.Errorf("evaluate route: %w", err)
	}
	out := make([]time.Time, len(sol.Visits))
	for i, v := range sol.Visits {
		out[i] = v.Depart
	}
	return out, nil
}
