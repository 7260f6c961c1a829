package e2e

import (
	"bufio"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestEmbeddedLogsClean: the embedded store and broker write one clean line
// per record (no protocol dumps, no empty messages), from start to shutdown;
// every request has one access line with its id.
func TestEmbeddedLogsClean(t *testing.T) {
	b, stop := startBackend(t, mustConfig(t))
	admin, _ := b.login(t, adminEmail, adminPass)
	r := b.do(t, "GET", "/v1/orders/nope", admin, nil, "X-Request-ID", "req-e2e-42")
	if r.header.Get("X-Request-ID") != "req-e2e-42" || !strings.Contains(string(r.body), `"request_id":"req-e2e-42"`) {
		t.Fatalf("request id not echoed: %v %s", r.header, r.body)
	}
	if id := b.do(t, "GET", "/healthz", "", nil).header.Get("X-Request-ID"); len(id) != 16 {
		t.Fatalf("made-up request id %q", id)
	}
	// The KPI window ends now, not in the future.
	var k struct {
		To time.Time `json:"to"`
	}
	b.mustStatus(t, 200, "GET", "/v1/kpis", admin, nil).json(t, &k)
	if k.To.After(time.Now()) {
		t.Errorf("KPI window ends at %v, in the future", k.To)
	}
	stop()
	access := 0
	sc := bufio.NewScanner(strings.NewReader(b.logs.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("not one JSON record per line: %q", sc.Text())
		}
		msg, _ := rec["msg"].(string)
		switch rec["component"] {
		case "ferretdb", "mqtt":
			if strings.TrimSpace(msg) == "" || strings.Contains(msg, "\n") || len(msg) > 300 {
				t.Errorf("unclean %s line: %q", rec["component"], msg)
			}
		}
		if msg == "http" && rec["request_id"] == "req-e2e-42" {
			access++
			if rec["route"] != "/v1/orders/:id" || rec["status"] != float64(404) {
				t.Errorf("access line %v", rec)
			}
		}
	}
	if access != 1 {
		t.Fatalf("%d access lines for the request, want 1", access)
	}
}
