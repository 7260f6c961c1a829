// Package e2e starts the whole backend on free ports (embedded broker,
// embedded FerretDB over the Mongo wire protocol) and talks to it as clients
// do: HTTP and MQTT.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tawsil/tawsil/backend/internal/app"
	"github.com/tawsil/tawsil/backend/internal/config"
)

const (
	adminEmail = "admin@tawsil.test"
	adminPass  = "admin-password-123"
)

// logSink collects the backend's log output so tests can grep it.
type logSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logSink) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Reset()
}

func (l *logSink) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

type backend struct {
	*app.Main
	base string
	logs *logSink
}

// listenLocal opens a loopback listener on port 0 for a server to serve on.
// Ports are never picked by listening, closing and listening again: another
// test can take the port in between.
func listenLocal(tb testing.TB) net.Listener {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = ln.Close() })
	return ln
}

// mustBackend starts a backend with a fresh data dir; mod may adjust config.
func mustBackend(tb testing.TB, mod func(*config.Config)) *backend {
	tb.Helper()
	cfg := mustConfig(tb)
	if mod != nil {
		mod(&cfg)
	}
	b, _ := startBackend(tb, cfg)
	return b
}

// mustConfig is the embedded-mode e2e configuration with a fresh data dir.
func mustConfig(tb testing.TB) config.Config {
	tb.Helper()
	env := map[string]string{
		"TAWSIL_JWT_SECRET":     "e2e-secret-0123456789abcdef0123456789",
		"TAWSIL_ADMIN_EMAIL":    adminEmail,
		"TAWSIL_ADMIN_PASSWORD": adminPass,
		"TAWSIL_DATA_DIR":       tb.TempDir(),
		"TAWSIL_MQTT_LISTEN":    "127.0.0.1:0", // startBackend hands the broker a listener
		"TAWSIL_MQTT_USERNAME":  "ops",
		"TAWSIL_MQTT_PASSWORD":  "ops-password-e2e",
		"TAWSIL_LOG_LEVEL":      "debug",
		"TAWSIL_DISPATCH_EVERY": "200ms", // bookings are offered within 0.2 s
	}
	cfg, err := config.Load(func(k string) string { return env[k] })
	if err != nil {
		tb.Fatal(err)
	}
	return cfg
}

// startBackend starts a backend for cfg on a free port; the caller may stop
// it early with close (the test cleanup also calls it; Close is idempotent).
func startBackend(tb testing.TB, cfg config.Config) (b *backend, close func()) {
	tb.Helper()
	logs := &logSink{}
	m := app.New(cfg, slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	m.BcryptCost = 4
	if cfg.MQTTURL == "" {
		m.MQTTListener = listenLocal(tb)
	}
	ln := listenLocal(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := m.Start(ctx, ln); err != nil {
		tb.Fatalf("start backend: %v\nlogs:\n%s", err, logs.String())
	}
	close = func() {
		if err := m.Close(context.Background()); err != nil {
			tb.Logf("close: %v", err)
		}
	}
	tb.Cleanup(close)
	return &backend{Main: m, base: "http://" + ln.Addr().String(), logs: logs}, close
}

type resp struct {
	status int
	header http.Header
	body   []byte
}

func (r resp) json(tb testing.TB, dst any) {
	tb.Helper()
	if err := json.Unmarshal(r.body, dst); err != nil {
		tb.Fatalf("decode %s: %v", r.body, err)
	}
}

func (r resp) m(tb testing.TB) map[string]any {
	tb.Helper()
	var out map[string]any
	r.json(tb, &out)
	return out
}

var client = &http.Client{Timeout: 20 * time.Second}

func (b *backend) do(tb testing.TB, method, path, token string, body any, headers ...string) resp {
	tb.Helper()
	var rd io.Reader
	switch v := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(v)
	case []byte:
		rd = bytes.NewReader(v)
	default:
		raw, err := json.Marshal(v)
		if err != nil {
			tb.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, b.base+path, rd)
	if err != nil {
		tb.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	req.Close = method == http.MethodHead // some HEAD answers carry a stray body
	res, err := client.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	out := resp{status: res.StatusCode, header: res.Header}
	if !strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") { // leave event streams at once
		if out.body, err = io.ReadAll(res.Body); err != nil {
			tb.Fatal(err)
		}
	}
	checkResponse(tb, res.Request, out.status, out.header, out.body) // the request answered, after any redirect
	return out
}

func (b *backend) mustStatus(tb testing.TB, want int, method, path, token string, body any, headers ...string) resp {
	tb.Helper()
	r := b.do(tb, method, path, token, body, headers...)
	if r.status != want {
		tb.Fatalf("%s %s = %d, want %d: %s", method, path, r.status, want, r.body)
	}
	return r
}

func (b *backend) login(tb testing.TB, email, password string) (access, refresh string) {
	tb.Helper()
	r := b.mustStatus(tb, 200, "POST", "/v1/auth/login", "", map[string]string{"email": email, "password": password})
	var out struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
		TokenType    string `json:"token_type"`
		ExpiresIn    int    `json:"expires_in"`
	}
	r.json(tb, &out)
	if out.TokenType != "Bearer" || out.ExpiresIn <= 0 || out.AccessToken == "" || out.RefreshToken == "" {
		tb.Fatalf("login answer: %s", r.body)
	}
	return out.AccessToken, out.RefreshToken
}

type user struct {
	ID, Email, Password, Token, CourierID, MerchantID string
}

var userSeq int

// mustUser creates a user of a role through the API and logs it in.
func (b *backend) mustUser(tb testing.TB, admin, role string) user {
	tb.Helper()
	userSeq++
	u := user{Email: fmt.Sprintf("%s%d@tawsil.test", role, userSeq), Password: "password-" + role + "-123"}
	r := b.mustStatus(tb, 201, "POST", "/v1/users", admin, map[string]any{"email": u.Email, "password": u.Password, "role": role, "name": "Test " + role})
	var out struct {
		ID         string `json:"id"`
		CourierID  string `json:"courier_id"`
		MerchantID string `json:"merchant_id"`
	}
	r.json(tb, &out)
	u.ID, u.CourierID, u.MerchantID = out.ID, out.CourierID, out.MerchantID
	u.Token, _ = b.login(tb, u.Email, u.Password)
	return u
}

func eventually(tb testing.TB, what string, timeout time.Duration, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
