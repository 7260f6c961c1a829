package routing

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"time"
)

// Plan orders p's stops with the built-in heuristic.
//
// The search runs from three starts (the input order, a cheapest-insertion
// construction and an earliest-deadline order), improves each with a local
// search that keeps pickups before their orders' other stops, and keeps the
// lexicographically best plan: least total lateness, then least busy time
// (travel plus waiting for "not before" times), i.e. the earliest finish.
// The input order is evaluated too and returned (Algorithm "input") unless the
// search found something strictly better, so a plan is never worse than the
// input order.
//
// The search works on a travel-time matrix taken at p.StartTime; the returned
// ETAs and costs come from the TravelTimer asked at each actual departure time.
// When ctx ends or the time budget runs out during the search, Plan returns the
// best plan found so far; when ctx has already ended it returns ctx's error.
func Plan(ctx context.Context, p Problem) (Solution, error) {
	if err := p.Validate(); err != nil {
		return Solution{}, err
	}
	if err := ctx.Err(); err != nil {
		return Solution{}, fmt.Errorf("plan: %w", err)
	}
	input := evaluate(p, p.Stops)
	input.Algorithm = AlgorithmInput
	if len(p.Stops) < 2 {
		return input, nil
	}
	s := newSearch(ctx, p)
	seq := s.run()
	order := make([]Stop, len(seq))
	for i, idx := range seq {
		order[i] = p.Stops[idx]
	}
	cand := evaluate(p, order)
	if !cand.Better(input) {
		return input, nil
	}
	cand.Algorithm = AlgorithmHeuristic
	return cand, nil
}

// cost is the objective, compared lexicographically.
type cost struct {
	late   int64 // total lateness, ns
	travel int64 // busy time before the last service: travel plus waiting, ns
}

func (c cost) less(d cost) bool {
	if c.late != d.late {
		return c.late < d.late
	}
	return c.travel < d.travel
}

var worst = cost{late: math.MaxInt64, travel: math.MaxInt64}

// order is one order's stops as indexes into the problem's stops.
type order struct {
	pickup   int // -1 when the parcel is on board
	terminal int
}

// search holds one planning run over stop indexes 0..n-1.
type search struct {
	ctx      context.Context
	deadline time.Time
	maxIter  int
	stopped  bool
	evals    int

	n        int
	pred     []int   // the pickup that must come before stop i, or -1
	succ     []int   // the terminal stop that must come after pickup i, or -1
	leg      []int64 // (n+1)² travel times in ns; row/column 0 is the start
	service  []int64
	earliest []int64 // relative to the start time; MinInt64 when unbounded
	latest   []int64 // MaxInt64 when unbounded
	orders   []order // in input order of their first stop

	mark []uint32 // generation marks for the precedence check
	gen  uint32
	buf  []int // candidate sequence
	rest []int

	// The sequence being improved: each stop's position and the cost state
	// after its first k stops, so a move re-evaluates only what it changes.
	pos                         []int
	prefT, prefLate, prefTravel []int64
}

func newSearch(ctx context.Context, p Problem) *search {
	n := len(p.Stops)
	opt := p.Options
	budget := cmp.Or(opt.TimeBudget, DefaultTimeBudget)
	s := &search{
		ctx:        ctx,
		deadline:   time.Now().Add(budget),
		maxIter:    cmp.Or(opt.MaxIterations, DefaultMaxIterations),
		n:          n,
		pred:       make([]int, n),
		succ:       make([]int, n),
		leg:        make([]int64, (n+1)*(n+1)),
		service:    make([]int64, n),
		earliest:   make([]int64, n),
		latest:     make([]int64, n),
		mark:       make([]uint32, n),
		buf:        make([]int, 0, n),
		pos:        make([]int, n),
		prefT:      make([]int64, n+1),
		prefLate:   make([]int64, n+1),
		prefTravel: make([]int64, n+1),
		rest:       make([]int, 0, n),
	}
	tt := p.travelTimer()
	pts := make([]Point, n+1)
	pts[0] = p.Start
	pickupOf := make(map[string]int, n)
	for i, st := range p.Stops {
		pts[i+1] = st.Loc
		s.service[i] = int64(st.Service)
		s.earliest[i] = math.MinInt64
		if !st.Earliest.IsZero() {
			s.earliest[i] = int64(st.Earliest.Sub(p.StartTime))
		}
		s.latest[i] = math.MaxInt64
		if !st.Latest.IsZero() {
			s.latest[i] = int64(st.Latest.Sub(p.StartTime))
		}
		if st.Kind == Pickup {
			pickupOf[st.OrderID] = i
		}
	}
	for a := range pts {
		for b := range pts {
			if a != b {
				s.leg[a*(n+1)+b] = int64(tt.Travel(pts[a], pts[b], p.StartTime))
			}
		}
	}
	for i := range s.succ {
		s.succ[i] = -1
	}
	for i, st := range p.Stops {
		s.pred[i] = -1
		if st.Kind.Terminal() {
			pu, ok := pickupOf[st.OrderID]
			if !ok {
				pu = -1
			}
			s.pred[i] = pu
			if pu >= 0 {
				s.succ[pu] = i
			}
			s.orders = append(s.orders, order{pickup: pu, terminal: i})
		}
	}
	return s
}

// eval returns the cost of seq (a full or partial route) and whether it is
// feasible and strictly better than bound. It stops early once it cannot be.
func (s *search) eval(seq []int, bound cost) (cost, bool) { return s.evalFrom(seq, 0, bound) }

// setCurrent records seq's prefix costs and stop positions for evalFrom.
func (s *search) setCurrent(seq []int) {
	var t, late, travel int64
	prev, stride := 0, s.n+1
	for k, i := range seq {
		s.pos[i] = k
		d := s.leg[prev*stride+i+1]
		t += d
		travel += d
		if t > s.latest[i] {
			late += t - s.latest[i]
		}
		if e := s.earliest[i]; e > t {
			travel += e - t // waiting for a "not before" costs the courier like driving does
		}
		t = max(t, s.earliest[i]) + s.service[i]
		prev = i + 1
		s.prefT[k+1], s.prefLate[k+1], s.prefTravel[k+1] = t, late, travel
	}
}

// evalFrom is eval for a candidate whose first k stops are those of the
// sequence last given to setCurrent, so their costs are reused.
func (s *search) evalFrom(seq []int, k int, bound cost) (cost, bool) {
	s.evals++
	if s.evals&255 == 0 && !s.stopped {
		if s.ctx.Err() != nil || time.Now().After(s.deadline) {
			s.stopped = true
		}
	}
	s.gen++
	if s.gen == 0 {
		clear(s.mark)
		s.gen = 1
	}
	var c cost
	var t int64
	prev, stride := 0, s.n+1
	if k > 0 {
		c, t, prev = cost{late: s.prefLate[k], travel: s.prefTravel[k]}, s.prefT[k], seq[k-1]+1
	}
	pred, mark, pos, gen := s.pred, s.mark, s.pos, s.gen
	leg, latest, earliest, service := s.leg, s.latest, s.earliest, s.service
	for _, i := range seq[k:] {
		// The pickup is either in the reused prefix or earlier in this loop.
		if pu := pred[i]; pu >= 0 && mark[pu] != gen && pos[pu] >= k {
			return c, false
		}
		mark[i] = gen
		d := leg[prev*stride+i+1]
		t += d
		c.travel += d
		if l := latest[i]; t > l {
			c.late += t - l
		}
		if e := earliest[i]; e > t {
			c.travel += e - t
		}
		if c.late > bound.late || c.late == bound.late && c.travel >= bound.travel {
			return c, false // lateness and busy time only grow along the route
		}
		t = max(t, earliest[i]) + service[i]
		prev = i + 1
	}
	return c, true
}

// run searches from each start and returns the best sequence found.
func (s *search) run() []int {
	var best []int
	bestCost := worst
	for _, start := range [][]int{s.identity(), s.insertion(), s.deadlineOrder()} {
		c, ok := s.eval(start, worst)
		if !ok {
			continue // cannot happen for valid starts; keeps the search honest
		}
		c = s.improve(start, c)
		if c.less(bestCost) {
			best, bestCost = start, c
		}
		if s.stopped {
			break
		}
	}
	return best
}

func (s *search) identity() []int {
	seq := make([]int, s.n)
	for i := range seq {
		seq[i] = i
	}
	return seq
}

// deadlineOrder sorts orders by their earliest latest time, each pickup just
// before its order's other stop's group; ties keep the input order.
func (s *search) deadlineOrder() []int {
	type keyed struct {
		due  int64
		rank int // 0 pickup, 1 terminal
		idx  int
	}
	ks := make([]keyed, 0, s.n)
	for _, o := range s.orders {
		due := s.latest[o.terminal]
		if o.pickup >= 0 {
			due = min(due, s.latest[o.pickup])
			ks = append(ks, keyed{due, 0, o.pickup})
		}
		ks = append(ks, keyed{due, 1, o.terminal})
	}
	slices.SortStableFunc(ks, func(a, b keyed) int {
		return cmp.Or(cmp.Compare(a.due, b.due), cmp.Compare(a.rank, b.rank), cmp.Compare(a.idx, b.idx))
	})
	seq := make([]int, len(ks))
	for i, k := range ks {
		seq[i] = k.idx
	}
	return seq
}

// insertion builds a route by inserting orders, most urgent first, each at
// its cheapest feasible position(s).
func (s *search) insertion() []int {
	orders := slices.Clone(s.orders)
	slices.SortStableFunc(orders, func(a, b order) int {
		return cmp.Compare(s.latest[a.terminal], s.latest[b.terminal])
	})
	seq := make([]int, 0, s.n)
	for _, o := range orders {
		seq, _ = s.insertBest(seq, o, worst)
	}
	return seq
}

// insertBest inserts o into seq at the positions that give the least cost,
// if that beats bound; it returns the new sequence (seq when nothing beats
// bound) and its cost.
func (s *search) insertBest(seq []int, o order, bound cost) ([]int, cost) {
	bestCost, bi, bj := bound, -1, -1
	m := len(seq)
	// Every candidate starts with seq[:i]; o's own stops come at or after i,
	// so positions of o's stops left over from another sequence do not matter.
	s.setCurrent(seq)
	for i := 0; i <= m; i++ {
		if o.pickup < 0 {
			s.buf = append(append(append(s.buf[:0], seq[:i]...), o.terminal), seq[i:]...)
			if c, ok := s.evalFrom(s.buf, i, bestCost); ok {
				bestCost, bi = c, i
			}
			continue
		}
		for j := i; j <= m; j++ {
			s.buf = append(append(s.buf[:0], seq[:i]...), o.pickup)
			s.buf = append(append(append(s.buf, seq[i:j]...), o.terminal), seq[j:]...)
			if c, ok := s.evalFrom(s.buf, i, bestCost); ok {
				bestCost, bi, bj = c, i, j
			}
		}
	}
	if bi < 0 {
		return seq, bound
	}
	out := make([]int, 0, m+2)
	if o.pickup < 0 {
		out = append(append(append(out, seq[:bi]...), o.terminal), seq[bi:]...)
		return out, bestCost
	}
	out = append(append(out, seq[:bi]...), o.pickup)
	out = append(append(append(out, seq[bi:bj]...), o.terminal), seq[bj:]...)
	return out, bestCost
}

// improve applies improving moves to seq in place until a whole pass over
// the neighbourhoods finds none, the iteration limit is reached or the search
// is stopped; it returns the cost.
func (s *search) improve(seq []int, c cost) cost {
	for iter := 0; iter < s.maxIter && !s.stopped; {
		var moves int
		c, moves = s.pass(seq, c, s.maxIter-iter)
		if moves == 0 {
			break
		}
		iter += moves
	}
	return c
}

// pass scans the neighbourhoods once, applying each improving move as it is
// found and scanning on from there: relocating a segment of 1 to 3 stops,
// swapping two stops, reversing a segment (2-opt), and re-inserting one
// order's stops together. It returns the new cost and the number of moves.
func (s *search) pass(seq []int, c cost, budget int) (cost, int) {
	n, moves := len(seq), 0
	s.setCurrent(seq)
	accept := func(nc cost) bool {
		copy(seq, s.buf)
		c = nc
		moves++
		s.setCurrent(seq)
		return moves >= budget || s.stopped
	}
	for l := 1; l <= 3 && l < n; l++ {
		for i := 0; i+l <= n; i++ {
			s.rest = append(append(s.rest[:0], seq[:i]...), seq[i+l:]...)
			// Keep the segment after the pickups and before the terminal
			// stops of its orders that stay outside it.
			jmin, jmax := 0, len(s.rest)
			for _, x := range seq[i : i+l] {
				if t := s.succ[x]; t >= 0 && s.pos[t] >= i+l {
					jmax = min(jmax, s.pos[t]-l)
				}
				if pu := s.pred[x]; pu >= 0 && s.pos[pu] < i {
					jmin = max(jmin, s.pos[pu]+1)
				}
			}
			for j := jmin; j <= jmax; j++ {
				if j == i {
					continue
				}
				s.buf = append(append(append(s.buf[:0], s.rest[:j]...), seq[i:i+l]...), s.rest[j:]...)
				if nc, ok := s.evalFrom(s.buf, min(i, j), c); ok {
					if accept(nc) {
						return c, moves
					}
					break // seq changed around i: go on with the next segment
				}
			}
			if s.stopped {
				return c, moves
			}
		}
	}
	for i := 0; i < n-1; i++ {
		for j := i + 1; j < n; j++ {
			if t := s.succ[seq[i]]; t >= 0 && s.pos[t] <= j {
				break // seq[i] is a pickup and would pass its terminal stop
			}
			if pu := s.pred[seq[j]]; pu >= 0 && s.pos[pu] >= i {
				continue // seq[j] is a terminal stop and would pass its pickup
			}
			s.buf = append(s.buf[:0], seq...)
			s.buf[i], s.buf[j] = s.buf[j], s.buf[i]
			if nc, ok := s.evalFrom(s.buf, i, c); ok && accept(nc) {
				return c, moves
			}
		}
	}
	for i := 0; i < n-2; i++ {
		for j := i + 1; j < n; j++ {
			if pu := s.pred[seq[j]]; pu >= 0 && s.pos[pu] >= i {
				break // the reversal would hold a whole order, backwards
			}
			if j == i+1 {
				continue // a swap, tried above
			}
			s.buf = append(s.buf[:0], seq...)
			slices.Reverse(s.buf[i : j+1])
			if nc, ok := s.evalFrom(s.buf, i, c); ok && accept(nc) {
				return c, moves
			}
		}
	}
	if moves > 0 {
		return c, moves // the costlier pair move only when the others are stuck
	}
	without := make([]int, 0, n)
	for _, o := range s.orders {
		if o.pickup < 0 {
			continue // a lone stop is covered by relocation
		}
		without = without[:0]
		for _, idx := range seq {
			if idx != o.pickup && idx != o.terminal {
				without = append(without, idx)
			}
		}
		if next, nc := s.insertBest(without, o, c); nc.less(c) {
			s.buf = append(s.buf[:0], next...)
			if accept(nc) {
				return c, moves
			}
		}
		if s.stopped {
			break
		}
	}
	return c, moves
}
