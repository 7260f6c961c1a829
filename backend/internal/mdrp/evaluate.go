package mdrp

import (
	"fmt"
	"math"
	"slices"
	"sort"
)

// Check verifies a solution by the evaluator's rules and returns every
// violation found (none: the solution is feasible):
//   - an order is in at most one assignment, and an assignment is never made
//     before every order in it was placed;
//   - a bundle is picked up at or after every order's ready time and no later
//     than its courier's off time, and holds orders of one restaurant;
//   - drop-offs of a bundle follow its sequence, each at least one drop-off
//     service time after the one before;
//   - a courier's moves are continuous (each leaves where the last arrived,
//     the first from its start) and ordered in time (departures after
//     arrivals, none before its shift starts);
//   - the courier is at the restaurant at each pick-up time and at the
//     order's location at each drop-off time (strictly after arriving there
//     and not after leaving).
func Check(in *Instance, s *Solution) []string {
	var v []string
	bad := func(format string, args ...any) { v = append(v, fmt.Sprintf(format, args...)) }
	orders := map[string]*Order{}
	for i := range in.Orders {
		orders[in.Orders[i].ID] = &in.Orders[i]
	}
	couriers := map[string]*Courier{}
	for i := range in.Couriers {
		couriers[in.Couriers[i].ID] = &in.Couriers[i]
	}

	inBundle := map[string]int{}
	for _, a := range s.Assignments {
		c, ok := couriers[a.Courier]
		if !ok {
			bad("assignment to unknown courier %s", a.Courier)
			continue
		}
		if a.PickupAt > c.Off {
			bad("bundle %v picked up at %d after courier %s's off time %d", a.Orders, a.PickupAt, c.ID, c.Off)
		}
		var rest string
		prevDrop := math.MinInt
		for k, id := range a.Orders {
			o, ok := orders[id]
			if !ok {
				bad("assignment of unknown order %s", id)
				continue
			}
			inBundle[id]++
			if a.AssignedAt < o.Placed {
				bad("order %s assigned at %d before it was placed at %d", id, a.AssignedAt, o.Placed)
			}
			if a.PickupAt < o.Ready {
				bad("order %s picked up at %d before it was ready at %d", id, a.PickupAt, o.Ready)
			}
			if k == 0 {
				rest = o.Restaurant
			} else if o.Restaurant != rest {
				bad("bundle %v mixes restaurants %s and %s", a.Orders, rest, o.Restaurant)
			}
			d := s.Orders[id]
			if !d.Delivered {
				bad("order %s is assigned but has no drop-off", id)
				continue
			}
			if d.Courier != a.Courier || d.PickupAt != a.PickupAt {
				bad("order %s: orders file says courier %s pick-up %d, assignment says %s %d", id, d.Courier, d.PickupAt, a.Courier, a.PickupAt)
			}
			if k > 0 && d.DropoffAt < prevDrop+in.Params.DropoffService {
				bad("order %s dropped at %d, less than %d min after the previous drop-off of its bundle (%d)", id, d.DropoffAt, in.Params.DropoffService, prevDrop)
			}
			prevDrop = d.DropoffAt
		}
	}
	for id, n := range inBundle {
		if n > 1 {
			bad("order %s is in %d assignments", id, n)
		}
	}
	for _, o := range in.Orders {
		if d := s.Orders[o.ID]; d.Delivered && inBundle[o.ID] == 0 {
			bad("order %s delivered without an assignment", o.ID)
		}
	}

	lines := timelines(in, s, bad)
	for _, a := range s.Assignments {
		if len(a.Orders) == 0 {
			bad("empty assignment for courier %s", a.Courier)
			continue
		}
		o, ok := orders[a.Orders[0]]
		tl, known := lines[a.Courier]
		if !ok || !known {
			continue
		}
		if at := tl.placeAt(a.PickupAt); at != o.Restaurant {
			bad("courier %s is at %q, not restaurant %s, at pick-up time %d", a.Courier, at, o.Restaurant, a.PickupAt)
		}
	}
	for _, o := range in.Orders {
		d := s.Orders[o.ID]
		if !d.Delivered {
			continue
		}
		tl, ok := lines[d.Courier]
		if !ok {
			bad("order %s delivered by unknown courier %s", o.ID, d.Courier)
			continue
		}
		if at := tl.placeAt(d.DropoffAt); at != o.ID {
			bad("courier %s is at %q, not order %s's location, at drop-off time %d", d.Courier, at, o.ID, d.DropoffAt)
		}
	}
	return v
}

// timeline is where a courier is: times[i] is when places[i] begins ("" is
// on the road).
type timeline struct {
	times   []int
	places  []string
	driving int
}

// placeAt is the place the courier is at t: the last entry that began
// strictly before t (the evaluator's bisect_left(times, t) - 1).
func (tl *timeline) placeAt(t int) string {
	i := sort.SearchInts(tl.times, t) - 1
	if i < 0 {
		return ""
	}
	return tl.places[i]
}

func timelines(in *Instance, s *Solution, bad func(string, ...any)) map[string]*timeline {
	type xy struct{ x, y float64 }
	loc := map[string]xy{}
	for _, o := range in.Orders {
		loc[o.ID] = xy{o.X, o.Y}
	}
	for id, r := range in.Restaurants {
		loc[id] = xy{r.X, r.Y}
	}
	out := map[string]*timeline{}
	for _, c := range in.Couriers {
		loc[c.ID] = xy{c.X, c.Y}
		out[c.ID] = &timeline{times: []int{c.On}, places: []string{c.ID}}
	}
	for _, m := range s.Moves {
		tl, ok := out[m.Courier]
		if !ok {
			bad("move of unknown courier %s", m.Courier)
			continue
		}
		from := m.From
		if from == "0" {
			from = m.Courier
		}
		if last := tl.places[len(tl.places)-1]; from != last {
			bad("courier %s leaves %s at %d but is at %s", m.Courier, from, m.Depart, last)
		}
		a, ok1 := loc[from]
		b, ok2 := loc[m.To]
		if !ok1 || !ok2 {
			bad("courier %s moves between unknown places %s and %s", m.Courier, from, m.To)
			continue
		}
		tt := in.Params.TravelMinutes(a.x, a.y, b.x, b.y)
		tl.times = append(tl.times, m.Depart, m.Depart+tt)
		tl.places = append(tl.places, "", m.To)
		tl.driving += tt
	}
	for id, tl := range out {
		if !slices.IsSorted(tl.times) {
			bad("courier %s departs before it arrives (or before its shift)", id)
		}
	}
	return out
}

// Stats are the evaluator's summary of one measure (pandas describe with
// the 10th and 90th percentiles).
type Stats struct {
	N                             int
	Mean, P10, P50, P90, Max, Min float64
}

func describe(xs []float64) Stats {
	if len(xs) == 0 {
		return Stats{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	var sum float64
	for _, x := range s {
		sum += x
	}
	q := func(p float64) float64 { // linear interpolation, as pandas
		pos := p * float64(len(s)-1)
		lo := int(math.Floor(pos))
		hi := min(lo+1, len(s)-1)
		return s[lo] + (s[hi]-s[lo])*(pos-float64(lo))
	}
	return Stats{N: len(s), Mean: sum / float64(len(s)), P10: q(0.1), P50: q(0.5), P90: q(0.9), Min: s[0], Max: s[len(s)-1]}
}

// Metrics are the evaluator's performance figures for a solution.
type Metrics struct {
	Orders, Delivered    int
	TotalPay             float64
	GuaranteeShare       float64 // share of couriers paid the hourly guarantee
	ClickToDoor          Stats
	ReadyToDoor          Stats
	ReadyToPickup        Stats
	Overage              Stats   // click-to-door beyond the target
	OrdersPerCourierHour float64 // mean over couriers
	BundlesPerHour       float64 // mean over couriers
	Utilization          float64 // mean over couriers
	BundleSize           Stats
}

// DeliveredShare is delivered orders over all orders.
func (m Metrics) DeliveredShare() float64 {
	if m.Orders == 0 {
		return 0
	}
	return float64(m.Delivered) / float64(m.Orders)
}

// CostPerOrder is the total courier pay over delivered orders.
func (m Metrics) CostPerOrder() float64 {
	if m.Delivered == 0 {
		return math.Inf(1)
	}
	return m.TotalPay / float64(m.Delivered)
}

// Score computes the evaluator's figures. It assumes Check found nothing.
func Score(in *Instance, s *Solution) Metrics {
	p := in.Params
	m := Metrics{Orders: len(in.Orders)}
	var c2d, r2d, r2p, over []float64
	served := map[string]int{}
	for _, o := range in.Orders {
		d := s.Orders[o.ID]
		if !d.Delivered {
			continue
		}
		m.Delivered++
		served[d.Courier]++
		c := float64(d.DropoffAt - o.Placed)
		c2d = append(c2d, c)
		r2d = append(r2d, float64(d.DropoffAt-o.Ready))
		r2p = append(r2p, float64(d.PickupAt-o.Ready))
		over = append(over, max(0, c-float64(p.TargetC2D)))
	}
	m.ClickToDoor, m.ReadyToDoor, m.ReadyToPickup, m.Overage = describe(c2d), describe(r2d), describe(r2p), describe(over)

	bundles := map[string]int{}
	var sizes []float64
	for _, a := range s.Assignments {
		bundles[a.Courier]++
		sizes = append(sizes, float64(len(a.Orders)))
	}
	m.BundleSize = describe(sizes)
	lines := timelines(in, s, func(string, ...any) {})
	var oph, bph, util float64
	trueUp := 0
	for _, c := range in.Couriers {
		shift := float64(c.Off - c.On)
		guaranteed := shift * p.GuaranteedPerHour / 60
		earned := float64(served[c.ID]) * p.PayPerOrder
		m.TotalPay += max(earned, guaranteed)
		if earned < guaranteed {
			trueUp++
		}
		if shift > 0 {
			oph += 60 * float64(served[c.ID]) / shift
			bph += 60 * float64(bundles[c.ID]) / shift
			busy := float64(lines[c.ID].driving + served[c.ID]*p.DropoffService + bundles[c.ID]*p.PickupService)
			util += busy / shift
		}
	}
	if n := float64(len(in.Couriers)); n > 0 {
		m.GuaranteeShare = float64(trueUp) / n
		m.OrdersPerCourierHour, m.BundlesPerHour, m.Utilization = oph/n, bph/n, util/n
	}
	return m
}
