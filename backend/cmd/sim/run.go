package main

import (
	"container/heap"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/tawsil/tawsil/backend/internal/core"
	"github.com/tawsil/tawsil/backend/internal/dispatch"
	"github.com/tawsil/tawsil/backend/internal/failure"
	"github.com/tawsil/tawsil/backend/internal/geo"
	"github.com/tawsil/tawsil/backend/internal/order"
	"github.com/tawsil/tawsil/backend/internal/routing"
	"github.com/tawsil/tawsil/shared/wire"
)

// The simulator is a shell around the server's core (package core), as the
// delivery service is: every change of an order is a core.Step, and the
// simulator carries out the effects in a simulated world instead of a store
// and a broker. What it adds is the world: couriers riding at the eta
// model's speeds with noise, service times at stops, which attempts fail
// and why, whether a customer answers, a dispatcher who acts on flagged
// orders, and a virtual clock with the core's timers in a heap.

// dispatcherDelay is how long a flagged order waits for the simulated
// dispatcher (the console shows it; a human takes a moment).
const dispatcherDelay = 2 * time.Minute

// simCourier is one courier's state during a run.
type simCourier struct {
	id        string
	pos       dispatch.Point  // where the current leg started, or where it stands
	route     []routing.Stop  // its plan, as the server plans it (core.PlanInput, the planner)
	visits    []routing.Visit // the plan's timing (departures for the rules)
	legTotal  float64         // seconds
	legDone   float64
	inService bool
	svcLeft   float64
	waitUntil time.Time         // at route[0], waiting for a retry's "not before"
	st        core.CourierState // load, fairness count, idle since: changed only by the core's CourierStep
	km        float64
	busy      float64 // seconds riding or serving a stop
	plans     int     // routes planned for it
}

func (c *simCourier) at() dispatch.Point {
	if len(c.route) == 0 || c.inService {
		if c.inService {
			return c.route[0].Loc
		}
		return c.pos
	}
	f := 0.0
	if c.legTotal > 0 {
		f = c.legDone / c.legTotal
	}
	to := c.route[0].Loc
	return dispatch.Point{Lat: c.pos.Lat + (to.Lat-c.pos.Lat)*f, Lng: c.pos.Lng + (to.Lng-c.pos.Lng)*f}
}

// Strategy is how orders find couriers. Tawsil's is the core's own offer
// rounds over the dispatcher's ranking; the baseline bypasses them: a
// dispatcher assigns each order to the nearest idle courier.
type Strategy interface {
	Name() string
	// dispatch takes an order's Dispatch event.
	dispatch(p *pass, o *simOrder, ev core.Dispatch, now time.Time) error
	// tick runs once per step, after the bookings.
	tick(p *pass, now time.Time) error
}

// Outcome is how one order ended in a run.
type Outcome struct {
	ID       string
	Status   Status
	Attempts int      // drop-off attempts made (relay hand-overs and returns not counted)
	Rules    []string // the deciding rule of each failed attempt
	DoneAt   time.Time
	OnTime   bool // delivered or relayed within the promise
}

// Result is what a run measured.
type Result struct {
	Strategy         string
	Orders           int
	Delivered        int // to the customer or a relay point
	OnTime           int
	Returned         int
	Cancelled        int
	Relayed          int // of Delivered, at a relay point
	MedianMin        float64
	P90Min           float64
	Km               float64
	CostMAD          float64
	Utilisation      float64
	MaxWaitMin       float64 // longest wait for a first courier
	Undelivered      int     // not finished when the simulation stopped
	LateAfterFailure int     // delivered late after a failed attempt
	Flagged          int     // times an order went to the (simulated) dispatcher

	FailedAttempts  int                    // every failed attempt
	FailedOrders    int                    // orders with at least one failed attempt
	Decisions       map[failure.Action]int // the rules' decisions, by action
	ContactClosed   map[failure.Action]int // how contact windows ended (retry_later includes a reached customer)
	FailedDelivered int                    // failed orders delivered after all (relay included)
	FailedOnTime    int                    // of those, within the promise
	Replans         int                    // routes planned by the routing planner
	Outcomes        []Outcome              // per order, in booking order
}

// due is something the virtual clock will reach: a core timer, or a
// customer's reply relayed by the merchant.
type due struct {
	at    time.Time
	seq   int // ties in arming order
	timer *core.Timer
	reply string // order id
}

type dueHeap []due

func (h dueHeap) Len() int { return len(h) }
func (h dueHeap) Less(i, j int) bool {
	if !h[i].at.Equal(h[j].at) {
		return h[i].at.Before(h[j].at)
	}
	return h[i].seq < h[j].seq
}
func (h dueHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *dueHeap) Push(x any)   { *h = append(*h, x.(due)) }
func (h *dueHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// pass is one strategy's pass over the day.
type pass struct {
	ctx    context.Context
	g      *rig
	st     Strategy
	r      *rand.Rand
	orders []simOrder
	byID   map[string]*simOrder
	cs     []*simCourier
	byC    map[string]*simCourier
	dues   dueHeap
	armed  map[string]time.Time // live timers by id (a cancelled one leaves the heap stale)
	seq    int
	res    Result
}

// simulate plays the day with one strategy. The ETA model is the truth too:
// each actual leg takes the model's time times a log-normal factor. Every
// change of an order is a step of the server's core; routes are planned as
// the server plans them.
func simulate(ctx context.Context, g *rig, w world, st Strategy) (Result, error) {
	cfg := g.cfg
	p := &pass{
		ctx: ctx, g: g, st: st, r: rand.New(rand.NewPCG(cfg.Seed, 0xc0ffee)),
		orders: slices.Clone(w.orders), armed: map[string]time.Time{},
		res: Result{Strategy: st.Name(), Orders: len(w.orders), Decisions: map[failure.Action]int{}, ContactClosed: map[failure.Action]int{}},
	}
	p.byID = make(map[string]*simOrder, len(p.orders))
	for i := range p.orders {
		p.byID[p.orders[i].id] = &p.orders[i]
	}
	p.cs = make([]*simCourier, len(w.starts))
	p.byC = make(map[string]*simCourier, len(w.starts))
	for i, s := range w.starts {
		c := &simCourier{id: fmt.Sprintf("c%03d", i), pos: s}
		c.st, _ = p.g.core.CourierStep(core.CourierState{ID: c.id}, core.ShiftStarted{}, w.open)
		p.cs[i], p.byC[c.id] = c, c
	}
	next := 0
	end := w.close.Add(4 * time.Hour)
	last := w.open
	for now := w.open; now.Before(end); now = now.Add(cfg.Step) {
		if err := ctx.Err(); err != nil {
			return Result{}, err
		}
		last = now
		if err := p.fireDue(now); err != nil {
			return Result{}, err
		}
		for next < len(p.orders) && !p.orders[next].bookedAt.After(now) {
			if err := p.book(&p.orders[next]); err != nil {
				return Result{}, err
			}
			next++
		}
		if err := st.tick(p, now); err != nil {
			return Result{}, err
		}
		if err := p.dispatcher(now); err != nil {
			return Result{}, err
		}
		for _, c := range p.cs {
			if err := p.advance(c, now); err != nil {
				return Result{}, err
			}
		}
		if next == len(p.orders) && p.allDone() {
			break
		}
	}
	p.tally(w, last)
	return p.res, nil
}

// book creates the order as the server does (order.Book, then the core's
// Booked step).
func (p *pass) book(o *simOrder) error {
	cod := 0.0
	if o.cod {
		cod = 150
	}
	b, err := order.Book(order.Booking{ID: o.id, MerchantID: "m-" + o.policy, Size: order.Size(o.size), CustomerName: "Customer " + o.id,
		CustomerPhone: "+212600000000", Pickup: order.Place{Lat: o.store.Lat, Lng: o.store.Lng}, Dropoff: order.Place{Lat: o.dropoff.Lat, Lng: o.dropoff.Lng},
		CODAmountMAD: cod, Policy: order.Policy{AllowRelay: o.policy == "relay_ok"}}, o.bookedAt)
	if err != nil {
		return fmt.Errorf("book %s: %w", o.id, err)
	}
	b.PromiseBy = o.promiseBy
	o.st = core.State{Order: b}
	return p.step(o, core.Booked{}, o.bookedAt)
}

// step runs one core step of o's at now and carries out its effects.
func (p *pass) step(o *simOrder, ev core.Event, now time.Time) error {
	res, err := p.g.core.Step(o.st, ev, p.input(o, ev, now))
	if err != nil {
		return fmt.Errorf("order %s %T at %s: %w", o.id, ev, now.Format("15:04:05"), err)
	}
	if !res.Changed() {
		return nil
	}
	o.st = res.State
	if _, ok := ev.(core.FailureReport); ok {
		p.res.Decisions[res.Decision.Action]++
		o.rules = append(o.rules, res.Decision.Rule)
	}
	var follow []core.Event
	for _, e := range res.Effects {
		switch e := e.(type) {
		case core.Publish:
			if e.Task.Type == wire.TaskOffer {
				// The simulated courier answers at once: yes.
				follow = append(follow, core.Answered{Courier: e.Courier, Accept: true})
			}
		case core.ArmTimer:
			t := e.Timer
			p.armed[t.ID] = t.Due
			p.seq++
			heap.Push(&p.dues, due{at: t.Due, seq: p.seq, timer: &t})
		case core.CancelTimer:
			delete(p.armed, e.ID)
		case core.Webhook:
			if e.Name == "order.contact_customer" && p.r.Float64() < p.g.cfg.Failures.ReplyRate {
				// The merchant reaches the customer half-way through the window.
				until := o.st.Contact.Until
				p.seq++
				heap.Push(&p.dues, due{at: now.Add(until.Sub(now) / 2), seq: p.seq, reply: o.id})
			}
		case core.FlagDispatcher:
			o.flaggedAt = now
			p.res.Flagged++
		case core.Assigned:
			c := p.byC[e.Courier]
			c.st, _ = p.g.core.CourierStep(c.st, core.OrderAssigned{Order: o.id}, now)
		case core.Released:
			c := p.byC[e.Courier]
			c.st, _ = p.g.core.CourierStep(c.st, core.OrderReleased{Order: o.id}, now)
		case core.Replan:
			if err := p.replan(p.byC[e.Courier], now); err != nil {
				return err
			}
		case core.FollowUp:
			follow = append(follow, e.Event)
		}
	}
	for _, ev := range follow {
		if d, ok := ev.(core.Dispatch); ok {
			if err := p.st.dispatch(p, o, d, now); err != nil {
				return err
			}
			continue
		}
		if err := p.step(o, ev, now); err != nil {
			return err
		}
	}
	return nil
}

// input gathers what the core needs of the world for ev (core.Needs), as
// the server's delivery shell does.
func (p *pass) input(o *simOrder, ev core.Event, now time.Time) core.Input {
	in := core.Input{Now: now}
	need := p.g.core.Needs(o.st, ev)
	if need.Policy {
		in.Policy = o.policy
	}
	if need.Departs != "" {
		in.Departs = p.departsExcept(need.Departs, o.id)
	}
	if c := p.byC[need.Position]; c != nil {
		at := c.at()
		in.Courier = &at
	}
	return in
}

// candidates are the couriers near a pick-up as the server's live index
// gives them: within the search radius, nearest first, with a free place,
// their routes and fairness figures.
func (p *pass) candidates(at order.Place, now time.Time) []dispatch.Candidate {
	cfg := p.g.cfg
	near := nearest(p.cs, dispatch.Point{Lat: at.Lat, Lng: at.Lng}, cfg.Radius, cfg.K, func(c *simCourier) bool { return c.st.Load() < cfg.Capacity })
	out := make([]dispatch.Candidate, len(near))
	lookup := func(id string) *core.State {
		if o := p.byID[id]; o != nil && o.st.Order != nil {
			return &o.st
		}
		return nil
	}
	for i, c := range near {
		q := c.at()
		out[i] = core.Candidate(p.g.core.CandidateOf(c.st, core.Courier{At: q, DistanceM: geo.DistanceM(q, dispatch.Point{Lat: at.Lat, Lng: at.Lng}),
			Capacity: cfg.Capacity, Visits: c.visits}, now), lookup)
	}
	return out
}

// departsExcept lists the planned departures from a courier's stops other
// than one order's, in route order, as the server's.
func (p *pass) departsExcept(courier, orderID string) []time.Time {
	c := p.byC[courier]
	if c == nil {
		return nil
	}
	return core.DepartsExcept(c.visits, orderID)
}

// replan plans a courier's route as the server does: its orders' stops
// (core.PlanInput, the previous plan's order kept) through the planner,
// from where it is. The stop in service is finished first.
func (p *pass) replan(c *simCourier, now time.Time) error {
	c.plans++
	var mine []core.State
	for i := range p.orders {
		if o := &p.orders[i]; o.st.Order != nil && o.st.CourierID == c.id && !o.st.Status.Terminal() {
			mine = append(mine, o.st)
		}
	}
	stops := core.PlanInput(mine, c.route)
	start, t := c.at(), now
	var cur []routing.Stop
	if c.inService {
		cur = c.route[:1]
		stops = slices.DeleteFunc(stops, func(s routing.Stop) bool { return s.OrderID == cur[0].OrderID && s.Kind == cur[0].Kind })
		t = now.Add(time.Duration(c.svcLeft * float64(time.Second)))
	}
	var visits []routing.Visit
	if len(stops) > 0 {
		prob := routing.Problem{Start: start, StartTime: t, Stops: stops, Travel: modelTravel{p.g.model}}
		sol, err := p.g.planner.Plan(p.ctx, prob)
		if err != nil {
			if p.ctx.Err() != nil {
				return fmt.Errorf("plan: %w", p.ctx.Err())
			}
			if sol, err = routing.Evaluate(prob, stops); err != nil {
				return fmt.Errorf("evaluate route: %w", err)
			}
		}
		p.res.Replans++
		stops, visits = sol.Stops(), sol.Visits
	}
	if c.inService {
		c.route = append(slices.Clone(cur), stops...)
		c.visits = visits
		return nil
	}
	if len(c.route) > 0 {
		// leave the current leg where it is: account the part ridden
		here := c.at()
		c.km += geo.DistanceM(c.pos, here) * p.g.model.Config().DetourFactor / 1000
		c.pos = here
	}
	c.route, c.visits = stops, visits
	c.waitUntil = time.Time{}
	p.startLeg(c, now)
	return nil
}

func (p *pass) startLeg(c *simCourier, now time.Time) {
	c.legDone, c.legTotal = 0, 0
	if len(c.route) == 0 {
		return
	}
	to, noise := c.route[0].Loc, p.g.cfg.Noise
	pred := p.g.model.Travel(c.pos.Lat, c.pos.Lng, to.Lat, to.Lng, now).Seconds()
	c.legTotal = pred * math.Exp(p.r.NormFloat64()*noise-noise*noise/2)
}

// fireDue fires the timers and replies due by now, in time order, each at
// its own time.
func (p *pass) fireDue(now time.Time) error {
	for len(p.dues) > 0 && !p.dues[0].at.After(now) {
		d := heap.Pop(&p.dues).(due)
		if d.timer != nil {
			if at, ok := p.armed[d.timer.ID]; !ok || !at.Equal(d.at) {
				continue // cancelled or re-armed
			}
			delete(p.armed, d.timer.ID)
			o := p.byID[d.timer.OrderID]
			contact := d.timer.Kind == core.TimerContact && o.st.Contact != nil && o.st.Contact.ID == d.timer.Ref
			if err := p.step(o, core.TimerDue{Timer: *d.timer}, d.at); err != nil {
				return err
			}
			if contact && o.st.Contact == nil {
				p.res.ContactClosed[closedBy(o.st)]++
			}
			continue
		}
		o := p.byID[d.reply]
		if o.st.Contact == nil || o.st.Status != order.StatusReattemptScheduled {
			continue // attempted meanwhile
		}
		if err := p.step(o, core.CustomerReply{Reachable: true}, d.at); err != nil {
			return err
		}
		p.res.ContactClosed[failure.RetryLater]++
	}
	return nil
}

// closedBy names what the end of a contact window did to an order.
func closedBy(st core.State) failure.Action {
	switch {
	case st.Status == order.StatusReturning:
		return failure.ReturnToMerchant
	case st.Status == order.StatusCancelled:
		return failure.Cancel
	case st.Flags.NeedsDispatcher:
		return failure.DispatcherReview
	}
	return failure.RetryLater
}

// dispatcher is the simulated dispatcher: a while after an order is
// flagged it assigns a booked order to the nearest courier with a free
// place, and sends a failed attempt left for review back to the merchant.
func (p *pass) dispatcher(now time.Time) error {
	for i := range p.orders {
		o := &p.orders[i]
		if o.st.Order == nil || !o.st.Flags.NeedsDispatcher || now.Sub(o.flaggedAt) < dispatcherDelay {
			continue
		}
		actor := order.Actor{Role: order.RoleDispatcher, ID: "sim-dispatcher"}
		switch o.st.Status {
		case order.StatusBooked:
			near := nearest(p.cs, dispatch.Point{Lat: o.st.Pickup.Lat, Lng: o.st.Pickup.Lng}, math.Inf(1), 1,
				func(c *simCourier) bool { return c.st.Load() < p.g.cfg.Capacity })
			if len(near) == 0 {
				continue
			}
			if err := p.step(o, core.Assign{Actor: actor, Courier: near[0].id}, now); err != nil {
				return err
			}
		case order.StatusFailedAttempt:
			if err := p.step(o, core.Resolve{Actor: actor, Action: failure.ReturnToMerchant}, now); err != nil {
				return err
			}
		}
	}
	return nil
}

// advance moves c through one step from now: riding, waiting for a retry's
// "not before", serving stops.
func (p *pass) advance(c *simCourier, now time.Time) error {
	step := p.g.cfg.Step.Seconds()
	budget := step
	clock := func() time.Time { return now.Add(time.Duration((step - budget) * float64(time.Second))) }
	for budget > 0 && len(c.route) > 0 {
		switch {
		case c.inService:
			use := min(budget, c.svcLeft)
			c.svcLeft -= use
			budget -= use
			c.busy += use
			if c.svcLeft > 0 {
				return nil
			}
			c.inService = false
			if err := p.finish(c, clock()); err != nil {
				return err
			}
		case !c.waitUntil.IsZero():
			if left := c.waitUntil.Sub(clock()).Seconds(); left > 0 {
				use := min(budget, left)
				budget -= use
				if use < left {
					return nil
				}
			}
			c.waitUntil = time.Time{}
			p.arrive(c)
		default:
			need := c.legTotal - c.legDone
			if budget < need {
				c.legDone += budget
				c.busy += budget
				return nil
			}
			budget -= need
			c.busy += need
			to := c.route[0].Loc
			c.km += geo.DistanceM(c.pos, to) * p.g.model.Config().DetourFactor / 1000
			c.pos = to
			c.legTotal, c.legDone = 0, 0
			if e := c.route[0].Earliest; e.After(clock()) {
				c.waitUntil = e // too early for the retry: wait at the door
				continue
			}
			p.arrive(c)
		}
	}
	return nil
}

// arrive starts serving route[0].
func (p *pass) arrive(c *simCourier) {
	s := c.route[0]
	c.inService = true
	c.svcLeft = p.g.serviceOf(p.byID[s.OrderID], s.Kind).Seconds()
}

// finish completes route[0] at t: a pick-up, a return, a relay hand-over,
// or a drop-off attempt that succeeds or fails, each reported to the core
// as the courier's app reports it.
func (p *pass) finish(c *simCourier, t time.Time) error {
	s := c.route[0]
	c.pos = s.Loc
	c.route = c.route[1:]
	o := p.byID[s.OrderID]
	where := &geo.Point{Lat: s.Loc.Lat, Lng: s.Loc.Lng}
	if o.st.CourierID != c.id {
		p.startLeg(c, t) // not its order any more (reassigned, cancelled)
		return nil
	}
	var ev core.Event
	switch {
	case s.Kind == routing.Pickup && o.st.Status == order.StatusAssigned:
		ev = core.PickedUp{Courier: c.id, Where: where}
	case s.Kind == routing.Return && o.st.Status == order.StatusReturning:
		ev = core.ReturnedBack{Actor: order.Actor{Role: order.RoleCourier, ID: c.id}, Where: where}
	case s.Kind == routing.Relay && canDrop(o.st.Status):
		ev = core.Delivered{Courier: c.id, Where: where}
	case s.Kind == routing.Dropoff && canDrop(o.st.Status):
		svc := p.g.serviceOf(o, s.Kind)
		o.attempts++
		if o.attempts <= o.failures {
			ev = core.FailureReport{Courier: c.id, Where: where, Reason: o.reason, Note: "sim",
				Evidence: failure.Evidence{Fixes: p.atDoor(s.Loc, t, svc), CallAttempts: 3}}
		} else {
			ev = core.Delivered{Courier: c.id, Where: where, CashMAD: o.st.CODAmountMAD}
		}
	default:
		p.startLeg(c, t)
		return nil
	}
	plans := c.plans
	if err := p.step(o, ev, t); err != nil {
		return err
	}
	if c.plans == plans { // not re-planned: ride on
		p.startLeg(c, t)
	}
	return nil
}

func canDrop(s order.Status) bool {
	return s == order.StatusPickedUp || s == order.StatusReattemptScheduled
}

// atDoor is the evidence of a courier who stood at loc during the service
// before t: a fix every 20 s, 10 m accuracy.
func (p *pass) atDoor(loc routing.Point, t time.Time, service time.Duration) []wire.Fix {
	var fixes []wire.Fix
	for at, i := t.Add(-service), 0; !at.After(t); at, i = at.Add(20*time.Second), i+1 {
		fixes = append(fixes, wire.Fix{Epoch: 1, Seq: uint64(i + 1), Time: at, Lat: loc.Lat, Lng: loc.Lng, Accuracy: 10})
	}
	return fixes
}

func (p *pass) allDone() bool {
	for _, c := range p.cs {
		if len(c.route) > 0 {
			return false
		}
	}
	for i := range p.orders {
		if s := p.orders[i].st; s.Order == nil || !s.Status.Terminal() {
			return false
		}
	}
	return true
}

// tally fills the result from the orders and couriers.
func (p *pass) tally(w world, last time.Time) {
	res := &p.res
	var mins []float64
	var maxWait time.Duration
	for i := range p.orders {
		o := &p.orders[i]
		failed := len(o.rules)
		res.FailedAttempts += failed
		status, doneAt := Unfinished, time.Time{}
		if o.st.Order != nil {
			m := o.st.Milestones
			switch o.st.Status {
			case order.StatusDelivered:
				status, doneAt = Delivered, m.DeliveredAt
				if o.st.Relay {
					status = Relayed
				}
			case order.StatusReturned:
				status, doneAt = Returned, m.ReturnedAt
			case order.StatusCancelled:
				status, doneAt = Cancelled, m.CancelledAt
			}
			if a := m.AssignedAt; !a.IsZero() {
				maxWait = max(maxWait, a.Sub(o.bookedAt))
			}
		}
		out := Outcome{ID: o.id, Status: status, Attempts: o.attempts, Rules: o.rules, DoneAt: doneAt}
		switch status {
		case Delivered, Relayed:
			res.Delivered++
			if status == Relayed {
				res.Relayed++
			}
			out.OnTime = !doneAt.After(o.promiseBy)
			if out.OnTime {
				res.OnTime++
			} else if failed > 0 {
				res.LateAfterFailure++
			}
			if failed > 0 {
				res.FailedDelivered++
				if out.OnTime {
					res.FailedOnTime++
				}
			}
			mins = append(mins, doneAt.Sub(o.bookedAt).Minutes())
		case Returned:
			res.Returned++
		case Cancelled:
			res.Cancelled++
		default:
			res.Undelivered++
		}
		if failed > 0 {
			res.FailedOrders++
		}
		res.Outcomes = append(res.Outcomes, out)
	}
	res.MaxWaitMin = maxWait.Minutes()
	slices.Sort(mins)
	if len(mins) > 0 {
		res.MedianMin = mins[len(mins)/2]
		res.P90Min = mins[len(mins)*9/10]
	}
	var busy float64
	for _, c := range p.cs {
		res.Km += c.km
		busy += c.busy
	}
	// Couriers are paid from opening until the last of them is done, at
	// least one hour past the last booking.
	shiftEnd := w.close.Add(time.Hour)
	if l := last.Add(p.g.cfg.Step); l.After(shiftEnd) {
		shiftEnd = l
	}
	shift := shiftEnd.Sub(w.open).Hours()
	res.CostMAD = float64(len(p.cs))*shift*p.g.cfg.CostPerHour + res.Km*p.g.cfg.CostPerKm
	res.Utilisation = busy / 3600 / (float64(len(p.cs)) * shift)
}

// nearest returns up to k couriers within radius of p, nearest first.
func nearest(cs []*simCourier, p dispatch.Point, radius float64, k int, keep func(*simCourier) bool) []*simCourier {
	type cd struct {
		c *simCourier
		d float64
	}
	var out []cd
	for _, c := range cs {
		if !keep(c) {
			continue
		}
		if d := geo.DistanceM(p, c.at()); d <= radius {
			out = append(out, cd{c, d})
		}
	}
	slices.SortFunc(out, func(a, b cd) int {
		if a.d != b.d {
			if a.d < b.d {
				return -1
			}
			return 1
		}
		if a.c.id < b.c.id {
			return -1
		}
		return 1
	})
	res := make([]*simCourier, 0, min(k, len(out)))
	for i := 0; i < len(out) && i < k; i++ {
		res = append(res, out[i].c)
	}
	return res
}

// tawsil is Tawsil's dispatch, as the server runs it: a dispatch epoch
// every step (core.Core.Decide over the orders waiting and the couriers
// near their pick-ups, as the live index gives them), each decision
// stepped into its order's core as an offer (core.Decided); an order
// nobody can take goes to the (simulated) dispatcher.
type tawsil struct{}

func (tawsil) Name() string { return "tawsil dispatch" }

func (tawsil) dispatch(p *pass, o *simOrder, ev core.Dispatch, now time.Time) error {
	return p.step(o, ev, now)
}

func (tawsil) tick(p *pass, now time.Time) error {
	var waiting []core.State
	seenAt := map[order.Place]bool{}
	seen := map[string]bool{}
	var cands []dispatch.Candidate
	for i := range p.orders {
		o := &p.orders[i]
		if o.st.Order == nil || !core.Awaiting(o.st) {
			continue
		}
		waiting = append(waiting, o.st)
		at := order.Place{Lat: o.st.Pickup.Lat, Lng: o.st.Pickup.Lng}
		if seenAt[at] {
			continue
		}
		seenAt[at] = true
		for _, c := range p.candidates(at, now) {
			if !seen[c.CourierID] {
				seen[c.CourierID] = true
				cands = append(cands, c)
			}
		}
	}
	if len(waiting) == 0 {
		return nil
	}
	decided, unplaced := p.g.core.Decide(waiting, cands, now, nil)
	for _, d := range decided {
		if err := p.step(p.byID[d.Order], core.Decided{Courier: d.Courier}, now); err != nil {
			return err
		}
	}
	for _, id := range unplaced {
		if err := p.step(p.byID[id], core.Unplaced{}, now); err != nil {
			return err
		}
	}
	return nil
}

// nearestIdle is the baseline: no offer rounds; a dispatcher assigns each
// order, oldest first, to the nearest courier with nothing to do. A courier
// whose only stops are retries it may not attempt yet counts as having
// nothing to do.
type nearestIdle struct{}

func (nearestIdle) Name() string { return "nearest idle (baseline)" }

func (nearestIdle) dispatch(p *pass, o *simOrder, ev core.Dispatch, now time.Time) error {
	return p.step(o, ev, now) // the core records whom not to offer it to
}

func (nearestIdle) tick(p *pass, now time.Time) error {
	for i := range p.orders {
		o := &p.orders[i]
		if o.st.Order == nil || !core.Awaiting(o.st) {
			continue
		}
		free := func(c *simCourier) bool {
			if o.st.Round != nil && slices.Contains(o.st.Round.Ranked, c.id) || c.inService {
				return false
			}
			for _, s := range c.route {
				if s.Kind != routing.Dropoff || !s.Earliest.After(now) {
					return false
				}
			}
			return true
		}
		near := nearest(p.cs, dispatch.Point{Lat: o.st.Pickup.Lat, Lng: o.st.Pickup.Lng}, math.Inf(1), 1, free)
		if len(near) == 0 {
			continue
		}
		if err := p.step(o, core.Assign{Actor: order.Actor{Role: order.RoleDispatcher, ID: "sim-dispatcher"}, Courier: near[0].id}, now); err != nil {
			return err
		}
	}
	return nil
}
