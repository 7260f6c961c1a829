package mdrp

import (
	"cmp"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strconv"
	"time"

	"github.com/tawsil/tawsil/backend/internal/core"
	"github.com/tawsil/tawsil/backend/internal/dispatch"
	"github.com/tawsil/tawsil/backend/internal/order"
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

// Tawsil dispatches with the server's own decision: every minute, one
// dispatch epoch of the core (core.Core.Decide, which runs
// dispatch.Dispatcher.Epoch) over the open orders, as the server's epoch
// loop runs it, with the server's dispatch configuration (TawsilConfig:
// dispatch.Default with only the instance's facts put in). Orders are
// scored by route insertion with batching from the same restaurant; an
// order whose best courier would be early for its ready time waits; when
// no courier keeps the target click-to-door, the maximum is tried; an
// order still waiting 30 minutes after it is ready goes, late, to whoever
// brings it soonest. Offers are always accepted. The server does not take
// back an order a courier has accepted; TakeBack (a variant, not the
// server's) does: orders given to couriers not yet started on them are
// decided again each epoch.
type Tawsil struct {
	c    *core.Core
	name string
	// takeBack: re-plan orders not started on (not what the server does).
	takeBack bool
	states   []core.State      // per order, as the core sees it while open
	promise  map[int]time.Time // order → promise it was assigned under
	// scratch, reused across epochs
	cands  []dispatch.Candidate
	stops  []dispatch.Stop
	cis    []int // candidate → courier index
	locked []int // candidate → its courier's locked stops
	open   []core.State
	ids    []string // courier index → id for the dispatcher
	// Decisions are the wall-clock time of each epoch divided by the
	// orders decided in it, once per order and epoch; DecisionsCPU the
	// same in CPU time of the deciding thread (what the decision costs,
	// apart from whatever else runs on the machine); Epochs the epochs'
	// wall-clock times.
	Decisions, DecisionsCPU, Epochs []time.Duration
}

// TawsilConfig is the dispatch configuration Tawsil runs MDRP with: the
// server's own (dispatch.Default), with only what the instance says put
// in: its service times, its target click-to-door as the promise and its
// maximum as the latest hand-over, and bundles from one restaurant only
// (a bundle is one restaurant's: projected points of one place are equal,
// so a 1 m batching radius is exactly that rule).
func TawsilConfig(p Params) dispatch.Config {
	cfg := dispatch.Default()
	cfg.PickupService = time.Duration(p.PickupService) * time.Minute
	cfg.DropoffService = time.Duration(p.DropoffService) * time.Minute
	cfg.Promise = time.Duration(p.TargetC2D) * time.Minute
	cfg.Latest = time.Duration(p.MaxC2D) * time.Minute
	cfg.BatchRadiusM = 1
	return cfg
}

// NewTawsil returns the policy with a dispatch configuration (TawsilConfig
// for the server's); takeBack makes it the re-planning variant.
func NewTawsil(in *Instance, cfg dispatch.Config, takeBack bool, name string) (*Tawsil, error) {
	d, err := dispatch.New(cfg, constPace(60/in.Params.MetersPerMinute))
	if err != nil {
		return nil, err
	}
	t := &Tawsil{c: &core.Core{Dispatch: d, OfferTimeout: cfg.OfferTimeout}, name: name, takeBack: takeBack, promise: map[int]time.Time{}}
	t.states = make([]core.State, len(in.Orders))
	for i, o := range in.Orders {
		r := in.Restaurants[o.Restaurant]
		pu, do := project(r.X, r.Y), project(o.X, o.Y)
		t.states[i] = core.State{Order: &order.Order{ID: o.ID, MerchantID: o.Restaurant, Status: order.StatusBooked, Version: 1,
			Pickup: order.Place{Lat: pu.Lat, Lng: pu.Lng}, Dropoff: order.Place{Lat: do.Lat, Lng: do.Lng},
			BookedAt: clock(o.Placed), PromiseBy: clock(o.Placed + in.Params.TargetC2D), ReadyAt: clock(o.Ready)}}
	}
	return t, nil
}

// Name implements Policy.
func (t *Tawsil) Name() string { return t.name }

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

// Decide implements Policy: one dispatch epoch of the core every minute
// over the open orders and the couriers on shift, each with the part of
// its route that can no longer change (the stop it drives to, or the
// pick-up it waits at, and the parcels on board) and the rest as planned.
// The engine's exact prediction is the shell's last word (core.Accept): a
// route that makes the courier pick up after its off time, or a drop-off
// past the maximum click-to-door under a promise, is refused.
func (t *Tawsil) Decide(e *Engine, _ []int) {
	in := e.Instance()
	now := e.Now()
	if t.takeBack {
		t.replan(e)
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
	states := t.open[:0]
	for _, o := range open {
		states = append(states, t.states[o])
	}
	t.open = states
	accept := func(st *core.State, k int, promise time.Time, r dispatch.Ranked) bool {
		o := e.orderIndex(st.ID)
		pr := e.Predict(cis[k], t.route(e, cis[k], t.locked[k], r.Plan), o)
		return pr.Feasible && (promise.IsZero() || pr.Dropoff-in.Orders[o].Placed <= in.Params.MaxC2D)
	}
	runtime.LockOSThread()
	start, cpu := time.Now(), threadCPU()
	decided, _ := t.c.Decide(states, cands, clock(now), accept)
	el, elCPU := time.Since(start), threadCPU()-cpu
	runtime.UnlockOSThread()
	t.Epochs = append(t.Epochs, el)
	for range states {
		t.Decisions = append(t.Decisions, el/time.Duration(len(states)))
		t.DecisionsCPU = append(t.DecisionsCPU, elCPU/time.Duration(len(states)))
	}
	// Offers are always accepted: each decision becomes the courier's route.
	for _, d := range decided {
		o := e.orderIndex(d.Order)
		ci := cis[d.Commit.Cand]
		route := t.route(e, ci, t.locked[d.Commit.Cand], d.Commit.Ranked.Plan)
		t.promise[o] = d.Commit.PromiseBy
		if d.Commit.PromiseBy.IsZero() {
			t.promise[o] = clock(e.Predict(ci, route, o).Dropoff) // late: may get no later
		}
		e.Assign(ci, route)
	}
}

// replan returns to the open list every order whose pick-up a courier
// has not started on (the TakeBack variant).
func (t *Tawsil) replan(e *Engine) {
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
