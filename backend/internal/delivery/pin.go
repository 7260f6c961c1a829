package delivery

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/tawsil/tawsil/backend/internal/mongostore"
	"github.com/tawsil/tawsil/backend/internal/order"
)

// ErrPinClosed: the order takes no pin (confirmed already, or dispatched).
var ErrPinClosed = errors.New("the drop-off point can no longer be set")

func pinTimerID(orderID string) string { return "pin/" + orderID }

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
	now := s.now().UTC()
	o, err := s.update(ctx, id, "pin_confirmed", actor, fmt.Sprintf("drop-off point set by the %s", actor.Role), func(n *mongostore.StoredOrder) error {
		if !n.PinPending() || n.Status != order.StatusBooked {
			return fmt.Errorf("%w: the order is %s", ErrPinClosed, n.Status)
		}
		n.Dropoff = drop
		n.Pin.Status, n.Pin.ConfirmedAt, n.Pin.ConfirmedBy = order.PinConfirmed, now, string(actor.Role)
		n.PriceMAD = q.PriceMAD
		// The hour starts when the order can be dispatched; a later honest
		// promise when no courier can make the hour.
		n.PromiseBy = now.Add(order.Promise)
		if q.Later && q.PromiseBy.After(n.PromiseBy) {
			n.PromiseBy = q.PromiseBy.UTC()
		}
		n.Flags.NeedsDispatcher = false
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.cancelTimer(ctx, pinTimerID(id))
	s.hub.Publish("order.pin_confirmed", map[string]any{"order_id": id, "merchant_id": o.MerchantID, "by": string(actor.Role)})
	s.d.Log.Info("drop-off pin confirmed", "order_id", id, "by", string(actor.Role))
	s.goDispatch(id, nil)
	return o, nil
}

// pinOverdue hands an order whose pin never came to the dispatchers.
func (s *Service) pinOverdue(ctx context.Context, id string) error {
	cur, err := s.load(ctx, id, true)
	if err != nil {
		return err
	}
	if !cur.PinPending() || cur.Status != order.StatusBooked {
		return nil
	}
	return s.flagForDispatchers(ctx, id, "the customer did not confirm the drop-off point in time")
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
