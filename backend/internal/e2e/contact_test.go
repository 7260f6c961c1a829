package e2e

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tawsil/tawsil/backend/internal/config"
)

const contactRules = `
max_attempts: 3
final_action: return_to_merchant
rules:
  - name: call-then-return
    match: {reasons: [CUSTOMER_UNAVAILABLE]}
    action: contact_customer
    reply_window_minutes: 20
    then: return_to_merchant
  - name: catch-all
    action: return_to_merchant
`

// arriveAndWait puts the courier at p for 2.5 minutes of device time ending at end.
func (cd *courierDevice) arriveAndWait(tb testing.TB, p [2]float64, end time.Time) {
	tb.Helper()
	cd.at(tb, p, end.Add(-150*time.Second), end.Add(-100*time.Second), end.Add(-50*time.Second), end)
}

func TestContactCustomerReply(t *testing.T) {
	rules := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rules, []byte(contactRules), 0o600); err != nil {
		t.Fatal(err)
	}
	b := mustBackend(t, func(c *config.Config) { c.RulesFile = rules })
	admin, _ := b.login(t, adminEmail, adminPass)
	merchant := b.mustUser(t, admin, "merchant")
	dispatcher := b.mustUser(t, admin, "dispatcher")
	cd := b.mustCourierDevice(t, admin)
	t0 := time.Now().Add(-15 * time.Minute)
	cd.at(t, store, t0)
	var ids []string
	for i, c := range [][2]float64{custA, custB} {
		o := b.book(t, merchant, "contact-"+string(rune('a'+i)), bookBody(c, "Client"))
		b.mustStatus(t, 200, "POST", "/v1/orders/"+o.ID+"/assign", dispatcher.Token, map[string]any{"courier_id": cd.CourierID})
		b.mustStatus(t, 200, "POST", "/v1/orders/"+o.ID+"/pickup", cd.Token, nil)
		ids = append(ids, o.ID)
	}
	// The dry run explains which rule a situation hits.
	r := b.mustStatus(t, 200, "POST", "/v1/rules/dry-run", dispatcher.Token, map[string]any{"reason": "CUSTOMER_UNAVAILABLE", "attempt": 1, "minutes_left": 30})
	if m := r.m(t); m["action"] != "contact_customer" || m["rule"] != "call-then-return" {
		t.Fatalf("dry run: %s", r.body)
	}
	b.mustStatus(t, 400, "POST", "/v1/rules/dry-run", dispatcher.Token, map[string]any{"reason": "ALIENS", "attempt": 1})

	// A: the customer is reached: the retry is due at once.
	cd.arriveAndWait(t, custA, t0.Add(6*time.Minute))
	r = b.mustStatus(t, 200, "POST", "/v1/orders/"+ids[0]+"/fail", cd.Token, map[string]any{"reason": "CUSTOMER_UNAVAILABLE", "evidence": map[string]any{"call_attempts": 2}})
	if m := r.m(t); m["status"] != "reattempt_scheduled" {
		t.Fatalf("fail A: %s", r.body)
	}
	b.mustStatus(t, 400, "POST", "/v1/orders/"+ids[0]+"/customer-reply", merchant.Token, map[string]any{})
	b.mustStatus(t, 200, "POST", "/v1/orders/"+ids[0]+"/customer-reply", merchant.Token, map[string]any{"reachable": true})
	b.mustStatus(t, 409, "POST", "/v1/orders/"+ids[0]+"/customer-reply", merchant.Token, map[string]any{"reachable": true})

	// B: the customer cannot be reached: the rule's "then" brings it back.
	cd.arriveAndWait(t, custB, t0.Add(12*time.Minute))
	b.mustStatus(t, 200, "POST", "/v1/orders/"+ids[1]+"/fail", cd.Token, map[string]any{"reason": "CUSTOMER_UNAVAILABLE", "evidence": map[string]any{"call_attempts": 2}})
	r = b.mustStatus(t, 200, "POST", "/v1/orders/"+ids[1]+"/customer-reply", merchant.Token, map[string]any{"reachable": false})
	if m := r.m(t); m["status"] != "returning" {
		t.Fatalf("after no reply: %s", r.body)
	}
	// The route now holds A's retry and B's return leg to the store.
	r = b.mustStatus(t, 200, "GET", "/v1/me/tasks", cd.Token, nil)
	var tasks struct {
		Route struct {
			Stops []struct {
				OrderID string `json:"order_id"`
				Kind    string `json:"kind"`
			} `json:"stops"`
		} `json:"route"`
	}
	r.json(t, &tasks)
	kinds := map[string]string{}
	for _, st := range tasks.Route.Stops {
		kinds[st.OrderID] = st.Kind
	}
	if len(tasks.Route.Stops) != 2 || kinds[ids[0]] != "dropoff" || kinds[ids[1]] != "return" {
		t.Fatalf("route: %s", r.body)
	}
	// Back at the store, the courier hands B back.
	cd.at(t, store, time.Now())
	b.mustStatus(t, 200, "POST", "/v1/orders/"+ids[1]+"/returned", cd.Token, nil)
}
