package main

import (
	"context"
	"errors"
	"fmt"
	"github.com/tawsil/tawsil/backend/internal/geo"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/tawsil/tawsil/backend/internal/area"
	"github.com/tawsil/tawsil/backend/internal/core"
	"github.com/tawsil/tawsil/backend/internal/dispatch"
	"github.com/tawsil/tawsil/backend/internal/failure"
	"github.com/tawsil/tawsil/backend/internal/routing"
)

// errConfig marks an unusable simulation setting.
var errConfig = errors.New("invalid simulation config")

// Config describes one simulated day.
type Config struct {
	Seed        uint64
	Orders      int
	Couriers    int
	Stores      int
	FailRate    float64 // share of orders whose first drop-off attempt fails
	CostPerHour float64 // MAD per courier shift hour
	CostPerKm   float64 // MAD per km ridden
	Step        time.Duration
	Noise       float64 // sd of the log of actual/predicted leg time
	Radius      float64 // candidate search radius, metres
	K           int     // candidates per decision
	Capacity    int
	Failures    FailureProfile
}

// DefaultConfig is a busy Casablanca day.
func DefaultConfig() Config {
	return Config{
		Seed: 1, Orders: 4000, Couriers: 220, Stores: 35, FailRate: 0.07,
		CostPerHour: core.DefaultCosts().PerHourMAD, CostPerKm: core.DefaultCosts().PerKmMAD, Step: 30 * time.Second, Noise: 0.2,
		Radius: 8000, K: 50, Capacity: 3, Failures: DefaultFailureProfile(),
	}
}

// Validate reports the first unusable setting.
func (c Config) Validate() error {
	switch {
	case c.Orders < 1 || c.Couriers < 1 || c.Stores < 1:
		return fmt.Errorf("%w: orders, couriers and stores must be positive", errConfig)
	case !(c.FailRate >= 0 && c.FailRate <= 1):
		return fmt.Errorf("%w: fail rate %v not in 0..1", errConfig, c.FailRate)
	case c.Step <= 0 || c.K < 1 || c.Capacity < 1 || !(c.Radius > 0) || !(c.Noise >= 0):
		return fmt.Errorf("%w: step, k, capacity, radius must be positive and noise >= 0", errConfig)
	}
	return c.Failures.Validate()
}

// simOrder is a booking of the day. The fields up to size are drawn once and
// are identical for every strategy; the rest is one run's state.
type simOrder struct {
	id        string
	bookedAt  time.Time
	store     dispatch.Point // where the parcel comes from (returns go back there)
	dropoff   dispatch.Point
	promiseBy time.Time
	failures  int            // attempts that fail before one succeeds (0: the first succeeds)
	reason    failure.Reason // why its attempts fail
	policy    string         // the merchant's policy
	cod       bool           // cash on delivery
	size      string         // S, M or L

	pickup     dispatch.Point // the store, or the hand-over point after a reassignment
	terminal   routing.Kind   // Dropoff, or Relay / Return after a decision
	notBefore  time.Time      // a retry's earliest attempt
	window     *core.Window   // an open contact_customer reply window
	replied    bool           // the customer is reached in that window (drawn at the failure)
	exclude    string         // the courier that handed the order back (reassign)
	attempts   int            // drop-off attempts made
	rules      []string       // the rule of each failed attempt's decision
	assignedAt time.Time
	doneAt     time.Time
	status     Status
}

// Status is how an order ended.
type Status string

// Order outcomes.
const (
	Unfinished Status = "unfinished" // still open when the simulation stopped
	Delivered  Status = "delivered"  // handed to the customer
	Relayed    Status = "relayed"    // left at a relay point (the backend counts it delivered)
	Returned   Status = "returned"   // back at the merchant
	Cancelled  Status = "cancelled"
)

// world is the generated day: stores, bookings, courier starts.
type world struct {
	orders []simOrder
	starts []dispatch.Point
	open   time.Time // shift start
	close  time.Time // last booking
}

// generate builds a day of Casablanca orders: stores with Zipf-like
// popularity, drop-offs 0.5–5 km from their store inside the city, bookings
// over 09:00–23:00 with lunch and evening peaks. Merchant policies, payment,
// parcel sizes and failed attempts come from cfg.Failures, drawn from a
// stream of their own.
func generate(cfg Config, areas *area.Areas, loc *time.Location) (world, error) {
	r := rand.New(rand.NewPCG(cfg.Seed, 0x7a5))
	rf := rand.New(rand.NewPCG(cfg.Seed, 0xfa11))
	inCity := func(p dispatch.Point) bool {
		c, ok := areas.Locate(p.Lat, p.Lng)
		return ok && c == "casablanca"
	}
	// Casablanca's bounding box.
	sample := func() (dispatch.Point, error) {
		for range 10_000 {
			p := dispatch.Point{Lat: 33.485 + r.Float64()*0.17, Lng: -7.76 + r.Float64()*0.33}
			if inCity(p) {
				return p, nil
			}
		}
		return dispatch.Point{}, fmt.Errorf("no point inside casablanca")
	}
	stores := make([]dispatch.Point, cfg.Stores)
	policies := make([]string, cfg.Stores)
	weights := make([]float64, cfg.Stores)
	var wsum float64
	for i := range stores {
		p, err := sample()
		if err != nil {
			return world{}, err
		}
		stores[i] = p
		policies[i] = draw(rf, cfg.Failures.Policies, nil)
		weights[i] = 1 / math.Pow(float64(i+1), 0.8)
		wsum += weights[i]
	}
	day := time.Date(2026, 5, 6, 0, 0, 0, 0, loc)
	w := world{open: day.Add(9 * time.Hour), close: day.Add(23 * time.Hour)}
	curve := func(h float64) float64 {
		return 0.25 + 1.0*math.Exp(-sq(h-13)/(2*sq(1.0))) + 1.4*math.Exp(-sq(h-20.5)/(2*sq(1.2)))
	}
	for i := range cfg.Orders {
		var h float64
		for {
			h = 9 + r.Float64()*14
			if r.Float64()*2.7 < curve(h) {
				break
			}
		}
		x := r.Float64() * wsum
		s := 0
		for ; s < len(stores)-1 && x > weights[s]; s++ {
			x -= weights[s]
		}
		var drop dispatch.Point
		for {
			d := 500 + r.Float64()*4500
			a := r.Float64() * 2 * math.Pi
			drop = offset(stores[s], d*math.Cos(a), d*math.Sin(a))
			if inCity(drop) {
				break
			}
		}
		booked := day.Add(time.Duration(h * float64(time.Hour))).Truncate(time.Second)
		o := simOrder{
			id: fmt.Sprintf("o%05d", i), bookedAt: booked, store: stores[s], dropoff: drop,
			promiseBy: booked.Add(time.Hour), policy: policies[s],
		}
		cfg.Failures.drawFailures(rf, &o, cfg.FailRate)
		w.orders = append(w.orders, o)
	}
	slices.SortFunc(w.orders, func(a, b simOrder) int { return a.bookedAt.Compare(b.bookedAt) })
	for range cfg.Couriers {
		// couriers start near the stores they will mostly serve
		s := stores[r.IntN(len(stores))]
		w.starts = append(w.starts, offset(s, r.NormFloat64()*800, r.NormFloat64()*800))
	}
	return w, nil
}

func sq(x float64) float64 { return x * x }

func offset(p dispatch.Point, north, east float64) dispatch.Point {
	const m = 111_195.0
	return dispatch.Point{Lat: p.Lat + north/m, Lng: p.Lng + east/(m*math.Cos(p.Lat*math.Pi/180))}
}

// simCourier is one courier's state during a run.
type simCourier struct {
	id        string
	pos       dispatch.Point // where the current leg started, or where it stands
	route     []dispatch.Stop
	legTotal  float64 // seconds
	legDone   float64
	inService bool
	svcLeft   float64
	waitUntil time.Time // at route[0], waiting for a retry's "not before"
	load      int
	assigned  int
	idleSince time.Time
	km        float64
	busy      float64 // seconds riding or serving a stop
}

func (c *simCourier) at() dispatch.Point {
	if len(c.route) == 0 || c.inService {
		if c.inService {
			return c.route[0].At
		}
		return c.pos
	}
	f := 0.0
	if c.legTotal > 0 {
		f = c.legDone / c.legTotal
	}
	to := c.route[0].At
	return dispatch.Point{Lat: c.pos.Lat + (to.Lat-c.pos.Lat)*f, Lng: c.pos.Lng + (to.Lng-c.pos.Lng)*f}
}

// Strategy picks a courier and plan for an order, or reports none. Orders
// of the route's stops are in byID.
type Strategy interface {
	Name() string
	Assign(o *simOrder, cs []*simCourier, now time.Time, byID map[string]*simOrder) (c *simCourier, plan []dispatch.Stop, ok bool)
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

	FailedAttempts  int                    // every failed attempt
	FailedOrders    int                    // orders with at least one failed attempt
	Decisions       map[failure.Action]int // the rules' decisions, by action
	ContactClosed   map[failure.Action]int // how contact windows ended (retry_later includes a reached customer)
	FailedDelivered int                    // failed orders delivered after all (relay included)
	FailedOnTime    int                    // of those, within the promise
	Replans         int                    // routes re-planned by the routing planner
	Outcomes        []Outcome              // per order, in booking order
}

// pass is one strategy's pass over the day.
type pass struct {
	g       *rig
	st      Strategy
	r       *rand.Rand
	orders  []simOrder
	byID    map[string]*simOrder
	cs      []*simCourier
	pending []*simOrder
	windows []simWindow // open contact windows
	res     Result
}

// simulate plays the day with one strategy. The ETA model is the truth too:
// each actual leg takes the model's time times a log-normal factor. Failed
// attempts are decided by the real rules engine and executed as the
// backend does (see fail.go there); routes holding a retry, a relay
// hand-over or a return are re-planned by the real planner.
func simulate(ctx context.Context, g *rig, w world, st Strategy) (Result, error) {
	cfg := g.cfg
	rn := &pass{
		g: g, st: st, r: rand.New(rand.NewPCG(cfg.Seed, 0xc0ffee)),
		orders: slices.Clone(w.orders),
		res:    Result{Strategy: st.Name(), Orders: len(w.orders), Decisions: map[failure.Action]int{}, ContactClosed: map[failure.Action]int{}},
	}
	rn.byID = make(map[string]*simOrder, len(rn.orders))
	for i := range rn.orders {
		o := &rn.orders[i]
		o.pickup, o.terminal, o.status = o.store, routing.Dropoff, Unfinished
		rn.byID[o.id] = o
	}
	rn.cs = make([]*simCourier, len(w.starts))
	for i, p := range w.starts {
		rn.cs[i] = &simCourier{id: fmt.Sprintf("c%03d", i), pos: p, idleSince: w.open}
	}
	next := 0
	end := w.close.Add(4 * time.Hour)
	var maxWait time.Duration
	last := w.open
	for now := w.open; now.Before(end); now = now.Add(cfg.Step) {
		if err := ctx.Err(); err != nil {
			return Result{}, err
		}
		last = now
		if err := rn.closeDueWindows(ctx, now); err != nil {
			return Result{}, err
		}
		for next < len(rn.orders) && !rn.orders[next].bookedAt.After(now) {
			rn.pending = append(rn.pending, &rn.orders[next])
			next++
		}
		queue := rn.pending
		rn.pending = nil
		for _, o := range queue {
			c, plan, ok := st.Assign(o, rn.cs, now, rn.byID)
			if !ok {
				rn.pending = append(rn.pending, o)
				continue
			}
			if o.assignedAt.IsZero() {
				o.assignedAt = now
				maxWait = max(maxWait, now.Sub(o.bookedAt))
			}
			o.exclude = ""
			c.load++
			c.assigned++
			if err := rn.setRoute(ctx, c, plan, now); err != nil {
				return Result{}, fmt.Errorf("assign %s: %w", o.id, errors.Join(err, ctx.Err()))
			}
		}
		for _, c := range rn.cs {
			if err := rn.advance(ctx, c, now); err != nil {
				return Result{}, err
			}
		}
		if next == len(rn.orders) && len(rn.pending) == 0 && allIdle(rn.cs) {
			break
		}
	}
	rn.res.MaxWaitMin = maxWait.Minutes()
	rn.tally(w, last)
	return rn.res, nil
}

// afterFailure reports whether a route has stops shaped by a failed
// attempt (a retry, a relay hand-over, a return): those routes are ordered
// by the planner, which knows "not before" times; others keep dispatch's plan.
func afterFailure(route []dispatch.Stop, byID map[string]*simOrder) bool {
	for _, s := range route {
		if o := byID[s.OrderID]; s.Kind == dispatch.StopDropoff && (o.terminal != routing.Dropoff || o.attempts > 0) {
			return true
		}
	}
	return false
}

// setRoute gives c a new plan at now. The stop in service is finished
// first; a courier mid-leg re-starts from where it is.
func (rn *pass) setRoute(ctx context.Context, c *simCourier, plan []dispatch.Stop, now time.Time) error {
	if afterFailure(plan, rn.byID) {
		start, t, rest := c.at(), now, plan
		var cur []dispatch.Stop
		if c.inService {
			cur = c.route[:1]
			rest = slices.DeleteFunc(slices.Clone(plan), func(s dispatch.Stop) bool { return s == cur[0] })
			t = now.Add(time.Duration(c.svcLeft * float64(time.Second)))
		}
		planned, err := rn.g.plan(ctx, start, t, rest, rn.byID)
		if err != nil {
			return err
		}
		rn.res.Replans++
		plan = append(slices.Clone(cur), planned...)
	}
	if c.inService {
		// finish the stop in hand first
		cur := c.route[0]
		rest := make([]dispatch.Stop, 0, len(plan))
		for _, s := range plan {
			if s != cur {
				rest = append(rest, s)
			}
		}
		c.route = append([]dispatch.Stop{cur}, rest...)
		return nil
	}
	if len(c.route) > 0 {
		// leave the current leg where it is: account the part ridden
		here := c.at()
		c.km += geo.DistanceLatLngM(c.pos.Lat, c.pos.Lng, here.Lat, here.Lng) * rn.g.model.Config().DetourFactor / 1000
		c.pos = here
	}
	c.waitUntil = time.Time{}
	c.route = plan
	rn.startLeg(c, now)
	return nil
}

func (rn *pass) startLeg(c *simCourier, now time.Time) {
	c.legDone, c.legTotal = 0, 0
	if len(c.route) == 0 {
		return
	}
	to, noise := c.route[0].At, rn.g.cfg.Noise
	pred := rn.g.model.Travel(c.pos.Lat, c.pos.Lng, to.Lat, to.Lng, now).Seconds()
	c.legTotal = pred * math.Exp(rn.r.NormFloat64()*noise-noise*noise/2)
}

// advance moves c through one step from now: riding, waiting for a retry's
// "not before", serving stops.
func (rn *pass) advance(ctx context.Context, c *simCourier, now time.Time) error {
	step := rn.g.cfg.Step.Seconds()
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
			if err := rn.finish(ctx, c, clock()); err != nil {
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
			if o := rn.byID[c.route[0].OrderID]; o.window != nil {
				// waited at the door for the window's end: it decides now
				if err := rn.closeWindow(ctx, c, o, clock()); err != nil {
					return err
				}
				continue
			}
			rn.arrive(c)
		default:
			need := c.legTotal - c.legDone
			if budget < need {
				c.legDone += budget
				c.busy += budget
				return nil
			}
			budget -= need
			c.busy += need
			to := c.route[0].At
			c.km += geo.DistanceLatLngM(c.pos.Lat, c.pos.Lng, to.Lat, to.Lng) * rn.g.model.Config().DetourFactor / 1000
			c.pos = to
			c.legTotal, c.legDone = 0, 0
			if o := rn.byID[c.route[0].OrderID]; c.route[0].Kind == dispatch.StopDropoff && o.terminal == routing.Dropoff && o.notBefore.After(clock()) {
				c.waitUntil = o.notBefore // too early for the retry: wait at the door (or take other work)
				continue
			}
			rn.arrive(c)
		}
	}
	return nil
}

// arrive starts serving route[0].
func (rn *pass) arrive(c *simCourier) {
	s := c.route[0]
	c.inService = true
	c.svcLeft = rn.g.serviceOf(rn.byID[s.OrderID], s.Kind).Seconds()
}

// finish completes route[0] at t: a pick-up, a return, a relay hand-over,
// or a drop-off attempt that succeeds or fails.
func (rn *pass) finish(ctx context.Context, c *simCourier, t time.Time) error {
	s := c.route[0]
	c.pos = s.At
	c.route = c.route[1:]
	if s.Kind == dispatch.StopDropoff {
		o := rn.byID[s.OrderID]
		switch {
		case o.terminal == routing.Return:
			o.status, o.doneAt = Returned, t
			c.load--
		case o.terminal == routing.Relay:
			o.status, o.doneAt = Relayed, t
			c.load--
		case o.attempts < o.failures:
			o.attempts++
			if err := rn.fail(ctx, c, o, s, t); err != nil {
				return err
			}
		default:
			o.attempts++
			o.status, o.doneAt = Delivered, t
			c.load--
		}
	}
	if len(c.route) == 0 {
		c.idleSince = t
	}
	rn.startLeg(c, t)
	return nil
}

// fail decides a failed attempt with the rules and executes the decision
// as the backend's delivery service does: retry later or after contacting
// the customer (the drop-off gets a "not before"), hand over at a relay
// point (when the merchant allows it and one is open; else return), return
// to the merchant, reassign (the order goes back to dispatch, picked up
// where this courier stands), or cancel. The courier's route is then
// re-planned by the planner, the previous order as input.
func (rn *pass) fail(ctx context.Context, c *simCourier, o *simOrder, s dispatch.Stop, t time.Time) error {
	dec := rn.g.rules.Decide(failure.Situation{
		Reason: o.reason, Attempt: o.attempts, MinutesLeft: o.promiseBy.Sub(t).Minutes(),
		MerchantPolicy: o.policy, COD: o.cod, ParcelSize: o.size,
		Verified: true, // the simulated courier really is at the door
	})
	rn.res.Decisions[dec.Action]++
	o.rules = append(o.rules, dec.Rule)
	action := dec.Action
	if action == failure.DispatcherReview {
		// Only malformed situations get here (attempts are verified); a
		// dispatcher would bring the parcel back.
		rn.g.log.Warn("dispatcher review in simulation", "order_id", o.id, "rule", dec.Rule)
		action = failure.ReturnToMerchant
	}
	stop := dispatch.Stop{OrderID: o.id, Kind: dispatch.StopDropoff, At: o.dropoff, PromiseBy: o.promiseBy, Origin: o.pickup}
	departs, err := rn.g.departures(s.At, t, c.route, rn.byID)
	if err != nil {
		return err
	}
	// The effect of the decision is the server's (package core).
	eff := core.AfterFailure(failure.Decision{Action: action, Rule: dec.Rule, Params: dec.Params}, core.Situation{Now: t.In(rn.g.loc),
		Dropoff: o.dropoff, AllowRelay: o.policy == "relay_ok", Relays: rn.g.relays, Departs: departs})
	switch eff.Action {
	case failure.RetryLater:
		o.notBefore = eff.NotBefore
	case failure.ContactCustomer:
		// The parcel stays on board for the reply window (the drop-off is
		// not due before its end); the window's end decides (closeWindow).
		o.notBefore, o.window = eff.NotBefore, eff.Window
		o.replied = rn.r.Float64() < rn.g.cfg.Failures.ReplyRate
		rn.windows = append(rn.windows, simWindow{o: o, c: c})
	case failure.RelayPoint:
		o.terminal = routing.Relay
		stop.At = dispatch.Point{Lat: eff.Relay.Lat, Lng: eff.Relay.Lng}
	case failure.ReturnToMerchant:
		o.terminal, stop.At, stop.PromiseBy = routing.Return, o.store, time.Time{}
	case failure.Reassign:
		c.load--
		o.pickup, o.exclude, o.notBefore = s.At, c.id, time.Time{}
		rn.pending = append(rn.pending, o)
		return nil
	case failure.Cancel:
		c.load--
		o.status, o.doneAt = Cancelled, t
		return nil
	default:
		return fmt.Errorf("order %s: unknown rule action %q", o.id, eff.Action)
	}
	// The failed stop was first: it stays first in the planner's input.
	route, err := rn.g.plan(ctx, s.At, t, append([]dispatch.Stop{stop}, c.route...), rn.byID)
	if err != nil {
		return err
	}
	rn.res.Replans++
	c.route = route
	return nil
}

// simWindow is an open contact window: the order and the courier holding it.
type simWindow struct {
	o *simOrder
	c *simCourier
}

// closeDueWindows closes the contact windows ended by now.
func (rn *pass) closeDueWindows(ctx context.Context, now time.Time) error {
	open := rn.windows[:0]
	for _, w := range rn.windows {
		if w.o.window == nil {
			continue
		}
		if w.o.window.Until.After(now) {
			open = append(open, w)
			continue
		}
		if err := rn.closeWindow(ctx, w.c, w.o, now); err != nil {
			return err
		}
	}
	rn.windows = open
	return nil
}

// closeWindow ends o's contact window at t as the server does
// (core.CloseContact): a reached customer makes the retry due at once;
// otherwise the rule's then applies. The courier's route is re-planned.
func (rn *pass) closeWindow(ctx context.Context, c *simCourier, o *simOrder, t time.Time) error {
	w := *o.window
	o.window = nil
	how := core.NoReply
	if o.replied {
		how = core.Reachable
	}
	i := slices.IndexFunc(c.route, func(s dispatch.Stop) bool { return s.OrderID == o.id && s.Kind == dispatch.StopDropoff })
	if i < 0 || o.status != Unfinished || (i == 0 && c.inService) {
		return nil // attempted meanwhile
	}
	var others []dispatch.Stop
	for j, s := range c.route {
		if j != i {
			others = append(others, s)
		}
	}
	departs, err := rn.g.departures(c.at(), t, others, rn.byID)
	if err != nil {
		return err
	}
	eff := core.CloseContact(w, how, t, departs)
	rn.res.ContactClosed[eff.Action]++
	route := slices.Clone(c.route)
	switch eff.Action {
	case failure.RetryLater:
		o.notBefore = eff.NotBefore
	case failure.Cancel:
		route = slices.Delete(route, i, i+1)
		c.load--
		o.status, o.doneAt, o.notBefore = Cancelled, t, time.Time{}
	default: // return_to_merchant, or a dispatcher's decision: the sim's dispatcher brings it back
		o.terminal, o.notBefore = routing.Return, time.Time{}
		route[i].At, route[i].PromiseBy = o.store, time.Time{}
	}
	return rn.setRoute(ctx, c, route, t)
}

// tally fills the result from the orders and couriers.
func (rn *pass) tally(w world, last time.Time) {
	res := &rn.res
	var mins []float64
	for i := range rn.orders {
		o := &rn.orders[i]
		failed := len(o.rules)
		res.FailedAttempts += failed
		out := Outcome{ID: o.id, Status: o.status, Attempts: o.attempts, Rules: o.rules, DoneAt: o.doneAt}
		switch o.status {
		case Delivered, Relayed:
			res.Delivered++
			if o.status == Relayed {
				res.Relayed++
			}
			out.OnTime = !o.doneAt.After(o.promiseBy)
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
			mins = append(mins, o.doneAt.Sub(o.bookedAt).Minutes())
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
	slices.Sort(mins)
	if len(mins) > 0 {
		res.MedianMin = mins[len(mins)/2]
		res.P90Min = mins[len(mins)*9/10]
	}
	var busy float64
	for _, c := range rn.cs {
		res.Km += c.km
		busy += c.busy
	}
	// Couriers are paid from opening until the last of them is done, at
	// least one hour past the last booking.
	shiftEnd := w.close.Add(time.Hour)
	if l := last.Add(rn.g.cfg.Step); l.After(shiftEnd) {
		shiftEnd = l
	}
	shift := shiftEnd.Sub(w.open).Hours()
	res.CostMAD = float64(len(rn.cs))*shift*rn.g.cfg.CostPerHour + res.Km*rn.g.cfg.CostPerKm
	res.Utilisation = busy / 3600 / (float64(len(rn.cs)) * shift)
}

func allIdle(cs []*simCourier) bool {
	for _, c := range cs {
		if len(c.route) > 0 {
			return false
		}
	}
	return true
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
		q := c.at()
		if d := geo.DistanceLatLngM(p.Lat, p.Lng, q.Lat, q.Lng); d <= radius {
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

// jobStops are an order's pick-up and drop-off.
func jobStops(o *simOrder) []dispatch.Stop {
	return []dispatch.Stop{
		{OrderID: o.id, Kind: dispatch.StopPickup, At: o.pickup, Origin: o.pickup},
		{OrderID: o.id, Kind: dispatch.StopDropoff, At: o.dropoff, PromiseBy: o.promiseBy, Origin: o.pickup},
	}
}

// nearestIdle is the baseline: the nearest courier with nothing to do
// takes the order, pick-up then drop-off. A courier whose only stops are
// retries it may not attempt yet counts as having nothing to do; the new
// order joins them and the planner orders the route.
type nearestIdle struct{}

func (nearestIdle) Name() string { return "nearest idle (baseline)" }

func (nearestIdle) Assign(o *simOrder, cs []*simCourier, now time.Time, byID map[string]*simOrder) (*simCourier, []dispatch.Stop, bool) {
	free := func(c *simCourier) bool {
		if c.id == o.exclude || c.inService {
			return false
		}
		for _, s := range c.route {
			if r := byID[s.OrderID]; s.Kind != dispatch.StopDropoff || r.terminal != routing.Dropoff || !r.notBefore.After(now) {
				return false
			}
		}
		return true
	}
	near := nearest(cs, o.pickup, math.Inf(1), 1, free)
	if len(near) == 0 {
		return nil, nil, false
	}
	c := near[0]
	return c, append(slices.Clone(c.route), jobStops(o)...), true
}

// scored is Tawsil's dispatch: candidates from a radius search scored by
// dispatch.Score. When nobody can keep the promise, the order waits a
// little (a courier may free up), then goes to the best courier with the
// promise relaxed: late but on its way.
type scored struct {
	cfg  Config
	d    *dispatch.Dispatcher
	wait time.Duration
}

func (scored) Name() string { return "tawsil dispatch" }

func (s scored) Assign(o *simOrder, cs []*simCourier, now time.Time, _ map[string]*simOrder) (*simCourier, []dispatch.Stop, bool) {
	near := nearest(cs, o.pickup, s.cfg.Radius, s.cfg.K, func(c *simCourier) bool { return c.load < s.cfg.Capacity && c.id != o.exclude })
	if len(near) == 0 {
		return nil, nil, false
	}
	cands := make([]dispatch.Candidate, len(near))
	for i, c := range near {
		p := c.at()
		cands[i] = dispatch.Candidate{
			CourierID: c.id, Lat: p.Lat, Lng: p.Lng, Load: c.load, Capacity: s.cfg.Capacity,
			Route: c.route, AssignedToday: c.assigned,
		}
		if len(c.route) == 0 {
			cands[i].IdleSince = c.idleSince
		}
	}
	job := dispatch.Job{OrderID: o.id, Pickup: o.pickup, Dropoff: o.dropoff, PromiseBy: o.promiseBy}
	ranked, _ := s.d.Score(job, cands, now)
	if len(ranked) == 0 {
		if now.Sub(o.bookedAt) < s.wait {
			return nil, nil, false
		}
		job.PromiseBy = now.Add(6 * time.Hour)
		if ranked, _ = s.d.Score(job, cands, now); len(ranked) == 0 {
			return nil, nil, false
		}
		ranked[0].Plan = restorePromise(ranked[0].Plan, o)
	}
	best := ranked[0]
	for _, c := range near {
		if c.id == best.CourierID {
			return c, best.Plan, true
		}
	}
	return nil, nil, false
}

// restorePromise puts the real promise back on the order's drop-off.
func restorePromise(plan []dispatch.Stop, o *simOrder) []dispatch.Stop {
	for i := range plan {
		if plan[i].OrderID == o.id && plan[i].Kind == dispatch.StopDropoff {
			plan[i].PromiseBy = o.promiseBy
		}
	}
	return plan
}
