package main

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/tawsil/tawsil/backend/internal/area"
	"github.com/tawsil/tawsil/backend/internal/dispatch"
	"github.com/tawsil/tawsil/backend/internal/eta"
)

// Config describes one simulated day.
type Config struct {
	Seed        uint64
	Orders      int
	Couriers    int
	Stores      int
	FailRate    float64 // share of drop-offs that fail at first attempt
	CostPerHour float64 // MAD per courier shift hour
	CostPerKm   float64 // MAD per km ridden
	Step        time.Duration
	Noise       float64 // sd of the log of actual/predicted leg time
	Radius      float64 // candidate search radius, metres
	K           int     // candidates per decision
	Capacity    int
}

// DefaultConfig is a busy Casablanca day.
func DefaultConfig() Config {
	return Config{
		Seed: 1, Orders: 4000, Couriers: 220, Stores: 35, FailRate: 0.07,
		CostPerHour: 25, CostPerKm: 0.6, Step: 30 * time.Second, Noise: 0.2,
		Radius: 8000, K: 50, Capacity: 3,
	}
}

// simOrder is a booking of the day, identical for every strategy.
type simOrder struct {
	id         string
	bookedAt   time.Time
	pickup     dispatch.Point
	dropoff    dispatch.Point
	promiseBy  time.Time
	fails      bool // first drop-off attempt fails
	retryOK    bool // after a failure: reattempt in the route (else return to the store)
	assignedAt time.Time
	doneAt     time.Time
	delivered  bool
	returned   bool
	attempts   int
}

// world is the generated day: stores, bookings, courier starts.
type world struct {
	orders []simOrder
	starts []dispatch.Point
	open   time.Time // shift start
	close  time.Time // last booking
}

// generate builds a day of Casablanca orders: stores with Zipf-like
// popularity, drop-offs 0.5–5 km from their store inside the city, bookings
// over 09:00–23:00 with lunch and evening peaks.
func generate(cfg Config, areas *area.Areas, loc *time.Location) (world, error) {
	r := rand.New(rand.NewPCG(cfg.Seed, 0x7a5))
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
	weights := make([]float64, cfg.Stores)
	var wsum float64
	for i := range stores {
		p, err := sample()
		if err != nil {
			return world{}, err
		}
		stores[i] = p
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
		w.orders = append(w.orders, simOrder{
			id: fmt.Sprintf("o%05d", i), bookedAt: booked, pickup: stores[s], dropoff: drop,
			promiseBy: booked.Add(time.Hour), fails: r.Float64() < cfg.FailRate, retryOK: r.Float64() < 0.6,
		})
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
	load      int
	assigned  int
	idleSince time.Time
	km        float64
	busy      float64 // seconds with a route
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

// Strategy picks a courier and plan for an order, or reports none.
type Strategy interface {
	Name() string
	Assign(o *simOrder, cs []*simCourier, now time.Time) (c *simCourier, plan []dispatch.Stop, ok bool)
	// Reattempt puts a failed drop-off back into the route of a courier at pos.
	Reattempt(pos dispatch.Point, route []dispatch.Stop, s dispatch.Stop, now time.Time) []dispatch.Stop
}

// Result is what a run measured.
type Result struct {
	Strategy         string
	Orders           int
	Delivered        int
	OnTime           int
	Returned         int
	Failed           int // failed attempts
	MedianMin        float64
	P90Min           float64
	Km               float64
	CostMAD          float64
	Utilisation      float64
	MaxWaitMin       float64 // longest wait for a courier
	Undelivered      int     // not finished when the simulation stopped
	LateAfterFailure int     // delivered late after a failed first attempt
}

// simulate plays the day with one strategy. The ETA model is the truth too:
// each actual leg takes the model's time times a log-normal factor.
func simulate(cfg Config, w world, model *eta.Model, dcfg dispatch.Config, st Strategy) Result {
	r := rand.New(rand.NewPCG(cfg.Seed, 0xc0ffee))
	orders := slices.Clone(w.orders)
	byID := make(map[string]*simOrder, len(orders))
	for i := range orders {
		byID[orders[i].id] = &orders[i]
	}
	cs := make([]*simCourier, len(w.starts))
	for i, p := range w.starts {
		cs[i] = &simCourier{id: fmt.Sprintf("c%03d", i), pos: p, idleSince: w.open}
	}
	service := func(k dispatch.StopKind) float64 {
		if k == dispatch.StopPickup {
			return dcfg.PickupService.Seconds()
		}
		return dcfg.DropoffService.Seconds()
	}
	startLeg := func(c *simCourier, now time.Time) {
		if len(c.route) == 0 {
			return
		}
		to := c.route[0].At
		pred := model.Travel(c.pos.Lat, c.pos.Lng, to.Lat, to.Lng, now).Seconds()
		c.legTotal = pred * math.Exp(r.NormFloat64()*cfg.Noise-cfg.Noise*cfg.Noise/2)
		c.legDone = 0
	}
	setRoute := func(c *simCourier, plan []dispatch.Stop, now time.Time) {
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
			return
		}
		if len(c.route) > 0 {
			// leave the current leg where it is: account the part ridden
			here := c.at()
			c.km += eta.HaversineM(c.pos.Lat, c.pos.Lng, here.Lat, here.Lng) * model.Config().DetourFactor / 1000
			c.pos = here
		}
		c.route = plan
		startLeg(c, now)
	}
	var pending []*simOrder
	next := 0
	end := w.close.Add(4 * time.Hour)
	var maxWait time.Duration
	step := cfg.Step.Seconds()
	last := w.open
	for now := w.open; now.Before(end); now = now.Add(cfg.Step) {
		last = now
		for next < len(orders) && !orders[next].bookedAt.After(now) {
			pending = append(pending, &orders[next])
			next++
		}
		kept := pending[:0]
		for _, o := range pending {
			c, plan, ok := st.Assign(o, cs, now)
			if !ok {
				kept = append(kept, o)
				continue
			}
			o.assignedAt = now
			maxWait = max(maxWait, now.Sub(o.bookedAt))
			c.load++
			c.assigned++
			setRoute(c, plan, now)
		}
		pending = kept
		for _, c := range cs {
			budget := step
			for budget > 0 && len(c.route) > 0 {
				if c.inService {
					use := min(budget, c.svcLeft)
					c.svcLeft -= use
					budget -= use
					c.busy += use
					if c.svcLeft > 0 {
						break
					}
					t := now.Add(time.Duration((step - budget) * float64(time.Second)))
					s := c.route[0]
					c.inService = false
					c.pos = s.At
					c.route = c.route[1:]
					if s.Kind == dispatch.StopDropoff {
						o := byID[s.OrderID]
						switch {
						case s.PromiseBy.IsZero() && o.attempts > 0:
							// the return stop: the parcel is back at the store
							o.returned, o.doneAt = true, t
							c.load--
						case o.fails && o.attempts == 0:
							o.attempts++
							if o.retryOK {
								c.route = st.Reattempt(s.At, c.route, s, t)
							} else {
								c.route = append(c.route, dispatch.Stop{OrderID: o.id, Kind: dispatch.StopDropoff, At: o.pickup, Origin: o.pickup})
							}
						default:
							o.attempts++
							o.delivered, o.doneAt = true, t
							c.load--
						}
					}
					if len(c.route) == 0 {
						c.idleSince = t
					}
					startLeg(c, t)
					continue
				}
				need := c.legTotal - c.legDone
				if budget < need {
					c.legDone += budget
					c.busy += budget
					budget = 0
					break
				}
				budget -= need
				c.busy += need
				to := c.route[0].At
				c.km += eta.HaversineM(c.pos.Lat, c.pos.Lng, to.Lat, to.Lng) * model.Config().DetourFactor / 1000
				c.pos = to
				c.inService = true
				c.svcLeft = service(c.route[0].Kind)
				if o := byID[c.route[0].OrderID]; c.route[0].Kind == dispatch.StopDropoff && o.attempts > 0 && !c.route[0].PromiseBy.IsZero() {
					c.svcLeft += 5 * 60 // calling the customer again
				}
			}
		}
		if next == len(orders) && len(pending) == 0 && allIdle(cs) {
			break
		}
	}

	res := Result{Strategy: st.Name(), Orders: len(orders), MaxWaitMin: maxWait.Minutes()}
	var mins []float64
	for i := range orders {
		o := &orders[i]
		res.Failed += min(o.attempts, 1) * b2i(o.fails)
		switch {
		case o.delivered:
			res.Delivered++
			if !o.doneAt.After(o.promiseBy) {
				res.OnTime++
			} else if o.fails {
				res.LateAfterFailure++
			}
			mins = append(mins, o.doneAt.Sub(o.bookedAt).Minutes())
		case o.returned:
			res.Returned++
		default:
			res.Undelivered++
		}
	}
	slices.Sort(mins)
	if len(mins) > 0 {
		res.MedianMin = mins[len(mins)/2]
		res.P90Min = mins[len(mins)*9/10]
	}
	var busy float64
	for _, c := range cs {
		res.Km += c.km
		busy += c.busy
	}
	// Couriers are paid from opening until the last of them is done, at
	// least one hour past the last booking.
	shiftEnd := w.close.Add(time.Hour)
	if l := last.Add(cfg.Step); l.After(shiftEnd) {
		shiftEnd = l
	}
	shift := shiftEnd.Sub(w.open).Hours()
	res.CostMAD = float64(len(cs))*shift*cfg.CostPerHour + res.Km*cfg.CostPerKm
	res.Utilisation = busy / 3600 / (float64(len(cs)) * shift)
	return res
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
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
		if d := eta.HaversineM(p.Lat, p.Lng, q.Lat, q.Lng); d <= radius {
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

// nearestIdle is the baseline: the nearest courier with nothing to do
// takes the order, pick-up then drop-off.
type nearestIdle struct{}

func (nearestIdle) Name() string { return "nearest idle (baseline)" }

func (nearestIdle) Assign(o *simOrder, cs []*simCourier, _ time.Time) (*simCourier, []dispatch.Stop, bool) {
	near := nearest(cs, o.pickup, math.Inf(1), 1, func(c *simCourier) bool { return len(c.route) == 0 })
	if len(near) == 0 {
		return nil, nil, false
	}
	return near[0], []dispatch.Stop{
		{OrderID: o.id, Kind: dispatch.StopPickup, At: o.pickup, Origin: o.pickup},
		{OrderID: o.id, Kind: dispatch.StopDropoff, At: o.dropoff, PromiseBy: o.promiseBy, Origin: o.pickup},
	}, true
}

// Reattempt goes at the end: the baseline courier has nothing else to do.
func (nearestIdle) Reattempt(_ dispatch.Point, route []dispatch.Stop, s dispatch.Stop, _ time.Time) []dispatch.Stop {
	return append(route, s)
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

func (s scored) Assign(o *simOrder, cs []*simCourier, now time.Time) (*simCourier, []dispatch.Stop, bool) {
	near := nearest(cs, o.pickup, s.cfg.Radius, s.cfg.K, func(c *simCourier) bool { return c.load < s.cfg.Capacity })
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

// Reattempt puts the failed drop-off at the earliest place in the route
// where every other drop-off still keeps its promise (or, if already late,
// gets no later than it would have), else at the end.
func (s scored) Reattempt(pos dispatch.Point, route []dispatch.Stop, stop dispatch.Stop, now time.Time) []dispatch.Stop {
	before := make(map[string]time.Time, len(route))
	for _, r := range route {
		if r.Kind == dispatch.StopDropoff {
			if t, ok := s.d.PredictDelivery(r.OrderID, pos, route, now); ok {
				before[r.OrderID] = t
			}
		}
	}
	margin := s.d.Config().Margin
	for i := 0; i < len(route); i++ {
		cand := make([]dispatch.Stop, 0, len(route)+1)
		cand = append(cand, route[:i]...)
		cand = append(cand, stop)
		cand = append(cand, route[i:]...)
		ok := true
		for _, r := range route {
			if r.Kind != dispatch.StopDropoff || r.PromiseBy.IsZero() {
				continue
			}
			t, found := s.d.PredictDelivery(r.OrderID, pos, cand, now)
			if found && t.After(r.PromiseBy.Add(-margin)) && t.After(before[r.OrderID]) {
				ok = false
				break
			}
		}
		if ok {
			return cand
		}
	}
	return append(route, stop)
}
