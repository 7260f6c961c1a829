// Package routing plans the order of a courier's remaining stops.
//
// A route is the ordered list of open stops of the orders assigned to one
// courier: pickups, drop-offs, returns to the merchant and hand-overs at a relay
// point. Each stop has a soft time window; lateness against the window's latest
// time (the order's one-hour promise) is what the planner minimises first, travel
// time second. An order's pickup always comes before its other stop; an order
// already picked up has no pickup stop (the parcel is on board).
//
// The built-in planner (Plan) is a deterministic cheapest-insertion construction
// followed by a precedence-aware local search (relocation of segments, swaps and
// 2-opt reversals). It never returns a plan worse than the input order. An
// external optimiser (package vroom) can be put in front of it with WithFallback.
//
// The package has no I/O: travel times come from an injected TravelTimer.
package routing

import (
	"github.com/tawsil/tawsil/backend/internal/geo"

	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/tawsil/tawsil/shared/wire"
)

// Kind is the kind of a stop. The values are the wire's stop kinds.
type Kind string

// Stop kinds.
const (
	Pickup  Kind = wire.StopPickup  // collect the parcel at the merchant
	Dropoff Kind = wire.StopDropoff // hand the parcel to the customer
	Return  Kind = wire.StopReturn  // bring the parcel back to the merchant
	Relay   Kind = wire.StopRelay   // leave the parcel at a relay point
)

// Terminal reports whether k ends an order's journey (every kind but Pickup).
func (k Kind) Terminal() bool { return k == Dropoff || k == Return || k == Relay }

// Algorithm names reported in Solution.Algorithm.
const (
	AlgorithmInput     = "input"                  // the input order was kept
	AlgorithmHeuristic = "insertion+local-search" // the built-in planner improved it
)

// Errors returned by Plan, Evaluate, Check and the Problem helpers.
var (
	ErrInvalidProblem = errors.New("invalid routing problem")
	ErrPrecedence     = errors.New("pickup after its order's other stop")
	ErrUnknownOrder   = errors.New("order not in route")
	ErrInvalidPlan    = errors.New("plan does not match the problem")
)

// Point is a WGS84 position in degrees (the one geo.Point).
type Point = geo.Point

// Stop is one visit to make. A zero Earliest or Latest means no bound.
type Stop struct {
	OrderID  string
	Kind     Kind
	Loc      Point
	Service  time.Duration // time spent at the stop (parking, stairs, hand-over)
	Earliest time.Time     // the courier waits until then (a pickup's "ready at")
	Latest   time.Time     // arriving later is lateness (the one-hour promise)
}

// key identifies a stop inside one problem: an order has at most one stop of
// each kind and at most one terminal stop.
func (s Stop) key() string { return s.OrderID + "/" + string(s.Kind) }

// Options bound the search. Zero values take the defaults.
type Options struct {
	// TimeBudget bounds the wall time of the search; 0 means DefaultTimeBudget.
	// The result is deterministic unless the budget (or ctx) cuts the search
	// short, which the default budget does not do for routes of up to 20+
	// stops on this hardware (see the benchmarks).
	TimeBudget time.Duration
	// MaxIterations bounds the number of improving moves per start; 0 means
	// DefaultMaxIterations.
	MaxIterations int
}

// Defaults for Options.
const (
	DefaultTimeBudget    = 200 * time.Millisecond
	DefaultMaxIterations = 2000
)

// Problem is one courier's route to plan.
type Problem struct {
	Start     Point     // the courier's current position
	StartTime time.Time // when the courier leaves Start
	Stops     []Stop    // the open stops, in the current ("input") order
	Travel    TravelTimer
	Options   Options
}

// Visit is a stop in a planned route with its times.
type Visit struct {
	Stop
	Arrival  time.Time     // the ETA at the stop
	Depart   time.Time     // after waiting for Earliest and the service time
	Lateness time.Duration // max(0, Arrival-Latest)
}

// Solution is a planned route.
type Solution struct {
	Visits        []Visit
	TotalLateness time.Duration // sum of the visits' lateness
	MaxLateness   time.Duration
	TravelTime    time.Duration // driving time only, without waiting and service
	DistanceM     float64       // great-circle length of the legs, in metres
	Finish        time.Time     // departure from the last stop (StartTime if none)
	Algorithm     string
}

// Stops returns the planned stops in order.
func (s Solution) Stops() []Stop {
	out := make([]Stop, len(s.Visits))
	for i, v := range s.Visits {
		out[i] = v.Stop
	}
	return out
}

// Better reports whether s is lexicographically better than o: less total
// lateness, or equal lateness and an earlier finish (less travel and waiting).
func (s Solution) Better(o Solution) bool {
	if s.TotalLateness != o.TotalLateness {
		return s.TotalLateness < o.TotalLateness
	}
	if !s.Finish.Equal(o.Finish) {
		return s.Finish.Before(o.Finish) // same stops: an earlier finish is less travel and waiting
	}
	return s.TravelTime < o.TravelTime
}

// Planner orders a courier's stops.
type Planner interface {
	// Plan returns a plan holding exactly p's stops, or an error wrapping
	// ErrInvalidProblem, ErrPrecedence or the planner's own failure (for an
	// external one: transport, timeout, unserved stops).
	Plan(ctx context.Context, p Problem) (Solution, error)
}

// PlannerFunc adapts a function to Planner.
type PlannerFunc func(ctx context.Context, p Problem) (Solution, error)

// Plan calls f.
func (f PlannerFunc) Plan(ctx context.Context, p Problem) (Solution, error) { return f(ctx, p) }

// Builtin is the in-process heuristic planner; its zero value is ready.
type Builtin struct{}

var _ Planner = Builtin{}

// Plan calls the package's Plan.
func (Builtin) Plan(ctx context.Context, p Problem) (Solution, error) { return Plan(ctx, p) }

// travelTimer returns p's timer or the default one.
func (p Problem) travelTimer() TravelTimer {
	if p.Travel == nil {
		return DefaultTravel()
	}
	return p.Travel
}

// Validate checks the stops: known kinds, finite coordinates, no duplicate stop,
// at most one pickup and exactly one terminal stop per order, Earliest not after
// Latest, and each pickup before its order's terminal stop in the input order.
func (p Problem) Validate() error {
	if p.StartTime.IsZero() {
		return fmt.Errorf("%w: zero start time", ErrInvalidProblem)
	}
	if err := checkPoint(p.Start); err != nil {
		return fmt.Errorf("%w: start: %w", ErrInvalidProblem, err)
	}
	type orderStops struct{ pickup, terminal int }
	orders := make(map[string]*orderStops, len(p.Stops))
	for i, s := range p.Stops {
		if s.OrderID == "" {
			return fmt.Errorf("%w: stop %d: empty order id", ErrInvalidProblem, i)
		}
		if err := checkPoint(s.Loc); err != nil {
			return fmt.Errorf("%w: stop %d (%s): %w", ErrInvalidProblem, i, s.key(), err)
		}
		if s.Service < 0 {
			return fmt.Errorf("%w: stop %d (%s): negative service time", ErrInvalidProblem, i, s.key())
		}
		if !s.Earliest.IsZero() && !s.Latest.IsZero() && s.Earliest.After(s.Latest) {
			return fmt.Errorf("%w: stop %d (%s): earliest after latest", ErrInvalidProblem, i, s.key())
		}
		o := orders[s.OrderID]
		if o == nil {
			o = &orderStops{pickup: -1, terminal: -1}
			orders[s.OrderID] = o
		}
		switch {
		case s.Kind == Pickup:
			if o.pickup >= 0 {
				return fmt.Errorf("%w: stop %d: order %s has two pickups", ErrInvalidProblem, i, s.OrderID)
			}
			if o.terminal >= 0 {
				return fmt.Errorf("%w: stop %d: order %s", ErrPrecedence, i, s.OrderID)
			}
			o.pickup = i
		case s.Kind.Terminal():
			if o.terminal >= 0 {
				return fmt.Errorf("%w: stop %d: order %s has two terminal stops", ErrInvalidProblem, i, s.OrderID)
			}
			o.terminal = i
		default:
			return fmt.Errorf("%w: stop %d: unknown kind %q", ErrInvalidProblem, i, s.Kind)
		}
	}
	for i, s := range p.Stops {
		if o := orders[s.OrderID]; o.terminal < 0 {
			return fmt.Errorf("%w: stop %d: order %s has a pickup but no drop-off, return or relay stop", ErrInvalidProblem, i, s.OrderID)
		}
	}
	return nil
}

func checkPoint(pt Point) error {
	switch {
	case math.IsNaN(pt.Lat) || math.IsNaN(pt.Lng) || math.IsInf(pt.Lat, 0) || math.IsInf(pt.Lng, 0):
		return errors.New("coordinate is not finite")
	case pt.Lat < -90 || pt.Lat > 90 || pt.Lng < -180 || pt.Lng > 180:
		return fmt.Errorf("coordinate (%v, %v) out of range", pt.Lat, pt.Lng)
	}
	return nil
}

// AddStops returns a copy of p with stops appended (a new order batched onto
// the route). The result is validated.
func (p Problem) AddStops(stops ...Stop) (Problem, error) {
	q := p
	q.Stops = append(append(make([]Stop, 0, len(p.Stops)+len(stops)), p.Stops...), stops...)
	if err := q.Validate(); err != nil {
		return Problem{}, fmt.Errorf("add stops: %w", err)
	}
	return q, nil
}

// RemoveOrder returns a copy of p without orderID's stops (cancelled or
// reassigned). It returns ErrUnknownOrder when the route has none.
func (p Problem) RemoveOrder(orderID string) (Problem, error) {
	q := p
	q.Stops = make([]Stop, 0, len(p.Stops))
	for _, s := range p.Stops {
		if s.OrderID != orderID {
			q.Stops = append(q.Stops, s)
		}
	}
	if len(q.Stops) == len(p.Stops) {
		return Problem{}, fmt.Errorf("remove %s: %w", orderID, ErrUnknownOrder)
	}
	return q, nil
}

// Insert adds a new order's stops to the route and re-plans it with the
// built-in planner.
func Insert(ctx context.Context, p Problem, newStops []Stop) (Solution, error) {
	q, err := p.AddStops(newStops...)
	if err != nil {
		return Solution{}, err
	}
	return Plan(ctx, q)
}

// Remove drops an order's stops from the route and re-plans it with the
// built-in planner.
func Remove(ctx context.Context, p Problem, orderID string) (Solution, error) {
	q, err := p.RemoveOrder(orderID)
	if err != nil {
		return Solution{}, err
	}
	return Plan(ctx, q)
}

// Evaluate computes the times of visiting p's stops in the given order, with
// the travel timer asked at each actual departure time. It checks that order
// holds exactly p's stops with pickups first.
func Evaluate(p Problem, order []Stop) (Solution, error) {
	if err := checkOrder(p, order); err != nil {
		return Solution{}, err
	}
	return evaluate(p, order), nil
}

// evaluate computes the times of an order already checked.
func evaluate(p Problem, order []Stop) Solution {
	tt := p.travelTimer()
	sol := Solution{Visits: make([]Visit, len(order))}
	at, from := p.StartTime, p.Start
	for i, s := range order {
		d := tt.Travel(from, s.Loc, at)
		sol.TravelTime += d
		sol.DistanceM += geo.DistanceM(from, s.Loc)
		v := Visit{Stop: s, Arrival: at.Add(d)}
		begin := v.Arrival
		if s.Earliest.After(begin) {
			begin = s.Earliest
		}
		v.Depart = begin.Add(s.Service)
		if !s.Latest.IsZero() && v.Arrival.After(s.Latest) {
			v.Lateness = v.Arrival.Sub(s.Latest)
			sol.TotalLateness += v.Lateness
			sol.MaxLateness = max(sol.MaxLateness, v.Lateness)
		}
		sol.Visits[i] = v
		at, from = v.Depart, s.Loc
	}
	sol.Finish = at
	return sol
}

// Check reports whether sol is a valid plan of p: exactly p's stops, each once,
// every pickup before its order's other stop. It does not judge the times.
func Check(p Problem, sol Solution) error {
	return checkOrder(p, sol.Stops())
}

func checkOrder(p Problem, order []Stop) error {
	if len(order) != len(p.Stops) {
		return fmt.Errorf("%w: %d stops, problem has %d", ErrInvalidPlan, len(order), len(p.Stops))
	}
	want := make(map[string]bool, len(p.Stops))
	for _, s := range p.Stops {
		want[s.key()] = true
	}
	seen := make(map[string]bool, len(order))
	terminalDone := make(map[string]bool, len(order))
	for i, s := range order {
		k := s.key()
		if !want[k] {
			return fmt.Errorf("%w: stop %d (%s) not in the problem", ErrInvalidPlan, i, k)
		}
		if seen[k] {
			return fmt.Errorf("%w: stop %d (%s) twice", ErrInvalidPlan, i, k)
		}
		seen[k] = true
		if s.Kind == Pickup && terminalDone[s.OrderID] {
			return fmt.Errorf("%w: stop %d: order %s", ErrPrecedence, i, s.OrderID)
		}
		if s.Kind.Terminal() {
			terminalDone[s.OrderID] = true
		}
	}
	return nil
}
