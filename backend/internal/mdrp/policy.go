package mdrp

import (
	"cmp"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strconv"
	"time"

	"github.com/tawsil/tawsil/backend/internal/dispatch"
)

// Greedy is the baseline: each open order, oldest first, goes alone to the
// nearest idle courier on shift that can pick it up before its off time.
type Greedy struct{}

// Name implements Policy.
func (Greedy) Name() string { return "greedy (nearest idle, no bundling)" }

// Decide implements Policy.
func (Greedy) Decide(e *Engine, _ []int) {
	in := e.Instance()
	for _, o := range e.Open() {
		r := in.Restaurants[in.Orders[o].Restaurant]
		best, bestD := -1, math.Inf(1)
		for ci := 0; ci < e.Couriers(); ci++ {
			if !e.OnShift(ci) || !e.Idle(ci) {
				continue
			}
			x, y := e.Position(ci)
			if d := math.Hypot(r.X-x, r.Y-y); d < bestD {
				route := []Stop{{Pickup, o, e.Now()}, {Dropoff, o, e.Now()}}
				if e.Predict(ci, route, o).Feasible {
					best, bestD = ci, d
				}
			}
		}
		if best >= 0 {
			e.Assign(best, []Stop{{Pickup, o, e.Now()}, {Dropoff, o, e.Now()}})
		}
	}
}

// Rolling is a rolling-horizon bundling heuristic: every minute, open
// orders whose food is ready within Horizon are grouped by restaurant into
// bundles of up to MaxBundle orders ready within Window of each other,
// dropped off nearest-first; each bundle, earliest ready first, is appended
// to the route of the courier that would drop its last order soonest.
type Rolling struct {
	Horizon, Window, MaxBundle int
}

// Name implements Policy.
func (r Rolling) Name() string {
	return fmt.Sprintf("rolling horizon (%d min, bundles ≤ %d)", r.Horizon, r.MaxBundle)
}

// Decide implements Policy.
func (r Rolling) Decide(e *Engine, _ []int) {
	in := e.Instance()
	now := e.Now()
	byRest := map[string][]int{}
	var rests []string
	for _, o := range e.Open() {
		ord := &in.Orders[o]
		if ord.Ready > now+r.Horizon {
			continue
		}
		if byRest[ord.Restaurant] == nil {
			rests = append(rests, ord.Restaurant)
		}
		byRest[ord.Restaurant] = append(byRest[ord.Restaurant], o)
	}
	var bundles [][]int
	for _, id := range rests {
		os := byRest[id]
		slices.SortFunc(os, func(a, b int) int { return cmp.Compare(in.Orders[a].Ready, in.Orders[b].Ready) })
		for len(os) > 0 {
			n := 1
			for n < len(os) && n < r.MaxBundle && in.Orders[os[n]].Ready-in.Orders[os[0]].Ready <= r.Window {
				n++
			}
			bundles = append(bundles, nearestFirst(in, os[:n]))
			os = os[n:]
		}
	}
	slices.SortFunc(bundles, func(a, b []int) int { return cmp.Compare(in.Orders[a[0]].Ready, in.Orders[b[0]].Ready) })
	for _, b := range bundles {
		best, bestEnd := -1, math.MaxInt
		var bestRoute []Stop
		for ci := 0; ci < e.Couriers(); ci++ {
			if !e.OnShift(ci) || e.Load(ci) > 0 && !e.Idle(ci) && len(e.Route(ci)) > 2 {
				continue
			}
			route := slices.Clone(e.Route(ci))
			for _, o := range b {
				route = append(route, Stop{Pickup, o, now})
			}
			for _, o := range b {
				route = append(route, Stop{Dropoff, o, now})
			}
			pr := e.Predict(ci, route, b[len(b)-1])
			if !pr.Feasible {
				continue
			}
			end := pr.Dropoff
			if end < bestEnd {
				best, bestEnd, bestRoute = ci, end, route
			}
		}
		if best >= 0 {
			e.Assign(best, bestRoute)
		}
	}
}

// nearestFirst orders a bundle's drop-offs by nearest neighbour from the restaurant.
func nearestFirst(in *Instance, os []int) []int {
	r := in.Restaurants[in.Orders[os[0]].Restaurant]
	x, y := r.X, r.Y
	left := slices.Clone(os)
	out := make([]int, 0, len(os))
	for len(left) > 0 {
		bi := 0
		for i, o := range left {
			if math.Hypot(in.Orders[o].X-x, in.Orders[o].Y-y) < math.Hypot(in.Orders[left[bi]].X-x, in.Orders[left[bi]].Y-y) {
				bi = i
			}
		}
		o := left[bi]
		out = append(out, o)
		x, y = in.Orders[o].X, in.Orders[o].Y
		left = slices.Delete(left, bi, bi+1)
	}
	return out
}

// Tawsil dispatches with the server's own dispatcher (package dispatch):
// every minute, one decision epoch (Dispatcher.Epoch) over the open orders
// and those taken back from couriers that had not started on them, scored
// by route insertion with batching from the same restaurant; the best
// courier whose exact route keeps its shift gets each order committed, an
// order whose best courier would be early for its ready time waits. The
// one-hour promise is replaced by the instance's target click-to-door; when
// no courier can keep it, by the maximum; an order still waiting 30 minutes
// after it is ready goes, late, to whoever brings it soonest.
type Tawsil struct {
	d *dispatch.Dispatcher
	k int
	// lateAfter: minutes after an order is ready before it goes, late, to
	// whoever can bring it soonest.
	lateAfter int
	promise   map[int]time.Time // order → promise it was assigned under
	replan    bool
	// scratch, reused across epochs
	cands  []dispatch.Candidate
	stops  []dispatch.Stop
	cis    []int // candidate → courier index
	locked []int // candidate → its courier's locked stops
	jobs   []dispatch.EpochJob
	ids    []string // courier index → id for the dispatcher
	// Decisions are the wall-clock time of each epoch divided by the
	// orders decided in it, once per order and epoch; DecisionsCPU the
	// same in CPU time of the deciding thread (what the decision costs,
	// apart from whatever else runs on the machine); Epochs the epochs'
	// wall-clock times.
	Decisions, DecisionsCPU, Epochs []time.Duration
}

// TawsilConfig is the dispatch configuration Tawsil runs MDRP with: the
// server's defaults and weights, except
//   - the instance's service times and target click-to-door as the promise;
//   - batching only from the same restaurant (a bundle is one restaurant's);
//   - travel times are exact here, so smaller safety margins (2 min + 1 per stop);
//   - up to four orders at a time (MDRP couriers carry whole bundles);
//   - a stronger fairness term (6 per order done today, 0.5 per idle minute
//     up to 30): couriers are paid per order with an hourly guarantee, so
//     spreading orders over couriers still under their guarantee is what
//     keeps the pay per order down;
//   - deferred commitment: an order waits while its best courier would
//     reach the restaurant more than 10 minutes before the food is ready;
//   - in each minute's epoch, a small priority for orders that have waited
//     (0.3 per minute since placed) over the cheapest-first order.
//
// The fairness and margins were tuned on 0o100t100s1p100 and
// 5o50t100s1p100; the epoch's k, CommitLead and WaitMin on 5o50t100s1p100
// alone (see README).
func TawsilConfig(p Params) dispatch.Config {
	cfg := dispatch.Default()
	cfg.PickupService = time.Duration(p.PickupService) * time.Minute
	cfg.DropoffService = time.Duration(p.DropoffService) * time.Minute
	cfg.Promise = time.Duration(p.TargetC2D) * time.Minute
	cfg.BatchRadiusM = 1 // the same restaurant: projected points of one place are equal
	cfg.DefaultCapacity = 4
	cfg.Margin = 2 * time.Minute
	cfg.MarginPerStop = time.Minute
	cfg.Weights.AssignedToday = 6
	cfg.Weights.IdleMin = 0.5
	cfg.IdleCap = 30 * time.Minute
	cfg.CommitLead = 10 * time.Minute
	cfg.Weights.WaitMin = 0.3
	return cfg
}

// NewTawsil returns the policy, scoring per order the k couriers that
// could be at its restaurant soonest (and those going there already).
func NewTawsil(in *Instance, cfg dispatch.Config, k int) (*Tawsil, error) {
	d, err := dispatch.New(cfg, constPace(60/in.Params.MetersPerMinute))
	if err != nil {
		return nil, err
	}
	return &Tawsil{d: d, k: k, lateAfter: 30, promise: map[int]time.Time{}, replan: true}, nil
}

// Name implements Policy.
func (t *Tawsil) Name() string { return "tawsil (server dispatch core)" }

type constPace float64

func (p constPace) Pace(float64, float64, time.Time) float64 { return float64(p) }

// day0 anchors virtual minutes to the dispatcher's clock.
var day0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func clock(m int) time.Time { return day0.Add(time.Duration(m) * time.Minute) }

// project maps instance metres to WGS84 degrees around Casablanca, where
// great-circle and plane distances agree to well under 0.1 % over a city.
func project(x, y float64) dispatch.Point {
	const lat0, lng0, mPerDeg = 33.55, -7.65, 111_194.93
	return dispatch.Point{Lat: lat0 + y/mPerDeg, Lng: lng0 + x/(mPerDeg*math.Cos(lat0*math.Pi/180))}
}

// Decide implements Policy: one decision epoch of the dispatcher
// (dispatch.Dispatcher.Epoch) every minute. Orders given to a courier that
// has not started on their pick-up are taken back first and decided again
// with the others (re-planning), so only the stop a courier drives to (or
// the pick-up it waits at) and the parcels on board are fixed.
func (t *Tawsil) Decide(e *Engine, _ []int) {
	in := e.Instance()
	now := e.Now()
	if t.replan {
		t.takeBack(e)
	}
	open := e.Open()
	if len(open) == 0 {
		return
	}
	if len(t.ids) != e.Couriers() {
		t.ids = make([]string, e.Couriers())
		for ci := range t.ids {
			t.ids[ci] = strconv.Itoa(ci)
		}
	}
	cands, stops, cis := t.cands[:0], t.stops[:0], t.cis[:0]
	t.locked = t.locked[:0]
	for ci := 0; ci < e.Couriers(); ci++ {
		if !e.OnShift(ci) {
			continue
		}
		n, x, y, free := e.Locked(ci)
		if free > e.Courier(ci).Off {
			continue
		}
		p := project(x, y)
		c := dispatch.Candidate{
			CourierID: t.ids[ci], Lat: p.Lat, Lng: p.Lng, Load: e.Load(ci),
			AssignedToday: e.AssignedToday(ci), FreeAt: clock(free),
		}
		if e.Idle(ci) {
			c.IdleSince = clock(e.IdleSince(ci))
		}
		first := len(stops)
		for _, s := range e.Route(ci)[n:] {
			stops = append(stops, t.stop(in, s))
		}
		c.Route = stops[first:len(stops):len(stops)]
		cands = append(cands, c)
		cis = append(cis, ci)
		t.locked = append(t.locked, n)
	}
	t.cands, t.stops, t.cis = cands, stops, cis
	if len(cands) == 0 {
		return
	}
	jobs := t.jobs[:0]
	for _, o := range open {
		ord := &in.Orders[o]
		r := in.Restaurants[ord.Restaurant]
		jobs = append(jobs, dispatch.EpochJob{
			Job: dispatch.Job{OrderID: ord.ID, Pickup: project(r.X, r.Y), Dropoff: project(ord.X, ord.Y),
				ReadyAt: clock(ord.Ready), PromiseBy: clock(ord.Placed + in.Params.TargetC2D)},
			PlacedAt: clock(ord.Placed),
			LatestBy: clock(ord.Placed + in.Params.MaxC2D),
			// Nobody could keep even the maximum for lateAfter minutes
			// past ready: rather late than never, as a dispatcher would
			// (the promises already given still hold).
			AnyTime: now >= ord.Ready+t.lateAfter,
		})
	}
	t.jobs = jobs
	accept := func(j, k int, promise time.Time, r dispatch.Ranked) bool {
		o := open[j]
		pr := e.Predict(cis[k], t.route(e, cis[k], t.locked[k], r.Plan), o)
		return pr.Feasible && (promise.IsZero() || pr.Dropoff-in.Orders[o].Placed <= in.Params.MaxC2D)
	}
	runtime.LockOSThread()
	start, cpu := time.Now(), threadCPU()
	commits := t.d.Epoch(jobs, cands, clock(now), t.k, accept)
	el, elCPU := time.Since(start), threadCPU()-cpu
	runtime.UnlockOSThread()
	t.Epochs = append(t.Epochs, el)
	for range jobs {
		t.Decisions = append(t.Decisions, el/time.Duration(len(jobs)))
		t.DecisionsCPU = append(t.DecisionsCPU, elCPU/time.Duration(len(jobs)))
	}
	for _, c := range commits {
		o := open[c.Job]
		ci := cis[c.Cand]
		route := t.route(e, ci, t.locked[c.Cand], c.Ranked.Plan)
		t.promise[o] = c.PromiseBy
		if c.PromiseBy.IsZero() {
			t.promise[o] = clock(e.Predict(ci, route, o).Dropoff) // late: may get no later
		}
		e.Assign(ci, route)
	}
}

// takeBack returns to the open list every order whose pick-up a courier
// has not started on.
func (t *Tawsil) takeBack(e *Engine) {
	for ci := 0; ci < e.Couriers(); ci++ {
		rt := e.Route(ci)
		n, _, _, _ := e.Locked(ci)
		drop := map[int]bool{}
		for _, s := range rt[n:] {
			if s.Kind == Pickup {
				drop[s.Order] = true
			}
		}
		if len(drop) == 0 {
			continue
		}
		nr := slices.Clone(rt[:n])
		for _, s := range rt[n:] {
			if !drop[s.Order] {
				nr = append(nr, s)
			}
		}
		e.Assign(ci, nr)
	}
}

// stop is a route stop as the dispatcher sees it.
func (t *Tawsil) stop(in *Instance, s Stop) dispatch.Stop {
	so := &in.Orders[s.Order]
	sr := in.Restaurants[so.Restaurant]
	st := dispatch.Stop{OrderID: so.ID, Origin: project(sr.X, sr.Y)}
	if s.Kind == Pickup {
		st.Kind, st.At, st.ReadyAt = dispatch.StopPickup, st.Origin, clock(so.Ready)
	} else {
		st.Kind, st.At, st.PromiseBy = dispatch.StopDropoff, project(so.X, so.Y), t.promise[s.Order]
	}
	return st
}

// route is courier ci's engine route for a dispatcher plan after its n
// locked stops.
func (t *Tawsil) route(e *Engine, ci, n int, plan []dispatch.Stop) []Stop {
	old := e.Route(ci)
	route := slices.Clone(old[:n])
	for _, st := range plan {
		so := e.orderIndex(st.OrderID)
		kind := Dropoff
		if st.Kind == dispatch.StopPickup {
			kind = Pickup
		}
		added := e.Now()
		for _, s := range old {
			if s.Order == so && s.Kind == kind {
				added = s.AddedAt
			}
		}
		route = append(route, Stop{kind, so, added})
	}
	return route
}
