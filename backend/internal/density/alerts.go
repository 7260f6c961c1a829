package density

import (
	"cmp"
	"math"
	"slices"
	"time"
)

// Alert is an under-supplied cell. Lat and Lng are its centre, for the
// caller to look up the nearest idle couriers (livemap Nearest) to send.
type Alert struct {
	Cell              string
	Lat, Lng          float64
	Demand            int // OpenOrders + Booked15m
	AvailableCouriers int
	BusyCouriers      int
	OpenOrders        int
	Booked15m         int
	// Ratio is Demand / AvailableCouriers; +Inf when no courier is available
	// (NoSupply), which is never encoded: use NoSupply.
	Ratio    float64 `json:"-"`
	NoSupply bool
}

// Alerts returns the cells at res where demand outruns supply, worst first.
//
// Demand is what needs a courier soon: orders open at pickup in the cell
// plus orders booked there in the last 15 minutes (a booking is usually
// still open, so a fresh order weighs twice: deliberate, as fresh demand
// predicts more). Supply is available couriers. A cell alerts when it has
// demand and Demand > ratio × Supply; with no available courier any demand
// alerts (NoSupply). Order: NoSupply first, then higher Ratio, then higher
// Demand, then cell. An unsupported res returns nil.
func (m *Map) Alerts(res int, ratio float64, now time.Time) []Alert {
	var out []Alert
	for _, s := range m.Cells(res, nil, now) {
		demand := s.OpenOrders + s.Booked15m
		if demand == 0 || float64(demand) <= ratio*float64(s.AvailableCouriers) {
			continue
		}
		a := Alert{
			Cell: s.Cell, Lat: s.Lat, Lng: s.Lng, Demand: demand,
			AvailableCouriers: s.AvailableCouriers, BusyCouriers: s.BusyCouriers,
			OpenOrders: s.OpenOrders, Booked15m: s.Booked15m,
			Ratio: math.Inf(1), NoSupply: s.AvailableCouriers == 0,
		}
		if !a.NoSupply {
			a.Ratio = float64(demand) / float64(s.AvailableCouriers)
		}
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b Alert) int {
		if a.NoSupply != b.NoSupply {
			if a.NoSupply {
				return -1
			}
			return 1
		}
		return cmp.Or(cmp.Compare(b.Ratio, a.Ratio), cmp.Compare(b.Demand, a.Demand), cmp.Compare(a.Cell, b.Cell))
	})
	return out
}
