package e2e

import (
	"testing"
	"time"
)

func TestAtRiskPrediction(t *testing.T) {
	b := mustBackend(t, nil)
	admin, _ := b.login(t, adminEmail, adminPass)
	merchant := b.mustUser(t, admin, "merchant")
	dispatcher := b.mustUser(t, admin, "dispatcher")
	near := b.mustCourierDevice(t, admin)
	near.at(t, store, time.Now())
	far := b.mustCourierDevice(t, admin)
	far.at(t, [2]float64{33.6866, -7.3830}, time.Now()) // Mohammedia, ~27 km away
	o := b.book(t, merchant, "risk-1", bookBody(custA, "Amina"))
	near.waitTask(t, "offer")
	// A dispatcher hands it to the far courier: the promise cannot hold.
	b.mustStatus(t, 200, "POST", "/v1/orders/"+o.ID+"/assign", dispatcher.Token, map[string]any{"courier_id": far.CourierID})
	var list struct {
		Orders []struct {
			OrderID     string    `json:"order_id"`
			CourierID   string    `json:"courier_id"`
			PromiseBy   time.Time `json:"promise_by"`
			PredictedAt time.Time `json:"predicted_at"`
			LateByMin   float64   `json:"late_by_min"`
		} `json:"orders"`
	}
	eventually(t, "order predicted late", 15*time.Second, func() bool {
		b.mustStatus(t, 200, "GET", "/v1/dispatch/at-risk", dispatcher.Token, nil).json(t, &list)
		return len(list.Orders) == 1
	})
	got := list.Orders[0]
	if got.OrderID != o.ID || got.CourierID != far.CourierID || !got.PredictedAt.After(got.PromiseBy) || got.LateByMin < 10 {
		t.Fatalf("at-risk: %+v", got)
	}
	// Given back to the courier at the store, it is no longer at risk.
	b.mustStatus(t, 200, "POST", "/v1/orders/"+o.ID+"/unassign", dispatcher.Token, map[string]any{"reason": "too far"})
	near.waitTask(t, "offer")
	b.mustStatus(t, 200, "POST", "/v1/orders/"+o.ID+"/accept", near.Token, nil)
	eventually(t, "risk cleared", 15*time.Second, func() bool {
		b.mustStatus(t, 200, "GET", "/v1/dispatch/at-risk", dispatcher.Token, nil).json(t, &list)
		return len(list.Orders) == 0
	})
	b.mustStatus(t, 403, "GET", "/v1/dispatch/at-risk", merchant.Token, nil)
}
