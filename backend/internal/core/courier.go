package core

import (
	"time"

	"github.com/tawsil/tawsil/backend/internal/dispatch"
	"github.com/tawsil/tawsil/backend/internal/geo"
	"github.com/tawsil/tawsil/backend/internal/routing"
)

// Courier is what a shell knows of a courier near a pick-up: from the live
// index (the server) or the simulated world, and its planned route.
type Courier struct {
	ID            string
	At            geo.Point
	DistanceM     float64 // to the pick-up
	Load          int     // orders it carries or is to pick up
	Capacity      int
	Vehicle       string
	AssignedToday int // orders assigned to it today (fairness)
	// IdleSince is when its last order left its hands or its shift began
	// (Idle); LastSeen, its last fix, stands in when neither is known.
	IdleSince time.Time
	LastSeen  time.Time
	Visits    []routing.Visit // its planned route
}

// Candidate is a courier as dispatch ranks it: its planned stops with each
// order's origin and promise (lookup finds an order, nil when unknown), and
// an idle time only when it carries nothing.
func Candidate(c Courier, lookup func(orderID string) *State) dispatch.Candidate {
	d := dispatch.Candidate{CourierID: c.ID, Lat: c.At.Lat, Lng: c.At.Lng, DistanceM: c.DistanceM, Load: c.Load,
		Capacity: c.Capacity, Vehicle: c.Vehicle, AssignedToday: c.AssignedToday}
	if c.Load == 0 {
		if d.IdleSince = c.IdleSince; d.IdleSince.IsZero() {
			d.IdleSince = c.LastSeen
		}
	}
	for _, v := range c.Visits {
		st := dispatch.Stop{OrderID: v.OrderID, At: v.Loc, Kind: dispatch.StopDropoff}
		if v.Kind == routing.Pickup {
			st.Kind = dispatch.StopPickup
		}
		if o := lookup(v.OrderID); o != nil {
			st.Origin = geo.Point{Lat: o.Pickup.Lat, Lng: o.Pickup.Lng}
			if v.Kind != routing.Pickup {
				st.PromiseBy = o.PromiseBy
			}
		}
		d.Route = append(d.Route, st)
	}
	return d
}

// Idle is when a courier whose load is now load became idle, given the
// time it had (zero: none): none while it carries orders, now when it has
// just emptied, unchanged otherwise.
func Idle(since time.Time, load int, now time.Time) time.Time {
	switch {
	case load > 0:
		return time.Time{}
	case since.IsZero():
		return now
	}
	return since
}
