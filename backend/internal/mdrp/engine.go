package mdrp

import (
	"math"
	"slices"
)

// Kind is what a stop does.
type Kind uint8

// Stop kinds.
const (
	Pickup Kind = iota + 1
	Dropoff
)

// Stop is one visit in a courier's route: the pick-up or the drop-off of
// one order (an index into Instance.Orders). Consecutive pick-ups at one
// restaurant are one visit and one bundle.
type Stop struct {
	Kind    Kind
	Order   int
	AddedAt int // when the order was given to the courier
}

type phase uint8

const (
	idle    phase = iota // at node, free from freeAt
	moving               // on the way to route[0]
	waiting              // at a restaurant, the head pick-ups not yet handed over
)

// courier is one courier's state in the simulated day.
type courier struct {
	c         *Courier
	node      string // where it is (or last was): its id at the start, a restaurant or an order id
	x, y      float64
	phase     phase
	freeAt    int // idle: may leave from this minute
	arriveAt  int // moving: reaches route[0]
	arrivedAt int // waiting: reached the restaurant
	route     []Stop
	idleSince int // when the route last became empty
	assigned  int // orders given to it so far today
}

// recorder receives what a courier does.
type recorder interface {
	move(ci int, m Move)
	pickup(ci int, orders []int, at int)
	dropoff(ci int, order int, at int)
}

// Engine plays an instance's day in virtual minutes. Policies read its
// state and give couriers new routes; the engine carries them out by the
// instance's rules.
type Engine struct {
	in       *Instance
	p        Params
	couriers []courier
	now      int
	open     map[int]bool // placed, not yet given to a courier
	sol      *solutionBuilder
	locked   []lockedAt // per courier, valid for minute at
	index    map[string]int
}

// orderIndex is the index of the order with id (which must exist).
func (e *Engine) orderIndex(id string) int { return e.index[id] }

type lockedAt struct {
	at, n, free int
	x, y        float64
}

// Prediction is the exact outcome of a route from a courier's current
// state, if nothing else changes, for one order watched.
type Prediction struct {
	Feasible bool // every pick-up at or before the courier's off time
	Pickup   int  // the watched order's pick-up minute (-1: not on the route)
	Dropoff  int  // the watched order's drop-off minute (-1: not on the route)
	End      int  // when the last stop is done
}

type predictor struct {
	pr    *Prediction
	watch int
}

func (p predictor) move(int, Move) {}
func (p predictor) pickup(_ int, orders []int, at int) {
	if slices.Contains(orders, p.watch) {
		p.pr.Pickup = at
	}
}
func (p predictor) dropoff(_ int, o int, at int) {
	if o == p.watch {
		p.pr.Dropoff = at
	}
}

// NewEngine returns an engine at the start of the instance's day.
func NewEngine(in *Instance) *Engine {
	e := &Engine{in: in, p: in.Params, open: map[int]bool{}, sol: newSolutionBuilder(in)}
	e.couriers = make([]courier, len(in.Couriers))
	e.locked = make([]lockedAt, len(in.Couriers))
	e.index = make(map[string]int, len(in.Orders))
	for i, o := range in.Orders {
		e.index[o.ID] = i
	}
	for i := range e.locked {
		e.locked[i].at = -1 << 62
	}
	for i := range in.Couriers {
		c := &in.Couriers[i]
		e.couriers[i] = courier{c: c, node: c.ID, x: c.X, y: c.Y, freeAt: c.On, idleSince: c.On}
	}
	return e
}

// Instance is the instance being played.
func (e *Engine) Instance() *Instance { return e.in }

// Now is the current minute.
func (e *Engine) Now() int { return e.now }

// Open returns the placed orders not yet given to a courier, in placement
// order.
func (e *Engine) Open() []int {
	out := make([]int, 0, len(e.open))
	for o := range e.open {
		out = append(out, o)
	}
	slices.SortFunc(out, func(a, b int) int {
		if d := e.in.Orders[a].Placed - e.in.Orders[b].Placed; d != 0 {
			return d
		}
		return a - b
	})
	return out
}

// OnShift reports whether courier ci can still pick up now.
func (e *Engine) OnShift(ci int) bool {
	c := e.couriers[ci].c
	return c.On <= e.now && e.now <= c.Off
}

// Route is courier ci's remaining route (shared: do not modify).
func (e *Engine) Route(ci int) []Stop { return e.couriers[ci].route }

// Idle reports whether courier ci has nothing to do.
func (e *Engine) Idle(ci int) bool {
	k := &e.couriers[ci]
	return k.phase == idle && len(k.route) == 0
}

// Locked is how much of courier ci's route can no longer change: the stop
// it is driving to (with the pick-ups of the same visit) or the visit it is
// waiting at; and where and when it will be done with them. For an idle
// courier nothing is locked: where it is and when it may leave.
func (e *Engine) Locked(ci int) (n int, x, y float64, free int) {
	k := &e.couriers[ci]
	if k.phase == idle {
		return 0, k.x, k.y, max(k.freeAt, e.now)
	}
	if l := e.locked[ci]; l.at == e.now {
		return l.n, l.x, l.y, l.free
	}
	n = 1
	if k.route[0].Kind == Pickup {
		n = e.visitLen(k.route)
	}
	cp := *k
	cp.route = slices.Clone(k.route[:n])
	e.run(-1, &cp, math.MaxInt, nopRecorder{})
	e.locked[ci] = lockedAt{at: e.now, n: n, x: cp.x, y: cp.y, free: max(cp.freeAt, e.now)}
	return n, cp.x, cp.y, max(cp.freeAt, e.now)
}

// visitLen is the number of leading pick-ups at the first stop's restaurant.
func (e *Engine) visitLen(route []Stop) int {
	r := e.in.Orders[route[0].Order].Restaurant
	n := 0
	for n < len(route) && route[n].Kind == Pickup && e.in.Orders[route[n].Order].Restaurant == r {
		n++
	}
	return n
}

// Load is the number of orders on courier ci's route (to pick up or on board).
func (e *Engine) Load(ci int) int {
	n := 0
	for _, s := range e.couriers[ci].route {
		if s.Kind == Dropoff {
			n++
		}
	}
	return n
}

// AssignedToday is how many orders courier ci was given today.
func (e *Engine) AssignedToday(ci int) int { return e.couriers[ci].assigned }

// IdleSince is when courier ci last ran out of work (meaningful when Idle).
func (e *Engine) IdleSince(ci int) int { return e.couriers[ci].idleSince }

// Position is where courier ci is or last was.
func (e *Engine) Position(ci int) (x, y float64) { return e.couriers[ci].x, e.couriers[ci].y }

// Courier is courier ci's shift.
func (e *Engine) Courier(ci int) *Courier { return e.couriers[ci].c }

// Couriers is the number of couriers.
func (e *Engine) Couriers() int { return len(e.couriers) }

// Predict plays route for courier ci from its current state to the end,
// watching order watch.
func (e *Engine) Predict(ci int, route []Stop, watch int) Prediction {
	pr := Prediction{Pickup: -1, Dropoff: -1}
	cp := e.couriers[ci]
	cp.route = route // run only reslices it
	pr.Feasible = e.run(ci, &cp, math.MaxInt, predictor{&pr, watch})
	pr.End = cp.freeAt
	return pr
}

// Assign gives courier ci a new route: its locked stops unchanged, then
// the rest. Orders new to the route are taken off the open list; orders
// whose pick-up the new route drops (taken back before the courier got to
// them) go back on it. The caller has checked the route with Predict.
func (e *Engine) Assign(ci int, route []Stop) {
	k := &e.couriers[ci]
	had := map[int]bool{}
	for _, s := range k.route {
		if s.Kind == Pickup {
			had[s.Order] = true
		}
	}
	for _, s := range route {
		if s.Kind != Pickup {
			continue
		}
		if had[s.Order] {
			delete(had, s.Order)
			continue
		}
		delete(e.open, s.Order)
		e.sol.given[s.Order] = e.now
		k.assigned++
	}
	for o := range had {
		e.open[o] = true
		delete(e.sol.given, o)
		k.assigned--
	}
	k.route = route
	e.locked[ci].at = -1 << 62 // a longer visit may end later
}

type nopRecorder struct{}

func (nopRecorder) move(int, Move)         {}
func (nopRecorder) pickup(int, []int, int) {}
func (nopRecorder) dropoff(int, int, int)  {}

// run carries out k's route as far as limit: every departure at or before
// limit, every arrival at or before it, every hand-over of a pick-up visit
// at or before it. It reports false if a pick-up would be after the
// courier's off time (the visit is then still carried out, so that a
// prediction sees the rest).
func (e *Engine) run(ci int, k *courier, limit int, rec recorder) bool {
	ok := true
	for {
		switch k.phase {
		case idle:
			if len(k.route) == 0 {
				return ok
			}
			s := k.route[0]
			o := &e.in.Orders[s.Order]
			if s.Kind == Pickup && k.node == o.Restaurant {
				k.phase, k.arrivedAt = waiting, max(k.freeAt, s.AddedAt)
				continue
			}
			dep := max(k.freeAt, s.AddedAt, k.c.On)
			if dep > limit {
				return ok
			}
			to, tx, ty := o.ID, o.X, o.Y
			if s.Kind == Pickup {
				r := e.in.Restaurants[o.Restaurant]
				to, tx, ty = r.ID, r.X, r.Y
			}
			from := k.node
			if from == k.c.ID {
				from = "0"
			}
			rec.move(ci, Move{Courier: k.c.ID, Depart: dep, From: from, To: to})
			k.phase, k.arriveAt = moving, dep+e.p.TravelMinutes(k.x, k.y, tx, ty)
			k.node, k.x, k.y = to, tx, ty
		case moving:
			if k.arriveAt > limit {
				return ok
			}
			s := k.route[0]
			if s.Kind == Pickup {
				k.phase, k.arrivedAt = waiting, k.arriveAt
				continue
			}
			before, after := split(e.p.DropoffService)
			rec.dropoff(ci, s.Order, k.arriveAt+before)
			k.route = k.route[1:]
			k.phase, k.freeAt = idle, k.arriveAt+before+after
			if len(k.route) == 0 {
				k.idleSince = k.freeAt
			}
		case waiting:
			n := e.visitLen(k.route)
			before, after := split(e.p.PickupService)
			at := k.arrivedAt + before
			for _, s := range k.route[:n] {
				at = max(at, e.in.Orders[s.Order].Ready)
			}
			if at > limit {
				return ok
			}
			if at > k.c.Off {
				ok = false
			}
			orders := make([]int, n)
			for i, s := range k.route[:n] {
				orders[i] = s.Order
			}
			rec.pickup(ci, orders, at)
			k.route = k.route[n:]
			k.phase, k.freeAt = idle, at+after
		}
	}
}

// Policy decides who carries what.
type Policy interface {
	Name() string
	// Decide is called every minute with the orders placed in that minute,
	// after the couriers have moved; the policy gives routes with Assign.
	Decide(e *Engine, placed []int)
}

// replannable reports whether some courier has a pick-up it has not
// started on (a policy may still move it).
func (e *Engine) replannable() bool {
	for ci := range e.couriers {
		rt := e.couriers[ci].route
		n, _, _, _ := e.Locked(ci)
		for _, s := range rt[n:] {
			if s.Kind == Pickup {
				return true
			}
		}
	}
	return false
}

// Run plays the whole day with policy and returns the solution.
func Run(in *Instance, policy Policy) *Solution {
	e := NewEngine(in)
	byMinute := map[int][]int{}
	start, last := math.MaxInt, 0
	for i, o := range in.Orders {
		byMinute[o.Placed] = append(byMinute[o.Placed], i)
		start, last = min(start, o.Placed), max(last, o.Placed)
	}
	lastOff := 0
	for _, c := range in.Couriers {
		start, lastOff = min(start, c.On), max(lastOff, c.Off)
	}
	if len(in.Orders) == 0 {
		return e.sol.build()
	}
	for e.now = start; e.now <= max(last, lastOff); e.now++ {
		for ci := range e.couriers {
			e.run(ci, &e.couriers[ci], e.now, e.sol)
		}
		for _, o := range byMinute[e.now] {
			e.open[o] = true
		}
		if e.now > last && len(e.open) == 0 && !e.replannable() {
			break
		}
		policy.Decide(e, byMinute[e.now])
	}
	for ci := range e.couriers {
		e.run(ci, &e.couriers[ci], math.MaxInt, e.sol)
	}
	return e.sol.build()
}

// solutionBuilder records what couriers do as solution files.
type solutionBuilder struct {
	in      *Instance
	moves   [][]Move
	bundles []bundle
	orders  map[string]Delivery
	given   map[int]int // order → minute it was given to its courier
}

type bundle struct {
	ci       int
	orders   []int
	pickupAt int
}

func newSolutionBuilder(in *Instance) *solutionBuilder {
	return &solutionBuilder{in: in, moves: make([][]Move, len(in.Couriers)), orders: map[string]Delivery{}, given: map[int]int{}}
}

func (b *solutionBuilder) move(ci int, m Move) { b.moves[ci] = append(b.moves[ci], m) }

func (b *solutionBuilder) pickup(ci int, orders []int, at int) {
	b.bundles = append(b.bundles, bundle{ci: ci, orders: orders, pickupAt: at})
}

func (b *solutionBuilder) dropoff(ci int, o int, at int) {
	id := b.in.Orders[o].ID
	d := b.orders[id]
	d.Delivered, d.DropoffAt, d.Courier = true, at, b.in.Couriers[ci].ID
	b.orders[id] = d
}

func (b *solutionBuilder) build() *Solution {
	s := &Solution{Orders: map[string]Delivery{}}
	for _, bu := range b.bundles {
		a := Assignment{PickupAt: bu.pickupAt, Courier: b.in.Couriers[bu.ci].ID}
		seq := slices.Clone(bu.orders)
		slices.SortStableFunc(seq, func(x, y int) int {
			return b.orders[b.in.Orders[x].ID].DropoffAt - b.orders[b.in.Orders[y].ID].DropoffAt
		})
		for _, o := range seq {
			ord := b.in.Orders[o]
			a.Orders = append(a.Orders, ord.ID)
			a.AssignedAt = max(a.AssignedAt, b.given[o])
			d := b.orders[ord.ID]
			d.PickupAt = bu.pickupAt
			s.Orders[ord.ID] = d
		}
		s.Assignments = append(s.Assignments, a)
	}
	for _, ms := range b.moves {
		s.Moves = append(s.Moves, ms...)
	}
	return s
}
