package dispatch

import (
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tawsil/tawsil/backend/internal/geo"
)

// EpochJob is an order waiting for a courier at a decision epoch: one not
// yet given to anyone, or one given to a courier that has not started on
// its pick-up and is offered for re-planning.
type EpochJob struct {
	Job
	// PlacedAt is when the order was placed: its wait so far counts in
	// its priority (Weights.WaitMin).
	PlacedAt time.Time
	// LatestBy is the hard limit tried when no courier keeps
	// Job.PromiseBy (zero: none).
	LatestBy time.Time
	// AnyTime: when no courier keeps LatestBy either, the job goes, late,
	// to whoever hands it over soonest (rather late than never).
	AnyTime bool
}

// Commit is one decision of an epoch: job Job (an index into the jobs
// given) goes to candidate Cand (an index into the candidates) under
// PromiseBy, and the courier's route becomes Ranked.Plan.
type Commit struct {
	Job, Cand int
	PromiseBy time.Time
	Ranked    Ranked
}

// Accept is the caller's last word on a commit before it is made (a
// check the dispatcher cannot do, such as a shift ending before the
// pick-up); false tries the next candidate.
type Accept func(job, cand int, promiseBy time.Time, r Ranked) bool

// Epoch decides, at one decision time, which waiting jobs go to which
// couriers, and which wait for a later epoch. cands are every courier that
// may take work, each with the part of its route that can no longer
// change (the stop it is driving to, parcels on board); jobs are the
// orders waiting, including those taken back from couriers that had not
// started on them (re-planning: each epoch places them again with what is
// known now). At most k nearest candidates (great-circle distance to the
// pick-up) are scored per job: those that could be at the pick-up soonest
// once done with their routes, and those already going there.
//
// Each job is scored as Score does, under its promise, else its LatestBy,
// else (AnyTime) none. Then, repeatedly, the job with the cheapest best
// candidate is committed first and the candidate's route grows by it; the
// jobs whose best candidate that was, or that share its pick-up (a bundle
// may now be cheaper), are scored again. Cheapest first rather than oldest
// first keeps couriers' empty travel short when orders queue up; an
// order's own wait counts in its cost (Config.Weights.WaitMin per minute
// since it was placed), so a far order is not starved.
//
// A job whose best candidate would reach the pick-up more than
// Config.CommitLead before it is ready (Hold), or more than
// Config.CommitHorizon after now, is held, unless it goes without a
// promise (AnyTime): it waits for a later epoch, and does not take the
// courier meanwhile. cands' routes are
// not modified; the commits are returned in the order made, each Plan
// holding the courier's earlier commits of the epoch.
func (d *Dispatcher) Epoch(jobs []EpochJob, cands []Candidate, now time.Time, k int, accept Accept) []Commit {
	commits, _ := d.EpochHeld(jobs, cands, now, k, accept)
	return commits
}

// EpochHeld is Epoch, and which jobs were held (true at a job's index):
// those not committed and not held found no candidate.
func (d *Dispatcher) EpochHeld(jobs []EpochJob, cands []Candidate, now time.Time, k int, accept Accept) ([]Commit, []bool) {
	if len(jobs) == 0 || len(cands) == 0 {
		return nil, make([]bool, len(jobs))
	}
	if k <= 0 || k > len(cands) {
		k = len(cands)
	}
	ep := epochPool.Get().(*epoch)
	defer ep.release()
	ep.d, ep.jobs, ep.now, ep.k, ep.accept = d, jobs, now, k, accept
	ep.cands = append(ep.cands[:0], cands...)
	ep.best = slices.Grow(ep.best[:0], len(jobs))[:len(jobs)]
	ep.ends = slices.Grow(ep.ends[:0], len(cands))[:len(cands)]
	for i := range ep.ends {
		ep.ends[i].stale = true
	}
	for j := range jobs {
		ep.score(j)
	}
	var commits []Commit
	for {
		bj := -1
		for j := range ep.best {
			b := &ep.best[j]
			if b.state != epochReady {
				continue
			}
			if bj < 0 || b.key < ep.best[bj].key || b.key == ep.best[bj].key && j < bj {
				bj = j
			}
		}
		if bj < 0 {
			held := make([]bool, len(jobs))
			for j := range ep.best {
				held[j] = ep.best[j].state == epochHeld
			}
			return commits, held
		}
		b := ep.best[bj]
		ep.best[bj].state = epochDone
		c := &ep.cands[b.cand]
		c.Route = b.r.Plan
		c.Load++
		c.IdleSince = time.Time{}
		ep.ends[b.cand].stale = true
		commits = append(commits, Commit{Job: bj, Cand: b.cand, PromiseBy: b.promise, Ranked: b.r})
		for j := range ep.best {
			o := &ep.best[j]
			if o.state == epochDone || o.state == epochHeld && o.cand != b.cand {
				continue
			}
			if o.cand == b.cand || samePoint(jobs[j].Pickup, jobs[bj].Pickup) {
				ep.score(j)
			}
		}
	}
}

type epochState uint8

const (
	epochNone  epochState = iota // no candidate can take it now
	epochReady                   // has a best candidate, waiting for its turn
	epochHeld                    // its best candidate would be early: wait for a later epoch
	epochDone                    // committed
)

type epochBest struct {
	state   epochState
	cand    int
	r       Ranked
	promise time.Time
	key     float64
}

type epoch struct {
	d       *Dispatcher
	jobs    []EpochJob
	cands   []Candidate
	best    []epochBest
	now     time.Time
	k       int
	accept  Accept
	near    []int // scratch
	sub     []Candidate
	dist    []float64
	ends    []routeEnd
	try     []Candidate // scratch: the candidates scored for one tier
	tryNear []int
	ranked  []slot // scratch: the scored candidates of one tier
	order   []int  // scratch: indices into ranked, best first
}

// slot is a scored candidate (ep.try[at]) whose plan is not built yet.
type slot struct {
	r   Ranked
	ins insertion
	at  int
}

// epochPool holds the scratch of epochs done, for the next: an epoch's
// slices are sized by its candidates and jobs, and concurrent epochs
// (callers on several goroutines) each take their own.
var epochPool = sync.Pool{New: func() any { return new(epoch) }}

// release clears what the scratch refers to (the callers' jobs, routes,
// plans) and puts it back in epochPool.
func (ep *epoch) release() {
	clear(ep.cands)
	clear(ep.best)
	clear(ep.sub)
	clear(ep.try)
	clear(ep.ranked[:cap(ep.ranked)])
	ep.d, ep.jobs, ep.accept = nil, nil, nil
	epochPool.Put(ep)
}

// score finds job j's best acceptable candidate now.
func (ep *epoch) score(j int) {
	job := ep.jobs[j]
	ep.nearest(job.Pickup)
	tiers := [3]time.Time{job.PromiseBy, job.LatestBy}
	n := 1
	if !job.LatestBy.IsZero() {
		n = 2
	}
	if job.AnyTime {
		n++ // tiers[n-1] is the zero time: no promise
	}
	b := &ep.best[j]
	*b = epochBest{state: epochNone, cand: -1}
	// The soonest a candidate not going to the pick-up already could hand
	// the job over: at the pick-up once done with its route (it takes the
	// job after its stops), the parcel ready, the ride, both services.
	jp := ep.d.jobPaces(job.Job, ep.now)
	ride := ep.d.cfg.PickupService + leg(job.Pickup, job.Dropoff, jp.pickup) + ep.d.cfg.DropoffService
	for t := range n {
		jj := job.Job
		jj.PromiseBy = tiers[t]
		// Score only the candidates that could keep the promise.
		ep.try, ep.tryNear = ep.try[:0], ep.tryNear[:0]
		for x, ci := range ep.near {
			if d := ep.dist[ci]; d >= 0 && !jj.PromiseBy.IsZero() {
				at := ep.now.Add(time.Duration(d))
				if jj.ReadyAt.After(at) {
					at = jj.ReadyAt
				}
				if at.Add(ride).After(jj.PromiseBy.Add(-ep.d.cfg.Margin)) {
					continue
				}
			}
			ep.try = append(ep.try, ep.sub[x])
			ep.tryNear = append(ep.tryNear, ci)
		}
		if len(ep.try) == 0 {
			continue
		}
		ep.rank(jj)
		for _, i := range ep.order {
			sl := &ep.ranked[i]
			r := sl.r
			r.Plan = plan(jj, &ep.try[sl.at], sl.ins)
			ci := ep.tryNear[indexOf(ep.try, r.CourierID)]
			if ep.accept != nil && !ep.accept(j, ci, jj.PromiseBy, r) {
				continue
			}
			*b = epochBest{state: epochReady, cand: ci, r: r, promise: jj.PromiseBy}
			if !jj.PromiseBy.IsZero() && (ep.d.Hold(jj, r) || ep.d.cfg.CommitHorizon > 0 && r.PickupAt.Sub(ep.now) > ep.d.cfg.CommitHorizon) {
				b.state = epochHeld
			}
			b.key = r.Cost
			if !job.PlacedAt.IsZero() {
				b.key -= ep.d.cfg.Weights.WaitMin * minutes(ep.now.Sub(job.PlacedAt))
			}
			return
		}
	}
}

// rank fills ep.ranked with the candidates of ep.try that can take jj,
// and ep.order with their indices best first, as Score ranks them, but without their plans: only those
// offered to accept are built.
func (ep *epoch) rank(jj Job) {
	ep.ranked = ep.ranked[:0]
	jp := ep.d.jobPaces(jj, ep.now)
	for i := range ep.try {
		r, ins, reason := ep.d.scoreOnly(jj, jp, &ep.try[i], ep.now)
		if reason != "" {
			continue
		}
		ep.ranked = append(ep.ranked, slot{r: r, ins: ins, at: i})
	}
	// Sort indices (a slot is large to move), by Score's order: the same
	// comparisons give the same permutation.
	ep.order = ep.order[:0]
	for i := range ep.ranked {
		ep.order = append(ep.order, i)
	}
	slices.SortFunc(ep.order, func(x, y int) int {
		a, b := &ep.ranked[x], &ep.ranked[y]
		if a.r.Cost != b.r.Cost {
			if a.r.Cost < b.r.Cost {
				return -1
			}
			return 1
		}
		return strings.Compare(a.r.CourierID, b.r.CourierID)
	})
}

// nearest fills ep.near and ep.sub with the k candidates that could be at
// p soonest once done with their routes (each route's end and the leg from
// there, at the pace leaving p), and every candidate whose route already
// has a stop at p or an order from p (a bundle from one pick-up costs it
// least, and batching may slip the job in anywhere in its route).
func (ep *epoch) nearest(p Point) {
	n := len(ep.cands)
	if cap(ep.dist) < n {
		ep.dist = make([]float64, n)
	}
	ep.dist = ep.dist[:n]
	ep.near = ep.near[:0]
	pace := ep.d.eta.Pace(p.Lat, p.Lng, ep.now)
	pv := geo.VecOf(p.Lat, p.Lng)
	for i := range ep.cands {
		e := &ep.ends[i]
		if e.stale {
			ep.routeEnd(i)
		}
		// leg(e.pos, p, pace), from the cached vector
		ep.dist[i] = float64(e.at.Sub(ep.now)) + float64(time.Duration(geo.VecDistanceM(e.vec, pv)*pace*float64(time.Second)))
		for _, s := range ep.cands[i].Route {
			if samePoint(s.At, p) || samePoint(s.Origin, p) {
				ep.dist[i] = -1
				break
			}
		}
		// keep the k soonest, in order (insertion into a short list)
		less := func(a, b int) bool { return ep.dist[a] < ep.dist[b] || ep.dist[a] == ep.dist[b] && a < b }
		if len(ep.near) == ep.k {
			if !less(i, ep.near[ep.k-1]) {
				continue
			}
			ep.near = ep.near[:ep.k-1]
		}
		at := len(ep.near)
		for at > 0 && less(i, ep.near[at-1]) {
			at--
		}
		ep.near = slices.Insert(ep.near, at, i)
	}
	ep.sub = ep.sub[:0]
	for _, i := range ep.near {
		ep.sub = append(ep.sub, ep.cands[i])
	}
}

// routeEnd is where and when candidate i is done with its route.
type routeEnd struct {
	stale bool
	vec   geo.Vec // of where it ends
	at    time.Time
}

func (ep *epoch) routeEnd(i int) {
	c := &ep.cands[i]
	pos := Point{Lat: c.Lat, Lng: c.Lng}
	t := c.startAt(ep.now)
	for _, s := range c.Route {
		t = t.Add(leg(pos, s.At, ep.d.eta.Pace(pos.Lat, pos.Lng, ep.now)))
		t = waitReady(t, s.Kind, s.ReadyAt).Add(ep.d.service(s.Kind))
		pos = s.At
	}
	ep.ends[i] = routeEnd{vec: geo.VecOf(pos.Lat, pos.Lng), at: t}
}

func indexOf(cs []Candidate, id string) int {
	for i := range cs {
		if cs[i].CourierID == id {
			return i
		}
	}
	return -1
}

func samePoint(a, b Point) bool { return a.Lat == b.Lat && a.Lng == b.Lng }
