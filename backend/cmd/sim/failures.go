package main

import (
	_ "embed"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/tawsil/tawsil/backend/internal/area"
	"github.com/tawsil/tawsil/backend/internal/core"
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

// rig is what every strategy's run shares besides the day: the server's
// core (dispatch scoring, offer rounds, the real failure rules and relay
// points), the travel model, the real route planner.
type rig struct {
	cfg     Config
	model   *eta.Model
	dcfg    dispatch.Config
	rules   *failure.Engine
	relays  []failure.Relay // relay points inside the simulated city
	planner routing.Planner
	loc     *time.Location // the city's clock, for relay opening hours
	log     *slog.Logger
	core    *core.Core
}

// newRig builds the rig, with the core configured as the server's.
func newRig(cfg Config, model *eta.Model, d *dispatch.Dispatcher, rules *failure.Engine, relays []failure.Relay, log *slog.Logger) *rig {
	loc := eta.Casablanca()
	return &rig{cfg: cfg, model: model, dcfg: d.Config(), rules: rules, relays: relays, planner: routing.Builtin{}, loc: loc, log: log,
		core: &core.Core{Dispatch: d, OfferTimeout: 30 * time.Second, Rules: rules, Verify: failure.DefaultVerifyConfig(), Relays: relays, Zone: loc}}
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

// serviceOf is the time the simulated courier really spends at a stop of
// o's (the planner counts the core's planned service times).
func (g *rig) serviceOf(o *simOrder, k routing.Kind) time.Duration {
	switch {
	case k == routing.Pickup || k == routing.Return:
		return g.dcfg.PickupService
	case k == routing.Dropoff && o.attempts > 0:
		return g.dcfg.DropoffService + reattemptCall
	}
	return g.dcfg.DropoffService
}
