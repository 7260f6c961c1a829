package dispatch

import (
	"github.com/tawsil/tawsil/backend/internal/geo"
	"time"
)

// jobPaces are the paces leaving the job's two points, looked up once per
// decision and shared by every candidate.
type jobPaces struct{ pickup, dropoff float64 }

func (d *Dispatcher) jobPaces(job Job, now time.Time) jobPaces {
	return jobPaces{
		pickup:  d.eta.Pace(job.Pickup.Lat, job.Pickup.Lng, now),
		dropoff: d.eta.Pace(job.Dropoff.Lat, job.Dropoff.Lng, now),
	}
}

// insertion is the best way found to add a job to a courier's route.
type insertion struct {
	pickupAt   time.Time     // arrival at the new pick-up
	deliveryAt time.Time     // handover of the new order (arrival + drop-off service)
	added      time.Duration // how much later the route ends
	delay      time.Duration // sum of how much later each carried order is handed over
	slack      time.Duration // tightest promise minus its handover, over every drop-off
	end        time.Time     // when the last stop is done
	terms      Terms         // the insertion-dependent cost terms
	pick, drop int           // the pick-up's slot and the drop-off's (after drop existing stops)
}

// leg is the travel time from a to b at the pace of a. Paces are taken at
// the decision time for the whole route: routes span well under two hours
// and per-hour speeds change slowly, and it keeps one lookup per point.
func leg(a, b Point, pace float64) time.Duration {
	return time.Duration(geo.DistanceM(a, b) * pace * float64(time.Second))
}

// insert finds the cheapest insertion of job into c's route (pick-up at
// slot i, drop-off after j existing stops, j >= i; plan builds the route). Without batching only
// the append (i = j = len(route)) is tried. Every drop-off already on the
// route must keep its promise (or, if already late, get no later); with
// enforceNew the new drop-off must keep its own. ok is false when no
// insertion qualifies.
func (d *Dispatcher) insert(job Job, jp jobPaces, c *Candidate, now time.Time, batched, enforceNew bool) (best insertion, ok bool) {
	n := len(c.Route)
	var pbuf [17]float64
	paces := pbuf[:0]
	if n+1 > len(pbuf) {
		paces = make([]float64, 0, n+1)
	}
	var tbuf [16]time.Time
	base := tbuf[:0]
	if n > len(tbuf) {
		base = make([]time.Time, 0, n)
	}

	start := Point{Lat: c.Lat, Lng: c.Lng}
	paces = append(paces, d.eta.Pace(start.Lat, start.Lng, now))
	t, pos, pace := c.startAt(now), start, paces[0]
	for _, s := range c.Route {
		t = t.Add(leg(pos, s.At, pace))
		t = waitReady(t, s.Kind, s.ReadyAt).Add(d.service(s.Kind))
		base = append(base, t)
		pace = d.eta.Pace(s.At.Lat, s.At.Lng, now)
		paces = append(paces, pace)
		pos = s.At
	}
	baseEnd := t

	lo := n
	if batched {
		lo = 0
	}
	var bi, bj int
	for i := lo; i <= n; i++ {
		for j := i; j <= n; j++ {
			ins, good := d.simulate(job, jp, c, paces, base, now, i, j, enforceNew)
			if !good {
				continue
			}
			ins.added = ins.end.Sub(baseEnd)
			ins.terms = d.terms(ins, now)
			if !ok || ins.terms.sum() < best.terms.sum() || (ins.terms.sum() == best.terms.sum() && ins.deliveryAt.Before(best.deliveryAt)) {
				best, bi, bj, ok = ins, i, j, true
			}
		}
	}
	best.pick, best.drop = bi, bj
	return best, ok
}

// plan is c's route with job inserted as ins says: pick-up at slot
// ins.pick, drop-off after ins.drop existing stops.
func plan(job Job, c *Candidate, ins insertion) []Stop {
	bi, bj := ins.pick, ins.drop
	p := make([]Stop, 0, len(c.Route)+2)
	p = append(p, c.Route[:bi]...)
	p = append(p, Stop{OrderID: job.OrderID, Kind: StopPickup, At: job.Pickup, Origin: job.Pickup, ReadyAt: job.ReadyAt})
	p = append(p, c.Route[bi:bj]...)
	p = append(p, Stop{OrderID: job.OrderID, Kind: StopDropoff, At: job.Dropoff, PromiseBy: job.PromiseBy, Origin: job.Pickup})
	p = append(p, c.Route[bj:]...)
	return p
}

// simulate walks the route with the job's pick-up at slot i and drop-off
// after j existing stops, and checks the promises.
func (d *Dispatcher) simulate(job Job, jp jobPaces, c *Candidate, paces []float64, base []time.Time, now time.Time, i, j int, enforceNew bool) (insertion, bool) {
	n := len(c.Route)
	t, pos, pace := c.startAt(now), Point{Lat: c.Lat, Lng: c.Lng}, paces[0]
	ins := insertion{slack: 1<<63 - 1}
	for k := 0; k < n+2; k++ {
		var (
			at      Point
			next    float64
			kind    StopKind
			promise time.Time
			ready   time.Time
			e       = -1 // index of an existing stop, or -1 for the job's
		)
		switch {
		case k < i:
			e = k
		case k == i:
			at, next, kind, ready = job.Pickup, jp.pickup, StopPickup, job.ReadyAt
		case k <= j:
			e = k - 1
		case k == j+1:
			at, next, kind, promise = job.Dropoff, jp.dropoff, StopDropoff, job.PromiseBy
		default:
			e = k - 2
		}
		if e >= 0 {
			s := &c.Route[e]
			at, next, kind, promise, ready = s.At, paces[e+1], s.Kind, s.PromiseBy, s.ReadyAt
		}
		t = t.Add(leg(pos, at, pace))
		if e < 0 && kind == StopPickup {
			ins.pickupAt = t
		}
		t = waitReady(t, kind, ready).Add(d.service(kind))
		pos, pace = at, next
		if e < 0 && kind == StopDropoff {
			ins.deliveryAt = t
		}
		if kind != StopDropoff || promise.IsZero() {
			continue
		}
		// Prediction error grows with the legs before a stop.
		margin := d.cfg.Margin + time.Duration(k)*d.cfg.MarginPerStop
		if e < 0 {
			if enforceNew && t.After(promise.Add(-margin)) {
				return ins, false
			}
		} else {
			limit := promise.Add(-margin)
			if base[e].After(limit) {
				limit = base[e] // already late: may not get later
			}
			if t.After(limit) {
				return ins, false
			}
			ins.delay += max(t.Sub(base[e]), 0)
		}
		ins.slack = min(ins.slack, promise.Sub(t))
	}
	ins.end = t
	return ins, true
}

// startAt is when c starts on its route: now, or later if it is still busy.
func (c *Candidate) startAt(now time.Time) time.Time {
	if c.FreeAt.After(now) {
		return c.FreeAt
	}
	return now
}

// waitReady is when a stop reached at t can be served: a pick-up waits for
// its parcel to be ready.
func waitReady(t time.Time, k StopKind, ready time.Time) time.Time {
	if k == StopPickup && ready.After(t) {
		return ready
	}
	return t
}

func (d *Dispatcher) service(k StopKind) time.Duration {
	if k == StopPickup {
		return d.cfg.PickupService
	}
	return d.cfg.DropoffService
}

// terms prices an insertion; load and fairness are added by score.
func (d *Dispatcher) terms(ins insertion, now time.Time) Terms {
	w := d.cfg.Weights
	return Terms{
		Pickup:   w.PickupMin * minutes(ins.pickupAt.Sub(now)),
		Detour:   w.DetourMin * minutes(ins.added),
		Delivery: w.DeliveryMin * minutes(ins.deliveryAt.Sub(now)),
		Delay:    w.DelayMin * minutes(ins.delay),
		Slack:    w.SlackShortMin * max(0, minutes(d.cfg.SlackTarget-ins.slack)),
	}
}

// PredictDelivery returns when the order's drop-off in route will be
// handed over, for a courier at pos driving the route from now, and false
// if the route has no drop-off for the order.
func (d *Dispatcher) PredictDelivery(orderID string, pos Point, route []Stop, now time.Time) (time.Time, bool) {
	t, at := now, pos
	pace := d.eta.Pace(pos.Lat, pos.Lng, now)
	for _, s := range route {
		t = t.Add(leg(at, s.At, pace))
		t = waitReady(t, s.Kind, s.ReadyAt).Add(d.service(s.Kind))
		if s.Kind == StopDropoff && s.OrderID == orderID {
			return t, true
		}
		at = s.At
		pace = d.eta.Pace(at.Lat, at.Lng, now)
	}
	return time.Time{}, false
}

// AtRisk reports whether a predicted handover misses the promise by less
// than margin (or misses it outright): the order gets the at-risk flag.
func AtRisk(pred, promiseBy time.Time, margin time.Duration) bool {
	return pred.After(promiseBy.Add(-margin))
}
