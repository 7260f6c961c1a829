package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"

	"github.com/tawsil/tawsil/backend/internal/metrics"
)

// TestAccessLineMatchesSlog: the access line written by hand is byte for
// byte what slog's JSONHandler writes for the same record.
func TestAccessLineMatchesSlog(t *testing.T) {
	casa := time.FixedZone("Africa/Casablanca", 3600)
	times := []time.Time{
		time.Date(2026, 12, 2, 3, 4, 5, 123456789, time.UTC),
		time.Date(2026, 12, 2, 3, 4, 5, 0, time.UTC),
		time.Date(2026, 12, 2, 3, 4, 5, 120000000, casa),
		time.Date(999, 1, 1, 0, 0, 0, 1, time.UTC),
	}
	for _, tt := range []struct {
		method, route, id string
		status, size      int
		ms                float64
	}{
		{"GET", "/v1/couriers", "0ecc8c10f04cf80b", 200, 1443, 0.277},
		{"POST", "/v1/orders/:id/deliver", "req-e2e-42", 409, 312, 12.5},
		{"GET", "/v1/stream", "a.b_c-d", 200, -1, 60000},
		{"DELETE", "/", "x", 599, 0, 0},
		{"GET", "/v1/track/:token", "y", 404, 0, 0.001},
		{"GET", "/", "z", 500, 0, 1e-7},
	} {
		for _, at := range times {
			var want bytes.Buffer
			r := slog.NewRecord(at, slog.LevelInfo, "http", 0)
			a := accessAttrs(tt.method, tt.route, tt.status, tt.ms, tt.size, tt.id)
			r.AddAttrs(a[:]...)
			if err := slog.NewJSONHandler(&want, nil).Handle(context.Background(), r); err != nil {
				t.Fatal(err)
			}
			if got := appendAccessLine(nil, at, tt.method, tt.route, tt.status, tt.ms, tt.size, tt.id); string(got) != want.String() {
				t.Errorf("got  %s\nwant %s", got, want.String())
			}
		}
	}
}

// lineHandler is a JSONLineWriter over a buffer, as cmd/backend's is.
type lineHandler struct {
	slog.Handler
	mu  *sync.Mutex
	buf *bytes.Buffer
	n   *int // lines taken whole
}

func (h lineHandler) JSONLines() io.Writer { return h }

func (h lineHandler) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	*h.n++
	return h.buf.Write(p)
}

// TestAccessLineThroughWriter: with a JSONLineWriter the access line is
// handed over whole and carries the request's fields; at warning level
// nothing is written; with a plain handler slog writes it.
func TestAccessLineThroughWriter(t *testing.T) {
	for _, tt := range []struct {
		name      string
		level     slog.Level
		lineWrite bool
		wantLines int
	}{
		{"writer", slog.LevelInfo, true, 1},
		{"writer, warn level", slog.LevelWarn, true, 0},
		{"slog", slog.LevelInfo, false, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			var mu sync.Mutex
			n := 0
			var h slog.Handler = slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: tt.level})
			if tt.lineWrite {
				h = lineHandler{Handler: h, mu: &mu, buf: &buf, n: &n}
			}
			s := New(Options{}, nil, nil, metrics.New(func() float64 { return 0 }), slog.New(h))
			s.V1().Get("/thing/:id", func(c *fiber.Ctx) error { return c.SendString("hello") })
			req := httptest.NewRequest("GET", "/v1/thing/7?secret=1", nil)
			req.Header.Set(HeaderRequestID, "req-42")
			if _, err := s.App().Test(req, -1); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
			if buf.Len() == 0 {
				lines = nil
			}
			if len(lines) != tt.wantLines || tt.lineWrite && n != tt.wantLines {
				t.Fatalf("%d lines (%d whole): %q", len(lines), n, buf.String())
			}
			for _, l := range lines {
				var rec map[string]any
				if err := json.Unmarshal([]byte(l), &rec); err != nil {
					t.Fatalf("%v: %s", err, l)
				}
				if rec["msg"] != "http" || rec["method"] != "GET" || rec["route"] != "/v1/thing/:id" || rec["status"] != float64(200) ||
					rec["bytes"] != float64(5) || rec["request_id"] != "req-42" || strings.Contains(l, "secret") {
					t.Fatalf("line %s", l)
				}
			}
		})
	}
}

// TestCanonicalHeadersAsSet: the header names set by SetCanonical are the
// ones fasthttp's Set writes for the names the API documents.
func TestCanonicalHeadersAsSet(t *testing.T) {
	for name, canon := range map[string][]byte{HeaderRequestID: canonRequestID, fiber.HeaderCacheControl: canonCacheControl} {
		var viaSet, viaCanon fasthttp.ResponseHeader
		viaSet.Set(name, "v")
		viaCanon.SetCanonical(canon, []byte("v"))
		if a, b := viaSet.String(), viaCanon.String(); a != b {
			t.Errorf("%s: Set writes %q, SetCanonical %q", name, a, b)
		}
	}
}

// TestNewRequestID: made ids are 16 lower-case hex digits (a valid id to
// pass on) and differ.
func TestNewRequestID(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := newRequestID()
		if len(id) != 16 || strings.Trim(id, "0123456789abcdef") != "" || !validRequestID(id) || seen[id] {
			t.Fatalf("id %q (seen before: %v)", id, seen[id])
		}
		seen[id] = true
	}
}
