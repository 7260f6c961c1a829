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
// the pick-up and queued, the orders already waiting in the pick-up cell
// (booked, not yet assigned).
//
// Each candidate's delivery time is computed as in Score (idle couriers go
// straight there; busy ones finish their stops first unless they batch),
// but without requiring the new promise. The queue takes the earliest
// couriers first: with q orders waiting and m usable couriers, the new
// order gets the (q mod m)-th earliest, plus q/m full cycles (pick-up,
// ride, drop-off, ride back) for the rounds before it.
//
// With allowLater, an order that misses the hour gets an honest later
// promise: that predicted handover rounded up to 5 minutes, plus the
// safety margin. Without candidates there is nothing honest to promise.
func (d *Dispatcher) Feasibility(pickup, dropoff Point, cands []Candidate, pickupCellLoad int, now time.Time, allowLater bool) Feasibility {
	job := Job{OrderID: "quote", Pickup: pickup, Dropoff: dropoff}
	jp := d.jobPaces(job, now)
	type option struct {
		at time.Time
		id string
	}
	opts := make([]option, 0, len(cands))
	for i := range cands {
		c := &cands[i]
		capacity := c.Capacity
		if capacity <= 0 {
			capacity = d.cfg.DefaultCapacity
		}
		if c.Load >= capacity || c.CashCapped || !validPoint(Point{Lat: c.Lat, Lng: c.Lng}) {
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
	q := max(pickupCellLoad, 0)
	pick := opts[q%len(opts)]
	rounds := q / len(opts)
	ride := leg(pickup, dropoff, jp.pickup)
	cycle := d.cfg.PickupService + ride + d.cfg.DropoffService + leg(dropoff, pickup, jp.dropoff)
	deliver := pick.at.Add(time.Duration(rounds) * cycle)

	f := Feasibility{
		ETAMinutes: math.Round(deliver.Sub(now).Minutes()*10) / 10,
		CourierID:  pick.id,
	}
	if q > 0 {
		f.CourierID = "" // a queued order may get any courier: do not name one
	}
	if !deliver.After(now.Add(d.cfg.Promise)) {
		f.Feasible = true
		f.PromiseBy = now.Add(d.cfg.Promise)
		return f
	}
	f.Reason = fmt.Sprintf("earliest handover in %.0f min exceeds the %.0f min promise", deliver.Sub(now).Minutes(), d.cfg.Promise.Minutes())
	if q > 0 {
		f.Reason += fmt.Sprintf(" (%d orders queued at the pick-up)", q)
	}
	if allowLater {
		f.Later = true
		f.PromiseBy = deliver.Add(d.cfg.Margin).Truncate(5 * time.Minute).Add(5 * time.Minute)
	}
	return f
}
