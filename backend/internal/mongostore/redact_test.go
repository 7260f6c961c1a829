package mongostore_test

import (
	"context"
	"testing"
	"time"

	"github.com/tawsil/tawsil/backend/internal/mongostore"
	"github.com/tawsil/tawsil/backend/internal/order"
)

func TestRedactFinishedOrders(t *testing.T) {
	st := mustStore(t)
	ctx := context.Background()
	now := time.Now().UTC()
	mk := func(status order.Status, booked time.Time) string {
		o, err := order.Book(order.Booking{ID: mongostore.NewOrderID(), MerchantID: "m", Pickup: order.Place{Lat: 33.5, Lng: -7.6, Address: "Store"},
			Dropoff: order.Place{Lat: 33.51, Lng: -7.61, Address: "12 Rue Ibnou Katir, 3e étage"}, Size: order.SizeS,
			CustomerName: "Amina Alaoui", CustomerPhone: "+212612345678", PriceMAD: 26.5}, booked)
		if err != nil {
			t.Fatal(err)
		}
		o.Status = status
		if err := st.InsertOrder(ctx, mongostore.StoredOrder{Order: o}); err != nil {
			t.Fatal(err)
		}
		return o.ID
	}
	old := mk(order.StatusDelivered, now.AddDate(0, 0, -100))
	recent := mk(order.StatusDelivered, now.AddDate(0, 0, -10))
	active := mk(order.StatusPickedUp, now.AddDate(0, 0, -100))
	n, err := st.RedactOrders(ctx, now.AddDate(0, 0, -90), func(o *order.Order) { o.Redact(); o.Version++ })
	if err != nil || n != 1 {
		t.Fatalf("redacted %d, %v; want 1", n, err)
	}
	got, err := st.Order(ctx, old)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Redacted || got.CustomerName != "" || got.CustomerPhone != "" || got.Dropoff.Address != "" || got.PriceMAD != 26.5 {
		t.Fatalf("old order after redaction: %+v", got.Order)
	}
	for _, id := range []string{recent, active} {
		o, err := st.Order(ctx, id)
		if err != nil || o.Redacted || o.CustomerPhone == "" {
			t.Fatalf("order %s redacted too early: %+v, %v", id, o.Order, err)
		}
	}
	// Running again changes nothing.
	if n, err := st.RedactOrders(ctx, now.AddDate(0, 0, -90), func(o *order.Order) { o.Redact(); o.Version++ }); err != nil || n != 0 {
		t.Fatalf("second run redacted %d, %v", n, err)
	}
}
