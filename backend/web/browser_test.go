package web_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tawsil/tawsil/backend/internal/app"
	"github.com/tawsil/tawsil/backend/internal/config"
	"github.com/tawsil/tawsil/backend/internal/demo"
)

// need finds a tool the browser tests require. Missing, it fails the test
// in CI (the CI script installs it) and skips it elsewhere with a message.
func need(t *testing.T, what, path string) string {
	t.Helper()
	if p, err := exec.LookPath(path); err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s (%s) is missing: .ci/run installs it (apt-get install chromium; npm ci in backend/web)", what, path)
	}
	t.Skipf("%s (%s) is missing; install it to run the browser tests", what, path)
	return ""
}

func needModules(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("node_modules/playwright-core/package.json"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("backend/web/node_modules is missing: run `npm ci` in backend/web (.ci/run does)")
		}
		t.Skip("backend/web/node_modules is missing; run `npm ci` in backend/web to run the browser tests")
	}
}

// TestDistMatchesSources fails when the committed build (dist/) is not what
// the sources build to.
func TestDistMatchesSources(t *testing.T) {
	node := need(t, "node", "node")
	needModules(t)
	out, err := exec.Command(node, "build.mjs", "--check").CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v", out, err)
	}
}

// TestBrowser drives the console, the courier app and the tracking page in
// headless Chromium (Debian's, through playwright-core) against a real
// backend: embedded broker and FerretDB, demo accounts, couriers publishing
// over MQTT. The scenario is test/browser.mjs; screenshots go to
// test-artifacts/.
func TestBrowser(t *testing.T) {
	chromium, node := browserTools(t)
	m, base, dir := startApp(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pub, creds := startFleet(ctx, t, m, dir)
	// The demo couriers stand around central Casablanca and drift a little,
	// so the console sees live movement; the scenario moves them at will.
	spots := [][2]float64{{33.5731, -7.5898}, {33.5800, -7.6000}, {33.5650, -7.6100}, {33.5900, -7.6200}, {33.5600, -7.5800}}
	for i, c := range creds {
		pub.Set(c.CourierID, spots[i%len(spots)][0], spots[i%len(spots)][1], 0, 0)
	}
	go func() {
		tk := time.NewTicker(time.Second)
		defer tk.Stop()
		for n := 0; ; n++ {
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
			}
			for i, c := range creds[1:] {
				b := spots[(i+1)%len(spots)]
				a := float64(n) / 10
				pub.Set(c.CourierID, b[0]+0.0004*math.Sin(a+float64(i)), b[1]+0.0004*math.Cos(a+float64(i)), 3, 0)
			}
		}
	}()

	// The scenario moves couriers through this control endpoint.
	ctl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /move", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			CourierID string  `json:"courier_id"`
			Lat       float64 `json:"lat"`
			Lng       float64 `json:"lng"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.CourierID == "" {
			http.Error(w, "bad move", http.StatusBadRequest)
			return
		}
		select { // drive there at 40 m/s (the backend refuses faster jumps), answer on arrival
		case <-pub.MoveTo(req.CourierID, req.Lat, req.Lng, 40):
			w.WriteHeader(http.StatusNoContent)
		case <-r.Context().Done():
		}
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ctl) }()
	t.Cleanup(func() { _ = srv.Close() })

	artifacts, err := filepath.Abs("test-artifacts")
	if err != nil {
		t.Fatal(err)
	}
	cmdCtx, cmdCancel := context.WithTimeout(ctx, 4*time.Minute)
	defer cmdCancel()
	cmd := exec.CommandContext(cmdCtx, node, "test/browser.mjs")
	pw := os.Getenv("TAWSIL_DEMO_PASSWORD")
	if pw == "" {
		pw = "tawsil-demo-2026"
	}
	cmd.Env = append(os.Environ(), "BASE_URL="+base, "CONTROL_URL=http://"+ctl.Addr().String(),
		"CHROMIUM="+chromium, "ARTIFACTS="+artifacts, "DEMO_PASSWORD="+pw, "FIRST_COURIER="+creds[0].CourierID,
		"ADMIN_EMAIL="+m.Config.AdminEmail, "ADMIN_PASSWORD="+m.Config.AdminPassword)

	out, err := cmd.CombinedOutput()
	t.Logf("browser scenario output:\n%s", out)
	if err != nil {
		t.Fatalf("browser scenario failed: %v", err)
	}
	if !strings.Contains(string(out), "ALL PASSED") {
		t.Fatal("the browser scenario did not report ALL PASSED")
	}
}

// browserTools finds chromium, node and the npm packages the browser tests need.
func browserTools(t *testing.T) (chromium, node string) {
	t.Helper()
	chromium = os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	chromium = need(t, "chromium", chromium)
	node = need(t, "node", "node")
	needModules(t)
	return chromium, node
}

// startFleet publishes the demo couriers' positions over MQTT until ctx ends.
func startFleet(ctx context.Context, tb testing.TB, m *app.Main, dir string) (*demo.Publisher, []demo.Credential) {
	tb.Helper()
	creds, err := demo.ReadCredentials(filepath.Join(dir, "fleet-credentials.json"))
	if err != nil {
		tb.Fatal(err)
	}
	pub := &demo.Publisher{Broker: "tcp://" + m.MQTTAddr(), Every: 500 * time.Millisecond}
	if err := pub.Start(ctx, creds); err != nil {
		tb.Fatal(err)
	}
	return pub, creds
}

// startApp starts a backend with the demo accounts (embedded broker and
// FerretDB, HTTP and MQTT on port 0) and returns it, its base URL and its
// data directory.
func startApp(tb testing.TB) (*app.Main, string, string) {
	tb.Helper()
	dir := tb.TempDir()
	env := map[string]string{
		"TAWSIL_JWT_SECRET":     "browser-secret-0123456789abcdef0123456789",
		"TAWSIL_ADMIN_EMAIL":    "admin@demo.tawsil.ma",
		"TAWSIL_ADMIN_PASSWORD": "browser-admin-password",
		"TAWSIL_DATA_DIR":       dir,
		"TAWSIL_MQTT_LISTEN":    "127.0.0.1:0",
		"TAWSIL_SEED":           "true",
		"TAWSIL_LOG_LEVEL":      "warn",
	}
	cfg, err := config.Load(func(k string) string { return env[k] })
	if err != nil {
		tb.Fatal(err)
	}
	m := app.New(cfg, slog.New(slog.NewTextHandler(testWriter{tb}, &slog.HandlerOptions{Level: slog.LevelError})))
	m.BcryptCost = 4
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := m.Start(ctx, ln); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = m.Close(context.Background()) })
	return m, "http://" + ln.Addr().String(), dir
}

type testWriter struct{ tb testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.tb.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
