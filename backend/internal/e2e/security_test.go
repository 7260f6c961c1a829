package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tawsil/tawsil/backend/internal/config"
	"github.com/tawsil/tawsil/shared/topic"
	"github.com/tawsil/tawsil/shared/wire"
)

// Regression tests for the findings of the outside audit (issue 14).

// sseStream is an open dispatcher event stream.
type sseStream struct {
	status int
	mu     sync.Mutex
	lines  []string
	ended  chan struct{}
	cancel context.CancelFunc
}

func (s *sseStream) has(sub string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.lines {
		if strings.Contains(l, sub) {
			return true
		}
	}
	return false
}

func (s *sseStream) isEnded() bool {
	select {
	case <-s.ended:
		return true
	default:
		return false
	}
}

var streamClient = &http.Client{} // no timeout: streams run up to a minute

func (b *backend) openStream(tb testing.TB, token string) *sseStream {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "GET", b.base+"/v1/stream", nil)
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := streamClient.Do(req)
	if err != nil {
		cancel()
		tb.Fatal(err)
	}
	s := &sseStream{status: res.StatusCode, ended: make(chan struct{}), cancel: cancel}
	tb.Cleanup(cancel)
	go func() {
		defer close(s.ended)
		defer res.Body.Close()
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			s.mu.Lock()
			s.lines = append(s.lines, sc.Text())
			s.mu.Unlock()
		}
	}()
	if s.status == 200 {
		eventually(tb, "stream connected", 5*time.Second, func() bool { return s.has(": connected") })
	}
	return s
}

// metricValue reads one sample of /metrics (0 when absent).
func (b *backend) metricValue(tb testing.TB, series string) float64 {
	tb.Helper()
	r := b.mustStatus(tb, 200, "GET", "/metrics", "", nil)
	for _, line := range strings.Split(string(r.body), "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(rest, 64)
			if err != nil {
				tb.Fatalf("metrics line %q", line)
			}
			return v
		}
	}
	return 0
}

// TestHandoverCodeLockout: the audit guessed handover codes without limit
// (1,000 wrong codes, then the right one accepted, no trace). Now five wrong
// codes lock that courier out of the order, the lockout is in the order's
// events and the audit log and reaches the merchant and the dispatchers, a
// dispatcher unlocks it, and a courier's wrong codes are rate-limited over
// its orders. Metrics count the 4xx answers as 4xx.
func TestHandoverCodeLockout(t *testing.T) {
	b := mustBackend(t, func(c *config.Config) { c.WebhookAllowPrivate = true })
	admin, _ := b.login(t, adminEmail, adminPass)
	merchant := b.mustUser(t, admin, "merchant")
	dispatcher := b.mustUser(t, admin, "dispatcher")
	sink := newSink(t)
	hook := b.do(t, "POST", "/v1/webhooks", merchant.Token, map[string]any{"url": sink.srv.URL, "events": []string{"order.delivered", "order.handover_locked"}})
	stream := b.openStream(t, dispatcher.Token)

	cd := b.mustCourierDevice(t, admin)
	t0 := time.Now().Add(-10 * time.Minute)
	cd.at(t, store, t0)
	// The customer's name arrives with a right-to-left override and zero-width characters.
	body := bookBody(custA, "Amina")
	body["customer"] = map[string]any{"name": "\u202eAm\u200bina\u200d Alaoui", "phone": "+212612345678"}
	o1 := b.book(t, merchant, "lock-1", body)
	cd.waitTask(t, wire.TaskOffer)
	b.mustStatus(t, 200, "POST", "/v1/orders/"+o1.ID+"/accept", cd.Token, nil)
	b.mustStatus(t, 200, "POST", "/v1/orders/"+o1.ID+"/pickup", cd.Token, nil)
	cd.at(t, custA, t0.Add(5*time.Minute))
	wrong := fmt.Sprintf("%06d", (mustAtoi(t, o1.HandoverCode)+1)%1_000_000)
	deliver := func(id, code string) resp {
		return b.do(t, "POST", "/v1/orders/"+id+"/deliver", cd.Token, map[string]any{"handover_code": code})
	}
	for i := 1; i <= 4; i++ {
		if r := deliver(o1.ID, wrong); r.status != 422 {
			t.Fatalf("wrong code %d: %d %s", i, r.status, r.body)
		}
	}
	if r := deliver(o1.ID, wrong); r.status != 423 {
		t.Fatalf("fifth wrong code: %d %s, want 423 (locked)", r.status, r.body)
	}
	if r := deliver(o1.ID, o1.HandoverCode); r.status != 423 {
		t.Fatalf("the right code after the lockout: %d %s, want 423", r.status, r.body)
	}

	// Recorded: order events and the audit log.
	r := b.mustStatus(t, 200, "GET", "/v1/orders/"+o1.ID+"/events", merchant.Token, nil)
	if n := strings.Count(string(r.body), `"handover_code_rejected"`); n != 5 || !strings.Contains(string(r.body), `"handover_locked"`) {
		t.Fatalf("order events: %d rejected codes (want 5) and no lockout? %s", n, r.body)
	}
	r = b.mustStatus(t, 200, "GET", "/v1/audit?subject="+url.QueryEscape("order:"+o1.ID), admin, nil)
	if !strings.Contains(string(r.body), `"action":"handover_locked"`) || !strings.Contains(string(r.body), cd.CourierID) {
		t.Fatalf("audit log lacks the lockout: %s", r.body)
	}
	// Notified: dispatchers on the stream, the merchant by webhook.
	eventually(t, "lockout on the dispatcher stream", 5*time.Second, func() bool { return stream.has("order.handover_locked") })
	if hook.status != 201 {
		t.Fatalf("webhook for order.handover_locked: %d %s", hook.status, hook.body)
	}
	eventually(t, "lockout webhook", 10*time.Second, func() bool { return strings.Contains(strings.Join(sink.types(), ","), "order.handover_locked") })
	// Metrics count what the client got: 4xx, not 5xx.
	if n := b.metricValue(t, `tawsil_http_requests_total{route="/v1/orders/:id/deliver",status="5xx"}`); n != 0 {
		t.Errorf("%v deliver answers counted as 5xx; clients got 422/423", n)
	}
	if n := b.metricValue(t, `tawsil_http_requests_total{route="/v1/orders/:id/deliver",status="4xx"}`); n < 6 {
		t.Errorf("%v deliver answers counted as 4xx, want >= 6", n)
	}

	// A courier cannot unlock; a dispatcher can, and the right code then delivers.
	b.mustStatus(t, 403, "POST", "/v1/orders/"+o1.ID+"/handover-unlock", cd.Token, nil)
	r = b.mustStatus(t, 200, "POST", "/v1/orders/"+o1.ID+"/handover-unlock", dispatcher.Token, nil)
	if r.m(t)["unlocked_couriers"] != float64(1) {
		t.Fatalf("unlock: %s", r.body)
	}
	if r := deliver(o1.ID, o1.HandoverCode); r.status != 200 {
		t.Fatalf("after the unlock: %d %s", r.status, r.body)
	}
	r = b.mustStatus(t, 200, "GET", "/v1/orders/"+o1.ID+"/events", merchant.Token, nil)
	if !strings.Contains(string(r.body), `"handover_unlocked"`) || !strings.Contains(string(r.body), `"delivered"`) {
		t.Fatalf("events after the unlock: %s", r.body)
	}
	r = b.mustStatus(t, 200, "GET", "/v1/audit?subject="+url.QueryEscape("order:"+o1.ID), admin, nil)
	if !strings.Contains(string(r.body), `"action":"handover_unlocked"`) || !strings.Contains(string(r.body), dispatcher.ID) {
		t.Fatalf("audit log lacks the unlock: %s", r.body)
	}
	// The name was stored normalised.
	r = b.mustStatus(t, 200, "GET", "/v1/orders/"+o1.ID, merchant.Token, nil)
	if got := r.m(t)["customer_name"]; got != "Amina Alaoui" {
		t.Errorf("customer name stored as %q, want \"Amina Alaoui\"", got)
	}

	// Per courier: 5 wrong codes so far; three more on another order, then 429.
	o2 := b.book(t, merchant, "lock-2", bookBody(custB, "Brahim"))
	cd.waitTask(t, wire.TaskOffer)
	b.mustStatus(t, 200, "POST", "/v1/orders/"+o2.ID+"/accept", cd.Token, nil)
	cd.at(t, store, t0.Add(6*time.Minute))
	b.mustStatus(t, 200, "POST", "/v1/orders/"+o2.ID+"/pickup", cd.Token, nil)
	cd.at(t, custB, t0.Add(9*time.Minute))
	wrong2 := fmt.Sprintf("%06d", (mustAtoi(t, o2.HandoverCode)+1)%1_000_000)
	for i := 1; i <= 3; i++ {
		if r := deliver(o2.ID, wrong2); r.status != 422 {
			t.Fatalf("wrong code %d on the second order: %d %s", i, r.status, r.body)
		}
	}
	r = deliver(o2.ID, o2.HandoverCode)
	if r.status != 429 || r.header.Get("Retry-After") == "" {
		t.Fatalf("ninth code in 15 minutes: %d (Retry-After %q) %s, want 429", r.status, r.header.Get("Retry-After"), r.body)
	}
	assertNoSecrets(t, b.logs.String(), `"`+o1.HandoverCode+`"`, `"`+o2.HandoverCode+`"`, "handover_code")
}

func mustAtoi(tb testing.TB, s string) int {
	tb.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

// TestAuditHardening covers the other findings on one backend: webhook
// address forms, secrets shown once with no-store, strict JSON, invisible
// characters, event streams ending on revocation and bounded per user, and
// disabled or erased couriers leaving the live state.
func TestAuditHardening(t *testing.T) {
	b := mustBackend(t, nil)
	admin, _ := b.login(t, adminEmail, adminPass)
	merchant := b.mustUser(t, admin, "merchant")

	t.Run("webhook addresses", func(t *testing.T) {
		for _, u := range []string{"https://LOCALHOST/h", "https://localhost./h", "https://runsc/h", "https://vm./h", "https://2130706433/h",
			"https://0177.0.0.1/h", "https://0x7f.0.0.1/h", "https://127.1/h", "https://[fe80::1%25lo]/h", "https://[::127.0.0.1]/h",
			"https://[64:ff9b::7f00:1]/h", "https://[64:ff9b::10.0.0.1]/h", "https://0.0.0.1/h", "https://[::ffff:169.254.169.254]/h"} {
			if r := b.do(t, "POST", "/v1/webhooks", merchant.Token, map[string]any{"url": u, "events": []string{"order.delivered"}}); r.status != 400 {
				t.Errorf("webhook %s registered: %d %s", u, r.status, r.body)
			}
		}
	})

	t.Run("secrets once", func(t *testing.T) {
		req := map[string]any{"url": "https://93.184.216.34/tawsil", "events": []string{"order.delivered"}}
		first := b.mustStatus(t, 201, "POST", "/v1/webhooks", merchant.Token, req, "Idempotency-Key", "wh-1")
		secret, _ := first.m(t)["secret"].(string)
		if !strings.HasPrefix(secret, "whsec_") || first.header.Get("Cache-Control") != "no-store" {
			t.Fatalf("first answer: %s (Cache-Control %q)", first.body, first.header.Get("Cache-Control"))
		}
		replay := b.mustStatus(t, 201, "POST", "/v1/webhooks", merchant.Token, req, "Idempotency-Key", "wh-1")
		if replay.header.Get("Idempotent-Replayed") != "true" || replay.m(t)["id"] != first.m(t)["id"] {
			t.Fatalf("not a replay: %s", replay.body)
		}
		if strings.Contains(string(replay.body), secret) || strings.Contains(string(replay.body), "whsec_") {
			t.Errorf("the replay shows the secret again: %s", replay.body)
		}
		if cc := replay.header.Get("Cache-Control"); cc != "no-store" {
			t.Errorf("replay Cache-Control %q", cc)
		}
		login := b.mustStatus(t, 200, "POST", "/v1/auth/login", "", map[string]string{"email": adminEmail, "password": adminPass})
		if cc := login.header.Get("Cache-Control"); cc != "no-store" {
			t.Errorf("login (tokens) Cache-Control %q", cc)
		}
	})

	t.Run("strict JSON", func(t *testing.T) {
		for _, tt := range []struct {
			body, ct string
			want     int
		}{
			{`{"email":"` + adminEmail + `","password":"` + adminPass + `"}}`, "application/json", 400},
			{`{"email":"` + adminEmail + `","password":"` + adminPass + `"}]`, "application/json", 400},
			{`{"email":"x@tawsil.test","email":"` + adminEmail + `","password":"` + adminPass + `"}`, "application/json", 400},
			{`{"email":"` + adminEmail + `","password":"` + adminPass + `"}`, "application/jsonp-evil", 415},
			{`{"email":"` + adminEmail + `","password":"` + adminPass + `"}`, "application/json; charset=utf-8", 200},
		} {
			if r := b.do(t, "POST", "/v1/auth/login", "", tt.body, "Content-Type", tt.ct); r.status != tt.want {
				t.Errorf("login %s (%s) = %d, want %d: %s", tt.body, tt.ct, r.status, tt.want, r.body)
			}
		}
	})

	t.Run("invisible characters", func(t *testing.T) {
		for _, email := range []string{"admin\u202e@tawsil.test", "ad\u200bmin2@tawsil.test", "a\u2066dmin3@tawsil.test"} {
			if r := b.do(t, "POST", "/v1/users", admin, map[string]any{"email": email, "password": "password-123-abc", "role": "dispatcher", "name": "X"}); r.status != 400 {
				t.Errorf("email %q accepted: %d %s", email, r.status, r.body)
			}
		}
		r := b.mustStatus(t, 201, "POST", "/v1/users", admin, map[string]any{"email": "names@tawsil.test", "password": "password-123-abc",
			"role": "dispatcher", "name": "Kha\u200blid\u202e El\u00a0Idrissi\u2069"})
		if got := r.m(t)["name"]; got != "Khalid El Idrissi" {
			t.Errorf("name stored as %q", got)
		}
	})

	t.Run("streams", func(t *testing.T) {
		d := b.mustUser(t, admin, "dispatcher")
		var open []*sseStream
		for i := 0; i < 3; i++ {
			if s := b.openStream(t, d.Token); s.status != 200 {
				t.Fatalf("stream %d: %d", i+1, s.status)
			} else {
				open = append(open, s)
			}
		}
		if s := b.openStream(t, d.Token); s.status != 429 {
			t.Errorf("fourth stream of one user: %d, want 429", s.status)
		}
		// Disabling the dispatcher ends its streams at once (not at their 60 s end).
		b.mustStatus(t, 200, "POST", "/v1/users/"+d.ID+"/disable", admin, nil)
		eventually(t, "streams of a disabled user end", 3*time.Second, func() bool {
			for _, s := range open {
				if !s.isEnded() {
					return false
				}
			}
			return true
		})
		// Logout ends the caller's stream too.
		d2 := b.mustUser(t, admin, "dispatcher")
		s := b.openStream(t, d2.Token)
		b.mustStatus(t, 204, "POST", "/v1/auth/logout", d2.Token, nil)
		eventually(t, "stream ends at logout", 3*time.Second, s.isEnded)
	})

	t.Run("disabled courier", func(t *testing.T) {
		cd := b.mustCourierDevice(t, admin)
		cd.at(t, store, time.Now().Add(-time.Minute))
		eventually(t, "courier live", 5*time.Second, func() bool {
			return b.do(t, "GET", "/v1/couriers/"+cd.CourierID, admin, nil).status == 200
		})
		o := b.book(t, merchant, "gone-1", bookBody(custA, "Amina"))
		if offer := cd.waitTask(t, wire.TaskOffer); offer.OrderID != o.ID {
			t.Fatalf("offer %+v", offer)
		}
		b.mustStatus(t, 200, "POST", "/v1/users/"+cd.ID+"/disable", admin, nil)
		// Gone from the live index, listings and dispatch at once.
		if r := b.do(t, "GET", "/v1/couriers/"+cd.CourierID, admin, nil); r.status != 404 {
			t.Errorf("disabled courier still served: %d %s", r.status, r.body)
		}
		r := b.mustStatus(t, 200, "GET", fmt.Sprintf("/v1/couriers?near=%f,%f&limit=50", store[0], store[1]), admin, nil)
		if strings.Contains(string(r.body), cd.CourierID) {
			t.Errorf("disabled courier listed: %s", r.body)
		}
		eventually(t, "offer withdrawn", 5*time.Second, func() bool {
			so, err := b.Store.Order(t.Context(), o.ID)
			return err == nil && so.OfferedTo == "" && so.Status == "booked"
		})
		if r := b.do(t, "POST", "/v1/orders", merchant.Token, bookBody(custB, "Brahim"), "Idempotency-Key", "gone-2"); r.status != 409 {
			t.Errorf("booking with only a disabled courier nearby: %d %s", r.status, r.body)
		}
	})

	t.Run("erased courier", func(t *testing.T) {
		cd := b.mustCourierDevice(t, admin)
		cd.at(t, store, time.Now().Add(-time.Minute))
		eventually(t, "courier live", 5*time.Second, func() bool {
			return b.do(t, "GET", "/v1/couriers/"+cd.CourierID, admin, nil).status == 200
		})
		b.mustStatus(t, 204, "DELETE", "/v1/users/"+cd.ID, admin, nil)
		if r := b.do(t, "GET", "/v1/couriers/"+cd.CourierID, admin, nil); r.status != 404 {
			t.Errorf("erased courier still served with its position: %d %s", r.status, r.body)
		}
		if r := b.do(t, "POST", "/v1/couriers/"+cd.CourierID+"/device-credentials", admin, nil); r.status != 409 {
			t.Errorf("device credentials issued for an erased courier: %d %s", r.status, r.body)
		}
		// Its positions are not stored, whichever broker delivers them.
		fs := []wire.Fix{{Seq: 1000, Time: time.Now().UTC().Truncate(time.Millisecond), Lat: store[0], Lng: store[1], Accuracy: 5, Heading: wire.Unknown, Battery: 50}}
		_ = b.Ingest.HandleMQTT(t.Context(), topic.Courier(topic.DefaultPrefix, cd.CourierID, topic.Pos), mustEncode(t, fs), false)
		time.Sleep(300 * time.Millisecond) // past a history flush
		if n, err := b.Store.CountPositions(t.Context(), cd.CourierID); err != nil || n != 0 {
			t.Errorf("%d positions stored for an erased courier (%v)", n, err)
		}
	})
}
