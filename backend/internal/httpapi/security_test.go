package httpapi

import (
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tawsil/tawsil/backend/internal/account"
	"github.com/tawsil/tawsil/backend/internal/metrics"
)

// TestStrictJSON: one value and nothing after it, no key twice, exact media
// types (audit: a trailing } or ], application/jsonp-evil and duplicate
// keys were accepted).
func TestStrictJSON(t *testing.T) {
	app := testApp(t, func(c *fiber.Ctx) error {
		var v decodeTarget
		if err := decode(c, &v); err != nil {
			return err
		}
		return c.JSON(v)
	})
	tests := []struct {
		name, body, ct string
		want           int
	}{
		{"plain", `{"email":"a@b.ma"}`, "application/json", 200},
		{"charset", `{"email":"a@b.ma"}`, "application/json; charset=UTF-8", 200},
		{"suffix", `{"email":"a@b.ma"}`, "application/merge-patch+json", 200},
		{"trailing space", "{\"email\":\"a@b.ma\"} \n", "application/json", 200},
		{"trailing brace", `{"email":"a@b.ma"}}`, "application/json", 400},
		{"trailing bracket", `{"email":"a@b.ma"}]`, "application/json", 400},
		{"second value", `{"email":"a@b.ma"} {}`, "application/json", 400},
		{"trailing garbage", `{"email":"a@b.ma"}x`, "application/json", 400},
		{"duplicate key", `{"email":"a@b.ma","email":"admin@b.ma"}`, "application/json", 400},
		{"duplicate folded", `{"email":"a@b.ma","EMAIL":"admin@b.ma"}`, "application/json", 400},
		{"nested duplicate", `{"place":{"address":"a","address":"b"}}`, "application/json", 400},
		{"same key apart", `{"place":{"address":"a"},"events":["address"]}`, "application/json", 200},
		{"deep", strings.Repeat("[", 40) + strings.Repeat("]", 40), "application/json", 400},
		{"empty", ``, "application/json", 400},
		{"jsonp", `{"email":"a@b.ma"}`, "application/jsonp-evil", 415},
		{"json prefix", `{"email":"a@b.ma"}`, "application/json-evil", 415},
		{"bare suffix", `{"email":"a@b.ma"}`, "application/+json", 415},
		{"text", `{"email":"a@b.ma"}`, "text/json", 415},
		{"other charset", `{"email":"a@b.ma"}`, "application/json; charset=latin1", 415},
		{"other param", `{"email":"a@b.ma"}`, "application/json; foo=bar", 415},
		{"none", `{"email":"a@b.ma"}`, "", 415},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest("POST", "/t", strings.NewReader(tt.body))
			if tt.ct != "" {
				req.Header.Set("Content-Type", tt.ct)
			}
			res, err := app.Test(req, -1)
			if err != nil {
				t.Fatal(err)
			}
			out, _ := io.ReadAll(res.Body)
			if res.StatusCode != tt.want {
				t.Fatalf("%q (%s) = %d, want %d: %s", tt.body, tt.ct, res.StatusCode, tt.want, out)
			}
			if tt.want != 200 {
				mustProblem(t, res, out)
			}
		})
	}
}

// TestMetricsCountSentStatus: a domain error mapped to 4xx is counted as
// 4xx (audit: 3,043 "5xx" on /deliver while clients got 409/422).
func TestMetricsCountSentStatus(t *testing.T) {
	m := metrics.New(func() float64 { return 0 })
	s := New(Options{}, nil, nil, m, slog.New(slog.NewTextHandler(io.Discard, nil)))
	errBoom := errors.New("boom")
	v1 := s.V1()
	v1.Get("/mapped", func(*fiber.Ctx) error { return account.ErrConflict })
	v1.Get("/problem", func(*fiber.Ctx) error { return conflict("x") })
	v1.Get("/internal", func(*fiber.Ctx) error { return errBoom })
	for path, want := range map[string]int{"/v1/mapped": 409, "/v1/problem": 409, "/v1/internal": 500} {
		res, err := s.App().Test(httptest.NewRequest("GET", path, nil), -1)
		if err != nil {
			t.Fatal(err)
		}
		if res.StatusCode != want {
			t.Fatalf("%s = %d, want %d", path, res.StatusCode, want)
		}
		if cc := res.Header.Get("Cache-Control"); cc != "no-store" {
			t.Errorf("%s Cache-Control %q, want no-store", path, cc)
		}
	}
	for route, class := range map[string]string{"/v1/mapped": "4xx", "/v1/problem": "4xx", "/v1/internal": "5xx"} {
		if n := testutil.ToFloat64(m.HTTPRequests.WithLabelValues(route, class)); n != 1 {
			t.Errorf("%s counted %v times as %s", route, n, class)
		}
	}
	if n := testutil.ToFloat64(m.HTTPRequests.WithLabelValues("/v1/mapped", "5xx")); n != 0 {
		t.Errorf("a 409 counted as 5xx %v times", n)
	}
}
