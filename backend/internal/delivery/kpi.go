package delivery

import (
	"context"
	"github.com/tawsil/tawsil/backend/internal/core"
	"github.com/tawsil/tawsil/backend/internal/geo"
	"math"
	"slices"
	"time"

	"github.com/uber/h3-go/v4"

	"github.com/tawsil/tawsil/backend/internal/mongostore"
	"github.com/tawsil/tawsil/backend/internal/order"
)

// Costs price courier time and distance for the cost-per-order figure.
type Costs = core.Costs

// KPI is one group's figures over a period.
type KPI struct {
	Group                string   `json:"group"`
	Orders               int      `json:"orders"`
	Delivered            int      `json:"delivered"`
	OnTimeRate           *float64 `json:"on_time_rate"` // delivered within the promise / delivered
	MedianDeliveryMin    *float64 `json:"median_delivery_min"`
	P90DeliveryMin       *float64 `json:"p90_delivery_min"`
	FailedAttempts       int      `json:"failed_attempts"`
	FailedAttemptRate    *float64 `json:"failed_attempt_rate"` // failed attempts / delivery attempts
	FailedThenOnTime     int      `json:"failed_then_on_time"` // failed at least once, still delivered in time
	Returned             int      `json:"returned"`
	Cancelled            int      `json:"cancelled"`
	OrdersPerCourierHour *float64 `json:"orders_per_courier_hour"` // whole fleet only
	CostPerOrderMAD      *float64 `json:"cost_per_order_mad"`      // whole fleet only
	CODCollectedMAD      float64  `json:"cod_collected_mad"`       // cash on delivery collected for the group's delivered orders
	CODOutstandingMAD    float64  `json:"cod_outstanding_mad"`     // of which not yet handed over to the merchant (its day unsettled)
	CourierHours         float64  `json:"courier_hours,omitempty"`
	CourierKm            float64  `json:"courier_km,omitempty"`
}

// KPIs computes figures for orders booked in [from, to), grouped by
// "merchant", "cell" (res-8 pick-up cell) or "" (all). merchantID limits
// to one merchant. Courier hours come from shifts and courier kilometres
// from position history (whole-fleet figures only).
func (s *Service) KPIs(ctx context.Context, from, to time.Time, group, merchantID string, costs Costs) ([]KPI, error) {
	var all []mongostore.StoredOrder
	after := ""
	for {
		page, err := s.d.Store.Orders(ctx, mongostore.OrderFilter{MerchantID: merchantID, From: from, To: to, After: after, Limit: 2000})
		if err != nil {
			return nil, err
		}
		all = append(all, page...)
		if len(page) < 2000 {
			break
		}
		after = page[len(page)-1].ID
	}
	groups := map[string][]*order.Order{}
	for i := range all {
		o := all[i].Order
		key := "all"
		switch group {
		case "merchant":
			key = o.MerchantID
		case "cell":
			c, err := h3.LatLngToCell(h3.NewLatLng(pickupOf(all[i]).Lat, pickupOf(all[i]).Lng), 8)
			if err == nil {
				key = c.String()
			}
		}
		groups[key] = append(groups[key], o)
	}
	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	settled, err := s.settledDays(ctx, all, from, to)
	if err != nil {
		return nil, err
	}
	out := make([]KPI, 0, len(keys))
	for _, k := range keys {
		out = append(out, figures(k, groups[k], settled))
	}
	if len(out) == 0 {
		out = append(out, figures("all", nil, settled))
	}
	if group == "" && merchantID == "" && len(out) == 1 {
		hours, km, err := s.fleetUsage(ctx, from, to)
		if err != nil {
			return nil, err
		}
		k := &out[0]
		k.CourierHours, k.CourierKm = round2(hours), round2(km)
		if hours > 0 {
			k.OrdersPerCourierHour = ptr(round2(float64(k.Delivered) / hours))
		}
		if k.Delivered > 0 {
			k.CostPerOrderMAD = ptr(round2((hours*costs.PerHourMAD + km*costs.PerKmMAD) / float64(k.Delivered)))
		}
	}
	return out, nil
}

func pickupOf(o mongostore.StoredOrder) order.Place {
	if o.OrigPickup != nil {
		return *o.OrigPickup
	}
	return o.Pickup
}

// settledDays tells whether an order's cash on delivery was handed over to
// its merchant (the merchant's day of the delivery is settled).
func (s *Service) settledDays(ctx context.Context, os []mongostore.StoredOrder, from, to time.Time) (func(*order.Order) bool, error) {
	none := func(*order.Order) bool { return false }
	if s.d.Cash == nil {
		return none, nil
	}
	cod := false
	for _, o := range os {
		cod = cod || o.CODAmountMAD > 0
	}
	if !cod {
		return none, nil
	}
	// Deliveries of orders booked in [from, to) end within a few days of to.
	days, err := s.d.Cash.SettledDays(ctx, from.AddDate(0, 0, -1), to.AddDate(0, 0, 3))
	if err != nil {
		return nil, err
	}
	loc := s.d.Cash.Zone()
	return func(o *order.Order) bool {
		return days[o.MerchantID+" "+o.Milestones.DeliveredAt.In(loc).Format(time.DateOnly)]
	}, nil
}

func figures(key string, os []*order.Order, settled func(*order.Order) bool) KPI {
	k := KPI{Group: key, Orders: len(os)}
	var mins []float64
	onTime, attempts := 0, 0
	for _, o := range os {
		k.FailedAttempts += len(o.Attempts)
		attempts += len(o.Attempts)
		switch o.Status {
		case order.StatusDelivered:
			k.Delivered++
			attempts++
			if o.CODAmountMAD > 0 {
				k.CODCollectedMAD += o.CashCollected
				if !settled(o) {
					k.CODOutstandingMAD += o.CashCollected
				}
			}
			d := o.Milestones.DeliveredAt.Sub(o.BookedAt).Minutes()
			mins = append(mins, d)
			if !o.Milestones.DeliveredAt.After(o.PromiseBy) {
				onTime++
				if len(o.Attempts) > 0 {
					k.FailedThenOnTime++
				}
			}
		case order.StatusReturned:
			k.Returned++
		case order.StatusCancelled:
			k.Cancelled++
		}
	}
	if k.Delivered > 0 {
		k.OnTimeRate = ptr(round2(float64(onTime) / float64(k.Delivered)))
		slices.Sort(mins)
		k.MedianDeliveryMin = ptr(round2(quantile(mins, 0.5)))
		k.P90DeliveryMin = ptr(round2(quantile(mins, 0.9)))
	}
	if attempts > 0 {
		k.FailedAttemptRate = ptr(round2(float64(k.FailedAttempts) / float64(attempts)))
	}
	return k
}

// fleetUsage sums shift hours and travelled kilometres in [from, to).
func (s *Service) fleetUsage(ctx context.Context, from, to time.Time) (hours, km float64, err error) {
	shifts, err := s.d.Store.Shifts(ctx, from, to)
	if err != nil {
		return 0, 0, err
	}
	couriers := map[string]bool{}
	now := s.now()
	for _, sh := range shifts {
		end := sh.To
		if end.IsZero() {
			end = now
		}
		start := maxTime(sh.From, from)
		end = minTime(end, to)
		if end.After(start) {
			hours += end.Sub(start).Hours()
		}
		couriers[sh.CourierID] = true
	}
	for c := range couriers {
		ps, err := s.d.Store.Track(ctx, c, from, to, 200_000)
		if err != nil {
			return 0, 0, err
		}
		for i := 1; i < len(ps); i++ {
			if d := geo.DistanceLatLngM(ps[i-1].Lat, ps[i-1].Lng, ps[i].Lat, ps[i].Lng); d < 5000 {
				km += d / 1000
			}
		}
	}
	return hours, km, nil
}

func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	pos := q * float64(len(sorted)-1)
	lo := int(math.Floor(pos))
	hi := int(math.Ceil(pos))
	return sorted[lo] + (sorted[hi]-sorted[lo])*(pos-float64(lo))
}

func round2(f float64) float64 { return math.Round(f*100) / 100 }
func ptr[T any](v T) *T        { return &v }
func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
