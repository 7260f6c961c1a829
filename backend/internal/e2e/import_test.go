package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tawsil/tawsil/backend/internal/config"
)

type importOut struct {
	Created, Existing, Invalid int
	Results                    []struct {
		Row       int    `json:"row"`
		Email     string `json:"email"`
		Status    string `json:"status"`
		CourierID string `json:"courier_id"`
		Error     string `json:"error"`
		Device    *struct {
			Username string `json:"mqtt_username"`
			Password string `json:"mqtt_password"`
			ClientID string `json:"client_id"`
		} `json:"device"`
	} `json:"results"`
}

func (b *backend) importCSV(tb testing.TB, admin, body string) (int, importOut) {
	tb.Helper()
	req, err := http.NewRequest("POST", b.base+"/v1/couriers/import", strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+admin)
	req.Header.Set("Content-Type", "text/csv")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Body.Close()
	var out importOut
	if res.StatusCode == 200 {
		if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
			tb.Fatal(err)
		}
	}
	return res.StatusCode, out
}

// Bulk onboarding: an admin imports couriers as JSON or CSV and gets each
// new one's device credentials (once, no-store); a re-import changes
// nothing; bad rows are refused with their reason and the rest go in; the
// credentials work on the broker; the import is audited and admin-only.
func TestBulkImport(t *testing.T) {
	b := mustBackend(t, func(c *config.Config) {})
	admin, _ := b.login(t, adminEmail, adminPass)
	dispatcher := b.mustUser(t, admin, "dispatcher")
	body := map[string]any{"couriers": []map[string]any{
		{"name": "Youssef Amrani", "phone": "+212600000001", "email": "Youssef.Amrani@fleet.test"},
		{"name": "Khadija Idrissi", "phone": "+212600000002", "email": "khadija@fleet.test", "vehicle": "bike", "capacity": 2},
		{"name": "Nobody", "email": "not-an-email"},
		{"name": "Twice", "email": "youssef.amrani@fleet.test"},
		{"name": "Dispatcher", "email": dispatcher.Email},
	}}
	b.mustStatus(t, 403, "POST", "/v1/couriers/import", dispatcher.Token, body)
	r := b.mustStatus(t, 200, "POST", "/v1/couriers/import", admin, body)
	if r.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("an answer with device secrets is cacheable: %v", r.header)
	}
	var out importOut
	r.json(t, &out)
	if out.Created != 2 || out.Invalid != 3 || out.Existing != 0 {
		t.Fatalf("import: %s", r.body)
	}
	want := []string{"created", "created", "invalid", "invalid", "invalid"}
	for i, res := range out.Results {
		if res.Status != want[i] || res.Row != i+1 {
			t.Fatalf("row %d: %+v, want %s", i+1, res, want[i])
		}
	}
	if out.Results[0].Email != "youssef.amrani@fleet.test" || out.Results[0].Device == nil || out.Results[0].Device.Password == "" {
		t.Fatalf("created row: %+v", out.Results[0])
	}
	// The device credentials work on the broker.
	d := out.Results[0].Device
	c := mustDial(t, "tcp://"+b.MQTTAddr(), d.ClientID, d.Username, d.Password, nil)
	c.Disconnect(100)
	// The courier is known to dispatchers (not on shift yet).
	b.mustStatus(t, 200, "GET", "/v1/couriers/"+out.Results[0].CourierID, dispatcher.Token, nil)

	// Re-importing, as CSV: nothing new, no secret shown again; one new row goes in.
	code, again := b.importCSV(t, admin, "email,name,phone\nyoussef.amrani@fleet.test,Youssef Amrani,+212600000001\n"+
		"khadija@fleet.test,Khadija Idrissi,\nomar@fleet.test,\"Omar, Jr.\",+212600000003\n")
	if code != 200 || again.Created != 1 || again.Existing != 2 || again.Results[0].Device != nil || again.Results[0].CourierID != out.Results[0].CourierID {
		t.Fatalf("re-import %d: %+v", code, again)
	}
	if code, _ := b.importCSV(t, admin, "name,phone\nno email column,+212600000004\n"); code != 400 {
		t.Fatalf("CSV without an email column: %d", code)
	}
	audit := string(b.mustStatus(t, 200, "GET", "/v1/audit", admin, nil).body)
	if !strings.Contains(audit, "import_couriers") || !strings.Contains(audit, "created=2 existing=0 invalid=3") {
		t.Fatalf("import not audited: %s", audit)
	}
}

// BenchmarkImport50k onboards 50,000 couriers through the API in batches
// of 2,000 (the most one request takes) and reports the rate.
func BenchmarkImport50k(b *testing.B) {
	be := mustBackend(b, func(c *config.Config) {})
	admin, _ := be.login(b, adminEmail, adminPass)
	for n := 0; n < b.N; n++ {
		start := time.Now()
		for batch := 0; batch < 25; batch++ {
			var sb strings.Builder
			sb.WriteString("name,phone,email\n")
			for i := 0; i < 2000; i++ {
				k := batch*2000 + i
				fmt.Fprintf(&sb, "Courier %d,+2126%08d,c%d-%d@fleet.test\n", k, k, n, k)
			}
			code, out := be.importCSV(b, admin, sb.String())
			if code != 200 || out.Created != 2000 {
				b.Fatalf("batch %d: %d %+v", batch, code, out.Created)
			}
		}
		b.ReportMetric(50000/time.Since(start).Seconds(), "couriers/s")
		b.ReportMetric(time.Since(start).Seconds(), "s/50k")
	}
}
