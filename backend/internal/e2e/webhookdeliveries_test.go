package e2e

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/tawsil/tawsil/backend/internal/config"
)

// TestWebhookDeliveries: a test ping is retried after a 500 and its
// attempts are listed with their status codes; a redelivery sends the same
// event id again; another merchant sees nothing of it.
func TestWebhookDeliveries(t *testing.T) {
	b := mustBackend(t, func(c *config.Config) { c.WebhookAllowPrivate = true })
	admin, _ := b.login(t, adminEmail, adminPass)
	merchant := b.mustUser(t, admin, "merchant")
	other := b.mustUser(t, admin, "merchant")
	var mu sync.Mutex
	var got []string // event ids received
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, r.Header.Get("Tawsil-Event-Id"))
		if len(got) == 1 {
			w.WriteHeader(500) // the first attempt fails
		}
	}))
	t.Cleanup(srv.Close)
	var hook struct {
		ID string `json:"id"`
	}
	b.mustStatus(t, 201, "POST", "/v1/webhooks", merchant.Token, map[string]any{"url": srv.URL, "events": []string{"order.delivered"}}).json(t, &hook)
	var ping struct {
		EventID string `json:"event_id"`
	}
	b.mustStatus(t, 202, "POST", "/v1/webhooks/"+hook.ID+"/ping", merchant.Token, nil).json(t, &ping)
	type delivery struct {
		ID       string `json:"id"`
		Event    string `json:"event"`
		Status   string `json:"status"`
		Attempts int    `json:"attempts"`
		Log      []struct {
			Status int `json:"status"`
		} `json:"log"`
	}
	list := func() []delivery {
		var out struct {
			Deliveries []delivery `json:"deliveries"`
		}
		b.mustStatus(t, 200, "GET", "/v1/webhooks/"+hook.ID+"/deliveries", merchant.Token, nil).json(t, &out)
		return out.Deliveries
	}
	eventually(t, "ping delivered on the second attempt", 15*time.Second, func() bool {
		ds := list()
		return len(ds) == 1 && ds[0].Status == "delivered"
	})
	d := list()[0]
	if d.ID != ping.EventID || d.Event != "webhook.ping" || d.Attempts != 2 || len(d.Log) != 2 || d.Log[0].Status != 500 || d.Log[1].Status != 200 {
		t.Fatalf("delivery %+v, want webhook.ping attempted twice: 500 then 200", d)
	}
	b.mustStatus(t, 202, "POST", "/v1/webhooks/"+hook.ID+"/deliveries/"+ping.EventID+"/redeliver", merchant.Token, nil)
	eventually(t, "redelivered", 10*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == 3
	})
	mu.Lock()
	if got[2] != ping.EventID {
		t.Errorf("redelivery sent %q, want the same event id %q", got[2], ping.EventID)
	}
	mu.Unlock()
	b.mustStatus(t, 404, "GET", "/v1/webhooks/"+hook.ID+"/deliveries", other.Token, nil)
	b.mustStatus(t, 404, "POST", "/v1/webhooks/"+hook.ID+"/ping", other.Token, nil)
	b.mustStatus(t, 404, "POST", "/v1/webhooks/"+hook.ID+"/deliveries/"+ping.EventID+"/redeliver", other.Token, nil)
}
