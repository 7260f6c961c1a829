package dispatch

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// Feasibility is the answer to "can this be delivered within the promise?".
type Feasibility struct {
	Feasible   bool      `json:"feasible"`
	ETAMinutes float64   `json:"eta_minutes"` // booking to handover, predicted
	PromiseBy  time.Time `json:"promise_by"`  // the promise we can make (zero when none)
	Later      bool      `json:"later"`       // PromiseBy is later than the standard promise
	CourierID  string    `json:"courier_id,omitempty"`
	Reason     string    `json:"reason,omitempty"` // why not feasible (or why later); empty when feasible
}

// Feasibility says whether pickup→dropoff booked now can be handed over
// within the promise (Config.Promise, one hour), given the couriers near
// the pick-up and the orders already waiting there for a courier (queued,
// oldest first). readyAt is when the merchant has the parcel ready (zero:
// now): no courier hands it over before that.
//
// The queue is placed first, as dispatch would place it: each waiting order
// goes to the courier whose route takes it soonest under the same promise
// checks as Score (its own promise kept, capacity, batching from the same
// pick-up), so one courier carries several orders from one store in one
// ride, as long as it keeps room for the new order. Then each candidate's delivery time for the new order is computed
// as in Score, without requiring the new promise. Waiting orders no route
// can take now are a queue of rounds: with q of them and m usable
// couriers, the new order gets the (q mod m)-th earliest, plus q/m full
// cycles (pick-up, ride, drop-off, ride back).
//
// With allowLater, an order that misses the hour gets an honest later
// promise: that predicted handover rounded up to 5 minutes, plus the
// safety margin. Without candidates there is nothing honest to promise.
func (d *Dispatcher) Feasibility(pickup, dropoff Point, readyAt time.Time, cands []Candidate, queued []Job, now time.Time, allowLater bool) Feasibility {
	job := Job{OrderID: "quote", Pickup: pickup, Dropoff: dropoff, ReadyAt: readyAt}
	jp := d.jobPaces(job, now)
	// usable: the courier has room for extra more orders.
	usable := func(c *Candidate, extra int) bool {
		capacity := c.Capacity
		if capacity <= 0 {
			capacity = d.cfg.DefaultCapacity
		}
		return c.Load+extra <= capacity && validPoint(Point{Lat: c.Lat, Lng: c.Lng})
	}
	// Place the queue on copies of the candidates' routes.
	sim := make([]Candidate, len(cands))
	for i := range cands {
		sim[i] = cands[i]
		sim[i].Route = slices.Clone(cands[i].Route)
	}
	waiting := 0
	for _, qj := range queued {
		qp := d.jobPaces(qj, now)
		best, bestAt := -1, time.Time{}
		var bestPlan []Stop
		for i := range sim {
			c := &sim[i]
			if !usable(c, 2) { // a waiting order rides along only if the new one still could
				continue
			}
			ins, ok := d.insert(qj, qp, c, now, d.batchable(qj, c), !qj.PromiseBy.IsZero())
			if ok && (best < 0 || ins.deliveryAt.Before(bestAt)) {
				best, bestAt, bestPlan = i, ins.deliveryAt, plan(qj, c, ins)
			}
		}
		if best < 0 {
			waiting++
			continue
		}
		sim[best].Route = bestPlan
		sim[best].Load++
		sim[best].IdleSince = time.Time{}
	}
	type option struct {
		at time.Time
		id string
	}
	opts := make([]option, 0, len(sim))
	for i := range sim {
		c := &sim[i]
		if !usable(c, 1) {
			continue
		}
		ins, ok := d.insert(job, jp, c, now, d.batchable(job, c), false)
		if !ok {
			continue
		}
		opts = append(opts, option{ins.deliveryAt, c.CourierID})
	}
	if len(opts) == 0 {
		return Feasibility{Reason: "no courier available near the pick-up"}
	}
	slices.SortFunc(opts, func(a, b option) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		if a.id < b.id {
			return -1
		}
		return 1
	})
	q := waiting
	pick := opts[q%len(opts)]
	rounds := q / len(opts)
	ride := leg(pickup, dropoff, jp.pickup)
	cycle := d.cfg.PickupService + ride + d.cfg.DropoffService + leg(dropoff, pickup, jp.dropoff)
	deliver := pick.at.Add(time.Duration(rounds) * cycle)

	f := Feasibility{
		ETAMinutes: math.Round(deliver.Sub(now).Minutes()*10) / 10,
		CourierID:  pick.id,
	}
	if q > 0 || len(queued) > 0 {
		f.CourierID = "" // a queued order may get any courier: do not name one
	}
	if !deliver.After(now.Add(d.cfg.Promise)) {
		f.Feasible = true
		f.PromiseBy = now.Add(d.cfg.Promise)
		return f
	}
	f.Reason = fmt.Sprintf("earliest handover in %.0f min exceeds the %.0f min promise", deliver.Sub(now).Minutes(), d.cfg.Promise.Minutes())
	if len(queued) > 0 {
		f.Reason += fmt.Sprintf(" (%d orders queued at the pick-up, %d of them waiting for a free courier)", len(queued), q)
	}
	if allowLater {
		f.Later = true
		f.PromiseBy = deliver.Add(d.cfg.Margin).Truncate(5 * time.Minute).Add(5 * time.Minute)
	}
	return f
}
