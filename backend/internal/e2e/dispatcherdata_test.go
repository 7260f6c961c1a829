package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/tawsil/tawsil/shared/wire"
)

// TestDispatcherData: courier lists name couriers with a masked phone; a
// user id given as a courier id is explained; a duplicate e-mail leaves no
// courier behind; a relay point the merchant's policy forbids is a 409.
func TestDispatcherData(t *testing.T) {
	b := mustBackend(t, nil)
	admin, _ := b.login(t, adminEmail, adminPass)
	dispatcher := b.mustUser(t, admin, "dispatcher")
	merchant := b.mustUser(t, admin, "merchant")

	// Named couriers with a masked phone.
	r := b.mustStatus(t, 201, "POST", "/v1/users", admin, map[string]any{"email": "karim@tawsil.test", "password": "password-karim-123",
		"role": "courier", "name": "Karim B.", "phone": "+212612345678"})
	var ku struct {
		ID        string `json:"id"`
		CourierID string `json:"courier_id"`
	}
	r.json(t, &ku)
	var one struct {
		Name  string `json:"name"`
		Phone string `json:"phone"`
	}
	b.mustStatus(t, 200, "GET", "/v1/couriers/"+ku.CourierID, dispatcher.Token, nil).json(t, &one)
	if one.Name != "Karim B." || one.Phone != "+212 6•• ••• •78" {
		t.Fatalf("courier = %+v, want name and masked phone", one)
	}
	list := string(b.mustStatus(t, 200, "GET", "/v1/couriers", dispatcher.Token, nil).body)
	if !strings.Contains(list, `"name":"Karim B."`) || strings.Contains(list, "612345678") {
		t.Fatalf("courier list without the name or with the phone in clear: %s", list)
	}

	// A duplicate e-mail creates nothing.
	before, err := b.Accounts.Couriers(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	b.mustStatus(t, 409, "POST", "/v1/users", admin, map[string]any{"email": "karim@tawsil.test", "password": "password-karim-456",
		"role": "courier", "name": "Karim again"})
	after, err := b.Accounts.Couriers(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Fatalf("couriers %d → %d: a refused user left a courier behind", len(before), len(after))
	}

	// Assigning with the user id says what a courier id is.
	cd := b.mustCourierDevice(t, admin)
	cd.at(t, store, time.Now())
	o := b.book(t, merchant, "dd-1", bookBody(custA, "Amina"))
	r = b.mustStatus(t, 409, "POST", "/v1/orders/"+o.ID+"/assign", dispatcher.Token, map[string]any{"courier_id": cd.ID})
	if !strings.Contains(string(r.body), "couriers have their own ids") {
		t.Fatalf("assign with a user id: %s", r.body)
	}

	// A failed attempt left to a dispatcher; the merchant's policy forbids relays.
	cd.waitTask(t, wire.TaskOffer)
	b.mustStatus(t, 200, "POST", "/v1/orders/"+o.ID+"/accept", cd.Token, nil)
	b.mustStatus(t, 200, "POST", "/v1/orders/"+o.ID+"/pickup", cd.Token, nil)
	// Failing far from the drop-off cannot be verified: a human decides.
	r = b.mustStatus(t, 200, "POST", "/v1/orders/"+o.ID+"/fail", cd.Token, map[string]any{"reason": "ADDRESS_NOT_FOUND"})
	if !strings.Contains(string(r.body), `"status":"failed_attempt"`) {
		t.Skipf("the rules did not leave this attempt to a dispatcher: %s", r.body)
	}
	r = b.mustStatus(t, 409, "POST", "/v1/orders/"+o.ID+"/resolve", dispatcher.Token, map[string]any{"action": "relay_point"})
	if !strings.Contains(string(r.body), "policy does not allow relay points") {
		t.Fatalf("relay refusal: %s", r.body)
	}
	var got struct {
		Status string `json:"status"`
		Flags  struct {
			NeedsDispatcher bool `json:"needs_dispatcher"`
		} `json:"flags"`
	}
	b.mustStatus(t, 200, "GET", "/v1/orders/"+o.ID, dispatcher.Token, nil).json(t, &got)
	if got.Status != "failed_attempt" || !got.Flags.NeedsDispatcher {
		t.Fatalf("a refused resolve changed the order (or it never awaited a dispatcher): %+v", got)
	}
	b.mustStatus(t, 200, "POST", "/v1/orders/"+o.ID+"/resolve", dispatcher.Token, map[string]any{"action": "return_to_merchant"}).json(t, &got)
	if got.Flags.NeedsDispatcher {
		t.Fatalf("needs_dispatcher still set after the dispatcher resolved: %+v", got)
	}
}
