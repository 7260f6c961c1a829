package delivery

import (
	"testing"

	"github.com/tawsil/tawsil/backend/internal/core"
	"github.com/tawsil/tawsil/backend/internal/mongostore"
	"github.com/tawsil/tawsil/backend/internal/order"
)

func TestEventNames(t *testing.T) {
	tests := []struct {
		give order.Event
		want string
	}{
		{order.Event{Action: "book", To: order.StatusBooked}, "order.booked"},
		{order.Event{Action: order.ActOffer, From: order.StatusBooked, To: order.StatusOffered}, "order.offered"},
		{order.Event{Action: order.ActExpire, From: order.StatusOffered, To: order.StatusBooked}, "order.offer_expired"},
		{order.Event{Action: order.ActDecline, From: order.StatusOffered, To: order.StatusBooked}, "order.offer_declined"},
		{order.Event{Action: order.ActUnassign, From: order.StatusAssigned, To: order.StatusBooked}, "order.unassigned"},
		{order.Event{Action: order.ActReassign, From: order.StatusFailedAttempt, To: order.StatusBooked}, "order.reassigned"},
		{order.Event{Action: order.ActAccept, From: order.StatusOffered, To: order.StatusAssigned}, "order.assigned"},
		{order.Event{Action: order.ActFail, From: order.StatusPickedUp, To: order.StatusFailedAttempt}, "order.failed_attempt"},
		{order.Event{Action: order.ActCancel, From: order.StatusBooked, To: order.StatusCancelled}, "order.cancelled"},
	}
	seen := map[string]order.Kind{}
	for _, tt := range tests {
		got := core.EventName(tt.give)
		if got != tt.want {
			t.Errorf("EventName(%s %s→%s) = %s, want %s", tt.give.Action, tt.give.From, tt.give.To, got, tt.want)
		}
		if tt.give.To == order.StatusBooked && tt.give.Action != "book" && got == "order.booked" {
			t.Errorf("%s is announced as a booking", tt.give.Action)
		}
		seen[got] = tt.give.Action
	}
	for name := range seen {
		found := false
		for _, w := range WebhookEvents {
			found = found || w == name
		}
		if !found {
			t.Errorf("%s is not a subscribable webhook event", name)
		}
	}
}

func TestWebhookPayloadHasNoStaffText(t *testing.T) {
	o := &mongostore.StoredOrder{Order: &order.Order{ID: "o1", Status: order.StatusBooked,
		Attempts: []order.Attempt{{N: 1, Reason: "customer_unavailable", Note: "rang twice, neighbour says away"}}}}
	staff := order.Event{Action: order.ActUnassign, From: order.StatusAssigned, To: order.StatusBooked,
		Actor: order.Actor{Role: order.RoleDispatcher, ID: "u-dispatcher-7"}, Reason: "courier scooter broke"}
	m := core.WebhookOrder(*o, staff)
	if _, ok := m["reason"]; ok {
		t.Errorf("dispatcher's note reached the merchant: %v", m)
	}
	for _, v := range m {
		if s, ok := v.(string); ok && s == "u-dispatcher-7" {
			t.Errorf("staff id in the merchant payload: %v", m)
		}
	}
	if a := m["attempts"].([]order.Attempt); a[0].Note != "" || a[0].Reason != "customer_unavailable" {
		t.Errorf("attempts %+v: note kept or reason code lost", a)
	}
	if o.Attempts[0].Note == "" {
		t.Error("the stored order lost its note")
	}
	courier := order.Event{Action: order.ActFail, To: order.StatusFailedAttempt, Actor: order.Actor{Role: order.RoleCourier, ID: "c1"},
		Reason: "customer_unavailable"}
	if core.WebhookOrder(*o, courier)["reason"] != "customer_unavailable" {
		t.Error("a failed attempt's reason code is the merchant's to know")
	}
}
