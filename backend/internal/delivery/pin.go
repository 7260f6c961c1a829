package delivery

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/tawsil/tawsil/backend/internal/core"
	"github.com/tawsil/tawsil/backend/internal/mongostore"
	"github.com/tawsil/tawsil/backend/internal/order"
)

// ErrPinClosed: the order takes no pin (confirmed already, or dispatched).
var ErrPinClosed = core.ErrPinClosed

// ConfirmPin sets an informal address's drop-off point: the customer
// through the tracking link, or the merchant or a dispatcher who called
// them. The order's point, price and promise follow the pin (an event
// records who set it), and dispatch starts.
func (s *Service) ConfirmPin(ctx context.Context, actor order.Actor, id string, lat, lng float64) (*mongostore.StoredOrder, error) {
	if math.IsNaN(lat) || math.IsNaN(lng) || lat < -90 || lat > 90 || lng < -180 || lng > 180 || (lat == 0 && lng == 0) {
		return nil, fmt.Errorf("%w: lat and lng must be a point", ErrInput)
	}
	cur, err := s.load(ctx, id, true)
	if err != nil {
		return nil, err
	}
	if !cur.PinPending() || cur.Status != order.StatusBooked {
		return nil, fmt.Errorf("%w: the order is %s", ErrPinClosed, cur.Status)
	}
	pickupCity, err := s.d.Areas.Check(cur.Pickup.Lat, cur.Pickup.Lng)
	if err != nil {
		return nil, fmt.Errorf("%w: pickup: %v", ErrOutsideArea, err)
	}
	if city, err := s.d.Areas.Check(lat, lng); err != nil || city != pickupCity {
		return nil, fmt.Errorf("%w: the drop-off point must be in %s's service area", ErrOutsideArea, pickupCity)
	}
	drop := cur.Dropoff
	drop.Lat, drop.Lng = lat, lng
	q, err := s.Quote(ctx, QuoteRequest{Pickup: cur.Pickup, Dropoff: drop, Size: cur.Size, CODAmount: cur.CODAmountMAD, AllowLater: true})
	if err != nil {
		return nil, err
	}
	var later time.Time
	if q.Later {
		later = q.PromiseBy.UTC()
	}
	o, _, err := s.run(ctx, id, core.PinConfirmed{Actor: actor, Dropoff: drop, PriceMAD: q.PriceMAD, Later: later}, true)
	if err != nil {
		return nil, err
	}
	s.d.Log.Info("drop-off pin confirmed", "order_id", id, "by", string(actor.Role))
	return o, nil
}

// PinWindow is the confirmation window for a merchant's confirm_within_min
// (0: the default 20 minutes).
func PinWindow(minutes int) (time.Duration, error) {
	if minutes == 0 {
		return 20 * time.Minute, nil
	}
	if minutes < 5 || minutes > 240 {
		return 0, fmt.Errorf("%w: confirm_within_min must be between 5 and 240", ErrInput)
	}
	return time.Duration(minutes) * time.Minute, nil
}
