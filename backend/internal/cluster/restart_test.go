package cluster

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tawsil/tawsil/shared/wire"
)

const restartRules = `
max_attempts: 3
final_action: return_to_merchant
rules:
  - name: call-then-return
    match: {reasons: [CUSTOMER_UNAVAILABLE], verified: false}
    action: contact_customer
    reply_window_minutes: 30
    then: return_to_merchant
  - name: retry-in-an-hour
    match: {reasons: [ADDRESS_NOT_FOUND], verified: false}
    action: retry_later
    retry_after_minutes: 60
  - name: catch-all
    action: return_to_merchant
`

// TestClusterRestarts: durable state over real processes. The replica that
// made an offer is killed (SIGKILL) and the offer still expires on time on
// another replica, which offers the next courier; a retry "in 60 minutes"
// and a contact window survive a restart of every replica.
func TestClusterRestarts(t *testing.T) {
	c := NewCluster(t, replicasWant)
	rules := c.path("rules.yaml")
	if err := os.WriteFile(rules, []byte(restartRules), 0o600); err != nil {
		t.Fatal(err)
	}
	c.Env["TAWSIL_RULES_FILE"] = rules
	c.Env["TAWSIL_OFFER_TIMEOUT"] = "4s"
	c.StartAll()
	r := c.Replicas
	admin := r[0].Login(t, adminEmail, adminPass)
	dispatcher := r[1].NewUser(t, admin, "dispatcher")
	merchant := r[2].NewUser(t, admin, "merchant")
	couriers := make([]User, 2)
	devices := make([]*Device, 2)
	now := time.Now()
	for i := range couriers {
		couriers[i] = r[i].NewUser(t, admin, "courier")
		devices[i] = c.Connect(r[i], admin, couriers[i].CourierID)
		r[i].Must(t, 200, "POST", "/v1/me/shift", couriers[i].Token, map[string]any{"on_duty": true})
		devices[i].At(t, darkStore[0]+0.0005*float64(i+1), darkStore[1], now)
	}
	seeBoth := func() {
		for _, rep := range r {
			eventually(t, fmt.Sprintf("replica %d sees both couriers", rep.N), 15*time.Second, func() bool {
				var out struct {
					Couriers []struct{} `json:"couriers"`
				}
				rep.Must(t, 200, "GET", fmt.Sprintf("/v1/couriers?near=%f,%f&limit=10", darkStore[0], darkStore[1]), dispatcher.Token, nil).JSON(t, &out)
				return len(out.Couriers) == 2
			})
		}
	}
	seeBoth()
	offeredTo := func(d *Device, order string) bool {
		for _, tk := range d.Tasks() {
			if tk.Type == wire.TaskOffer && tk.OrderID == order {
				return true
			}
		}
		return false
	}

	t.Run("offer survives SIGKILL", func(t *testing.T) {
		o := book(t, r[0], merchant, "kill-offer") // replica 1 dispatches it
		eventually(t, "the first offer", 15*time.Second, func() bool { return offeredTo(devices[0], o) || offeredTo(devices[1], o) })
		c.Kill(1)
		first, next := devices[0], devices[1]
		if !offeredTo(first, o) {
			first, next = next, first
		}
		eventually(t, "the next courier's offer from another replica", 30*time.Second, func() bool { return offeredTo(next, o) })
		var evs struct {
			Events []struct {
				Action string `json:"action"`
				Reason string `json:"reason"`
			} `json:"events"`
		}
		r[1].Must(t, 200, "GET", "/v1/orders/"+o+"/events", dispatcher.Token, nil).JSON(t, &evs)
		expired := 0
		for _, e := range evs.Events {
			if e.Action == "expire" {
				expired++
				if e.Reason != "offer timeout" {
					t.Errorf("expired for %q", e.Reason)
				}
			}
		}
		if expired != 1 {
			t.Errorf("%d expiries, want 1: %+v", expired, evs.Events)
		}
		r[2].Must(t, 200, "POST", "/v1/orders/"+o+"/cancel", merchant.Token, map[string]any{"reason": "test"})
		c.Start(1)
		for i, d := range devices { // the restarted replica's live index follows the next fixes
			d.At(t, darkStore[0]+0.0005*float64(i+1), darkStore[1], time.Now())
		}
		seeBoth()
	})

	t.Run("retry and contact survive a restart of every replica", func(t *testing.T) {
		cr := couriers[0]
		dev := devices[0]
		ids := map[string]string{}
		for _, reason := range []string{"CUSTOMER_UNAVAILABLE", "ADDRESS_NOT_FOUND"} {
			id := book(t, r[0], merchant, "restart-"+reason)
			r[1].Must(t, 200, "POST", "/v1/orders/"+id+"/assign", dispatcher.Token, map[string]any{"courier_id": cr.CourierID})
			ids[reason] = id
		}
		dev.At(t, darkStore[0], darkStore[1], time.Now())
		for _, id := range ids {
			untilThere(t, r[2], "/v1/orders/"+id+"/pickup", cr.Token, nil)
		}
		dev.At(t, customer[0], customer[1], time.Now())
		failedAt := time.Now()
		for reason, id := range ids {
			untilThere(t, r[0], "/v1/orders/"+id+"/fail", cr.Token, map[string]any{"reason": reason, "evidence": map[string]any{"call_attempts": 2}})
		}
		for i := range r {
			c.Stop(i + 1)
		}
		for i := range r {
			c.Start(i + 1)
		}
		// The retry keeps its "not before": the planner may not serve the
		// stop before it, and the stop's due time moves to it (the promise
		// is earlier; the courier may arrive before and waits).
		var tasks struct {
			Route struct {
				Stops []struct {
					OrderID string    `json:"order_id"`
					Due     time.Time `json:"due"`
				} `json:"stops"`
			} `json:"route"`
		}
		r[1].Must(t, 200, "GET", "/v1/me/tasks", cr.Token, nil).JSON(t, &tasks)
		found := false
		for _, st := range tasks.Route.Stops {
			if st.OrderID == ids["ADDRESS_NOT_FOUND"] {
				found = true
				if st.Due.Before(failedAt.Add(59 * time.Minute)) {
					t.Errorf("the retry is due at %v, before its not-before (~%v)", st.Due, failedAt.Add(time.Hour))
				}
			}
		}
		if !found {
			t.Errorf("the retry is not in the route after the restart: %+v", tasks.Route.Stops)
		}
		// The customer's reply is accepted after the restart, once.
		r[2].Must(t, 200, "POST", "/v1/orders/"+ids["CUSTOMER_UNAVAILABLE"]+"/customer-reply", merchant.Token, map[string]any{"reachable": true})
		r[0].Must(t, 409, "POST", "/v1/orders/"+ids["CUSTOMER_UNAVAILABLE"]+"/customer-reply", merchant.Token, map[string]any{"reachable": true})
	})
}

// untilThere posts a courier's action until the replica's live index has the
// device's last fix: only "no position" and "not at the place" are retried
// (any other answer, a 409 "invalid transition" from a replica whose cache
// is behind the others' writes included, fails the test).
func untilThere(t *testing.T, rep *Replica, path, token string, body any) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		res := rep.Do(t, "POST", path, token, body)
		if res.Status == 200 {
			return
		}
		var p struct {
			Type string `json:"type"`
		}
		_ = json.Unmarshal(res.Body, &p)
		waiting := res.Status == 409 && (strings.HasSuffix(p.Type, "/no-position") || strings.HasSuffix(p.Type, "/not-at-place"))
		if !waiting || time.Now().After(deadline) {
			t.Fatalf("replica %d: POST %s = %d: %s", rep.N, path, res.Status, res.Body)
		}
	}
}
