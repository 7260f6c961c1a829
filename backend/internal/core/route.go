package core

import (
	"slices"
	"time"

	"github.com/tawsil/tawsil/backend/internal/order"
	"github.com/tawsil/tawsil/backend/internal/routing"
)

// Planned service times at stops: what the route planner counts for a
// stop (the server's plans and the simulator's are made with these).
const (
	PickupService  = 3 * time.Minute
	DropoffService = 3 * time.Minute
)

// Stops are the open stops one order puts in its courier's route: by its
// status, the pick-up and the drop-off (a relay point's hand-over when the
// drop-off moved to one), the drop-off alone once on board, or the way back
// to the merchant. A retry's not-before is the drop-off's earliest time.
func Stops(o State) []routing.Stop {
	notBefore := o.NotBefore
	due := o.PromiseBy
	if notBefore.After(due) {
		// The promise cannot be kept any more (a retry in the next wave):
		// the stop is due as soon as it may be made, so the planner still
		// weighs its lateness and the window stays valid.
		due = notBefore
	}
	pick := routing.Stop{OrderID: o.ID, Kind: routing.Pickup, Loc: routing.Point{Lat: o.Pickup.Lat, Lng: o.Pickup.Lng}, Service: PickupService}
	drop := routing.Stop{OrderID: o.ID, Kind: routing.Dropoff, Loc: routing.Point{Lat: o.Dropoff.Lat, Lng: o.Dropoff.Lng}, Service: DropoffService, Latest: due, Earliest: notBefore}
	if o.RelayID != "" {
		drop.Kind = routing.Relay
	}
	switch o.Status {
	case order.StatusAssigned:
		return []routing.Stop{pick, drop}
	case order.StatusPickedUp, order.StatusReattemptScheduled:
		return []routing.Stop{drop}
	case order.StatusReturning:
		back := o.Pickup
		if o.OrigPickup != nil {
			back = *o.OrigPickup
		}
		return []routing.Stop{{OrderID: o.ID, Kind: routing.Return, Loc: routing.Point{Lat: back.Lat, Lng: back.Lng}, Service: PickupService}}
	}
	return nil
}

// PlanInput is the planner's input for a courier carrying orders: their
// stops by promise, the stops of the previous plan (prev, nil for none)
// kept in that order ahead of new ones, every pick-up before its drop-off.
// The planner starts from it, so a new plan is never worse on lateness
// than the old one.
func PlanInput(orders []State, prev []routing.Stop) []routing.Stop {
	mine := slices.Clone(orders)
	slices.SortStableFunc(mine, func(a, b State) int { return a.PromiseBy.Compare(b.PromiseBy) })
	var stops []routing.Stop
	for _, o := range mine {
		stops = append(stops, Stops(o)...)
	}
	if prev == nil {
		return stops
	}
	rank := map[string]int{}
	for i, st := range prev {
		rank[st.OrderID+"/"+string(st.Kind)] = i + 1
	}
	slices.SortStableFunc(stops, func(a, b routing.Stop) int {
		ra, rb := rank[a.OrderID+"/"+string(a.Kind)], rank[b.OrderID+"/"+string(b.Kind)]
		if ra == 0 {
			ra = 1 << 30
		}
		if rb == 0 {
			rb = 1 << 30
		}
		return ra - rb
	})
	return fixPrecedence(stops)
}

// fixPrecedence moves any pickup that ended up after its drop-off just
// before it (new orders appended at the end can only be in order already).
func fixPrecedence(stops []routing.Stop) []routing.Stop {
	out := make([]routing.Stop, 0, len(stops))
	seenDrop := map[string]int{}
	for _, st := range stops {
		if st.Kind == routing.Pickup {
			if i, ok := seenDrop[st.OrderID]; ok {
				out = slices.Insert(out, i, st)
				for k, v := range seenDrop {
					if v >= i {
						seenDrop[k] = v + 1
					}
				}
				continue
			}
		} else {
			seenDrop[st.OrderID] = len(out)
		}
		out = append(out, st)
	}
	return out
}

// DepartsExcept lists the planned departures from a route's stops other
// than one order's, in route order: what after_next_stops counts.
func DepartsExcept(visits []routing.Visit, orderID string) []time.Time {
	var out []time.Time
	for _, v := range visits {
		if v.OrderID != orderID {
			out = append(out, v.Depart)
		}
	}
	return out
}
