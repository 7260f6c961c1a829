package e2e

// Fault tests of issue 11: a real Mosquitto, a real agent process and a real
// backend process (cmd/backend and cmd/agent, built by the test), each
// scenario asserting that every fix the agent accepted is stored, none
// twice, and that the live position is the last fix at the end.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

var (
	binOnce                sync.Once
	agentBinPath, backPath string
	binErr                 error
)

// binaries builds the agent and the backend (cmd/backend, as deployed; not
// race-instrumented, whatever this test binary is) once for all scenarios.
func binaries(tb testing.TB) (agentBin, backendBin string) {
	tb.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "tawsil-fault-bin")
		if err != nil {
			binErr = err
			return
		}
		agentBinPath, backPath = filepath.Join(dir, "agent"), filepath.Join(dir, "backend")
		build := func(out, pkg, moduleDir string, env ...string) error {
			cmd := exec.Command("go", "build", "-o", out, pkg)
			cmd.Dir = moduleDir
			cmd.Env = append(os.Environ(), env...)
			if b, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
			}
			return nil
		}
		errs := make(chan error, 2)
		go func() {
			errs <- build(agentBinPath, "./cmd/agent", filepath.Join("..", "..", "..", "agent"), "CGO_ENABLED=0")
		}()
		go func() { errs <- build(backPath, "./cmd/backend", filepath.Join("..", "..")) }()
		for range 2 {
			if err := <-errs; err != nil && binErr == nil {
				binErr = err
			}
		}
	})
	if binErr != nil {
		tb.Fatal(binErr)
	}
	return agentBinPath, backPath
}

// faultRig is one scenario's world: its own Mosquitto, backend process,
// courier and agent binary.
type faultRig struct {
	t          *testing.T
	mb         *mosquittoBroker
	api        *backend // HTTP only (no Main)
	proc       *exec.Cmd
	plogs      *logSink
	courier    user
	dev        device
	agentBin   string
	backendBin string
	profile    string
	dir        string
}

var faultUsers atomic.Int64

// faultProfile is a device profile that sends every fix of a 1 Hz track,
// keeps old fixes (backlogs), batches 50 per message and reconnects fast.
const faultProfile = `name: fault-test
description: every fix, fast reconnects
gps:
  read_interval_s: 1
  max_accuracy_m: 40
  max_speed_mps: 42
  max_fix_age_s: 86400
filter:
  min_interval_s: 0
  max_interval_s: 1
  min_distance_m: 0
  min_heading_change_deg: 0
  still_speed_mps: 0
  still_heartbeat_s: 1
mqtt:
  keepalive_s: 10
  batch_max: 50
  drain_msgs_per_s: 200
  max_in_flight: 20
  reconnect_min_s: 0.2
  reconnect_max_s: 1
outbox:
  max_fixes: 100000
battery:
  low_percent: 15
  low_interval_factor: 2
`

func newFaultRig(t *testing.T, persistence bool) *faultRig {
	t.Helper()
	mb := mustMosquitto(t)
	if !persistence {
		conf, err := os.ReadFile(mb.path("mosquitto.conf"))
		if err != nil {
			t.Fatal(err)
		}
		c := strings.Replace(string(conf), "\npersistence true\n", "\npersistence false\n", 1)
		if c == string(conf) {
			t.Fatal("deployment config has no 'persistence true' line to turn off")
		}
		if err := os.WriteFile(mb.path("mosquitto.conf"), []byte(c), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	mb.start()
	agentBin, backendBin := binaries(t)
	r := &faultRig{t: t, mb: mb, plogs: &logSink{}, agentBin: agentBin, backendBin: backendBin, dir: t.TempDir()}
	r.profile = filepath.Join(r.dir, "profile.yaml")
	if err := os.WriteFile(r.profile, []byte(faultProfile), 0o600); err != nil {
		t.Fatal(err)
	}
	r.startBackend()
	admin, _ := r.api.login(t, adminEmail, adminPass)
	n := faultUsers.Add(1)
	u := user{Email: fmt.Sprintf("fault%d@tawsil.test", n), Password: "password-courier-123"}
	resp := r.api.mustStatus(t, 201, "POST", "/v1/users", admin, map[string]any{"email": u.Email, "password": u.Password, "role": "courier", "name": "Fault courier"})
	var out struct {
		ID        string `json:"id"`
		CourierID string `json:"courier_id"`
	}
	resp.json(t, &out)
	u.ID, u.CourierID = out.ID, out.CourierID
	u.Token, _ = r.api.login(t, u.Email, u.Password)
	r.courier = u
	r.dev = r.api.mustDevice(t, admin, u.CourierID)
	mb.addDevice(r.dev.Username, r.dev.Password)
	r.api.mustStatus(t, 200, "POST", "/v1/me/shift", u.Token, map[string]any{"on_duty": true})
	return r
}

// startBackend runs bin/backend (cmd/backend) on the external broker, with
// its shared subscription, acknowledging storage every 300 ms. It listens
// on port 0; the address comes from its log.
func (r *faultRig) startBackend() {
	t := r.t
	cmd := exec.Command(r.backendBin)
	cmd.Env = append(os.Environ(),
		"TAWSIL_HTTP_ADDR=127.0.0.1:0",
		"TAWSIL_JWT_SECRET=e2e-secret-0123456789abcdef0123456789",
		"TAWSIL_ADMIN_EMAIL="+adminEmail, "TAWSIL_ADMIN_PASSWORD="+adminPass,
		"TAWSIL_DATA_DIR="+filepath.Join(r.dir, "data"),
		"MQTT_URL=tcp://"+r.mb.svcAddr, "TAWSIL_MQTT_USERNAME="+backendUser, "TAWSIL_MQTT_PASSWORD="+r.mb.backendPassword,
		"TAWSIL_MQTT_CLIENT_ID=tawsil-backend-fault", "TAWSIL_ACK_INTERVAL=300ms", "TAWSIL_LOG_LEVEL=info")
	cmd.Stdout, cmd.Stderr = r.plogs, r.plogs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r.proc = cmd
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	listening := regexp.MustCompile(`"msg":"HTTP API listening","addr":"([^"]+)"`)
	var addr string
	poll(t, "backend process listening", 60*time.Second, func() bool {
		select {
		case <-exited:
			t.Fatalf("backend process exited:\n%s", r.plogs.String())
		default:
		}
		if m := listening.FindStringSubmatch(r.plogs.String()); m != nil {
			addr = m[1]
			return true
		}
		return false
	})
	r.api = &backend{base: "http://" + addr, logs: r.plogs}
	poll(t, "backend process ready", 60*time.Second, func() bool {
		res, err := http.Get(r.api.base + "/readyz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == 200
	})
}

// agentRun is one agent process.
type agentRun struct {
	cmd    *exec.Cmd
	logs   *safeLog
	exited chan struct{}
	err    error
}

type safeLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *safeLog) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *safeLog) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startAgent runs `agent run` on a GPX file (speed times real time) with
// the rig's outbox, re-sending unconfirmed fixes after 3 s.
func (r *faultRig) startAgent(gpx string, speed float64, outbox string) *agentRun {
	r.t.Helper()
	return r.startAgentResend(gpx, speed, outbox, 3*time.Second)
}

// startAgentResend is startAgent with another re-send delay.
func (r *faultRig) startAgentResend(gpx string, speed float64, outbox string, resend time.Duration) *agentRun {
	r.t.Helper()
	cmd := exec.Command(r.agentBin, "run", "--broker", "tcp://"+r.mb.devAddr, "--courier", r.courier.CourierID,
		"--username", r.dev.Username, "--client-id", r.dev.ClientID,
		"--source", fmt.Sprintf("gpx:%s?speed=%g", gpx, speed), "--outbox", outbox, "--status-addr", "127.0.0.1:0",
		"--profile", r.profile, "--exit-when-drained", "--resend-after", resend.String())
	cmd.Env = append(os.Environ(), "TAWSIL_AGENT_PASSWORD="+r.dev.Password)
	a := &agentRun{cmd: cmd, logs: &safeLog{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = a.logs, a.logs
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	go func() { a.err = cmd.Wait(); close(a.exited) }()
	r.t.Cleanup(func() { _ = cmd.Process.Kill(); <-a.exited })
	return a
}

// wait waits for the agent to exit 0 (source ended, outbox drained).
func (a *agentRun) wait(tb testing.TB, within time.Duration) {
	tb.Helper()
	select {
	case <-a.exited:
		if a.err != nil {
			tb.Fatalf("agent: %v\n%s", a.err, a.logs.String())
		}
	case <-time.After(within):
		_ = a.cmd.Process.Kill()
		tb.Fatalf("agent did not drain and exit within %v\n%s", within, a.logs.String())
	}
}

func (a *agentRun) kill(tb testing.TB) {
	tb.Helper()
	_ = a.cmd.Process.Signal(syscall.SIGKILL)
	<-a.exited
}

var logField = regexp.MustCompile(`(\w+)=("[^"]*"|\S+)`)

// final returns the fields of the agent's "agent stopped" line.
func (a *agentRun) final(tb testing.TB) map[string]uint64 {
	tb.Helper()
	for _, line := range strings.Split(a.logs.String(), "\n") {
		if !strings.Contains(line, `msg="agent stopped"`) {
			continue
		}
		out := map[string]uint64{}
		for _, m := range logField.FindAllStringSubmatch(line, -1) {
			if v, err := strconv.ParseUint(m[2], 10, 64); err == nil {
				out[m[1]] = v
			}
		}
		return out
	}
	tb.Fatalf("no final line in the agent's log:\n%s", a.logs.String())
	return nil
}

// status reads the agent's status endpoint (its address is in its log).
func (a *agentRun) status(tb testing.TB) (lastSeq, depth uint64, ok bool) {
	tb.Helper()
	m := regexp.MustCompile(`msg="status endpoint".* addr=(\S+)`).FindStringSubmatch(a.logs.String())
	if m == nil {
		return 0, 0, false
	}
	res, err := http.Get("http://" + m[1] + "/status")
	if err != nil {
		return 0, 0, false
	}
	defer res.Body.Close()
	var st struct {
		LastSeq uint64 `json:"last_seq"`
		Depth   uint64 `json:"outbox_depth"`
	}
	if err := json.NewDecoder(res.Body).Decode(&st); err != nil {
		return 0, 0, false
	}
	return st.LastSeq, st.Depth, true
}

type storedFix struct {
	Epoch uint64    `json:"epoch"`
	Seq   uint64    `json:"seq"`
	Lat   float64   `json:"lat"`
	Lng   float64   `json:"lng"`
	T     time.Time `json:"t"`
	Late  bool      `json:"late"`
}

// stored lists the courier's stored fixes (the HTTP track, last 6 hours).
func (r *faultRig) stored(tb testing.TB) []storedFix { return r.storedN(tb, 20000) }

// storedN lists at most n of them.
func (r *faultRig) storedN(tb testing.TB, n int) []storedFix {
	tb.Helper()
	from := time.Now().Add(-6 * time.Hour).UTC().Format(time.RFC3339)
	to := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	req, err := http.NewRequest("GET", r.api.base+fmt.Sprintf("/v1/couriers/%s/track?limit=%d&from=%s&to=%s", r.courier.CourierID, n, from, to), nil)
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+r.courier.Token)
	res, err := slowClient.Do(req)
	if err != nil {
		tb.Fatalf("track: %v", err)
	}
	defer res.Body.Close()
	var out struct {
		Positions []storedFix `json:"positions"`
	}
	if res.StatusCode != 200 {
		tb.Fatalf("track: status %d", res.StatusCode)
	}
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		tb.Fatalf("track: %v", err)
	}
	return out.Positions
}

// slowClient waits longer than the API tests' client: a race-built
// backend reads thousands of fixes through its embedded store slowly.
var slowClient = &http.Client{Timeout: 90 * time.Second}

// poll is eventually at a pace a loaded (race-built) backend can serve.
func poll(tb testing.TB, what string, timeout time.Duration, cond func() bool) {
	tb.Helper()
	for deadline := time.Now().Add(timeout); !cond(); time.Sleep(300 * time.Millisecond) {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
	}
}

// checkStored asserts that the stored fixes are exactly want (epoch →
// seqs 1..n; those in maybe may be missing: refused by the backend), none
// twice, and that the live position is the newest of them.
func (r *faultRig) checkStored(tb testing.TB, want map[uint64]uint64, maybe map[[2]uint64]bool) []storedFix {
	tb.Helper()
	total := 0
	for ep, n := range want {
		total += int(n)
		for s := uint64(1); s <= n; s++ {
			if maybe[[2]uint64{ep, s}] {
				total--
			}
		}
	}
	var got []storedFix
	poll(tb, "every accepted fix stored", 60*time.Second, func() bool {
		got = r.stored(tb)
		return len(got) >= total
	})
	seen := map[[2]uint64]int{}
	dups := 0
	for _, f := range got {
		k := [2]uint64{f.Epoch, f.Seq}
		if seen[k]++; seen[k] > 1 {
			dups++
		}
	}
	var missing, extra []string
	for ep, n := range want {
		for s := uint64(1); s <= n; s++ {
			k := [2]uint64{ep, s}
			if seen[k] == 0 && !maybe[k] {
				missing = append(missing, fmt.Sprint(ep, "/", s))
			}
		}
	}
	for k := range seen {
		if n, ok := want[k[0]]; !ok || k[1] > n {
			extra = append(extra, fmt.Sprint(k[0], "/", k[1]))
		}
	}
	if dups > 0 || len(missing) > 0 || len(extra) > 0 || len(got) < total {
		sort.Strings(missing)
		tb.Fatalf("stored %d fixes, want %d: %d duplicates, %d missing (e.g. %v), %d unexpected (e.g. %v)\nbackend log tail:\n%s",
			len(got), total, dups, len(missing), missing[:min(5, len(missing))], len(extra), extra[:min(5, len(extra))], tail([]byte(r.plogs.String()), 3000))
	}
	newest := got[0]
	for _, f := range got {
		if f.T.After(newest.T) {
			newest = f
		}
	}
	var live struct {
		Lat       *float64 `json:"lat"`
		Lng       *float64 `json:"lng"`
		UpdatedAt string   `json:"updated_at"`
	}
	admin, _ := r.api.login(tb, adminEmail, adminPass)
	eventually(tb, "live position is the newest fix", 5*time.Second, func() bool {
		r.api.mustStatus(tb, 200, "GET", "/v1/couriers/"+r.courier.CourierID, admin, nil).json(tb, &live)
		return live.Lat != nil && *live.Lat == newest.Lat && *live.Lng == newest.Lng
	})
	tb.Logf("%d fixes stored once each in %d epoch(s); live position = newest fix (%s)", len(got), len(want), live.UpdatedAt)
	return got
}

func tail(b []byte, n int) string {
	if len(b) > n {
		return string(b[len(b)-n:])
	}
	return string(b)
}

// writeGPX writes a 1 Hz track of n points going north at 8 m/s from
// (lat, lng); outlier, when set, replaces the first point by one 30 km
// east.
func writeGPX(tb testing.TB, path string, n int, lat, lng float64, outlier bool) {
	tb.Helper()
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n" +
		`<gpx version="1.1" creator="tawsil fault test" xmlns="http://www.topografix.com/GPX/1/1"><trk><trkseg>` + "\n")
	t0 := time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC)
	for i := 0; i < n; i++ {
		la, lo := lat+float64(i)*0.000072, lng // 8 m
		if outlier && i == 0 {
			lo += 0.325 // ~30 km east
		}
		fmt.Fprintf(&b, `<trkpt lat="%.7f" lon="%.7f"><time>%s</time><hdop>1.0</hdop></trkpt>`+"\n", la, lo, t0.Add(time.Duration(i)*time.Second).Format(time.RFC3339))
	}
	b.WriteString("</trkseg></trk></gpx>\n")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		tb.Fatal(err)
	}
}

const casaLat, casaLng = 33.5731, -7.5898

// TestFaults runs the fault scenarios of issue 11 in parallel.
func TestFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("real Mosquitto, agent and backend processes")
	}
	mustMosquitto(t) // skips (or fails in CI) without Mosquitto
	binaries(t)
	// The scenarios mostly wait (on brokers, replays, timers): run them all
	// at once, whatever -parallel says (t.Run may be called from several
	// goroutines).
	// Four at a time: more starve each other's race-built backends on two
	// cores.
	var wg sync.WaitGroup
	defer wg.Wait()
	slots := make(chan struct{}, 4)
	run := func(name string, f func(t *testing.T)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			slots <- struct{}{}
			defer func() { <-slots }()
			t.Run(name, f)
		}()
	}

	// The scenario of the issue: Mosquitto (persistence on) restarted while
	// the agent streams and the backend reads through its shared
	// subscription, which Mosquitto 2.0.11 does not restore. Before storage
	// acknowledgements: 81-83 of 123 fixes stored.
	for _, persist := range []bool{true, false} {
		name := "broker restart, persistence " + map[bool]string{true: "on", false: "off"}[persist]
		run(name, func(t *testing.T) {
			r := newFaultRig(t, persist)
			gpx := filepath.Join(r.dir, "ride.gpx")
			writeGPX(t, gpx, 150, casaLat, casaLng, false)
			a := r.startAgent(gpx, 20, filepath.Join(r.dir, "outbox"))
			time.Sleep(2 * time.Second)
			var before uint64
			eventually(t, "agent status", 5*time.Second, func() bool {
				var ok bool
				before, _, ok = a.status(t)
				return ok
			})
			r.mb.stop()
			restarted := time.Now()
			r.mb.start()
			// Time to zero backlog: every fix numbered up to a second after
			// the broker came back (when the backend has not subscribed
			// again yet) stored.
			time.Sleep(time.Second)
			after, _, _ := a.status(t)
			poll(t, "fixes from around the restart stored", 40*time.Second, func() bool {
				n := 0
				for _, f := range r.stored(t) {
					if f.Seq <= after {
						n++
					}
				}
				return uint64(n) >= after
			})
			recovered := time.Since(restarted)
			if after <= before {
				t.Fatalf("the agent did not go on during the restart (last seq %d, then %d)", before, after)
			}
			a.wait(t, 60*time.Second)
			fin := a.final(t)
			r.checkStored(t, map[uint64]uint64{fin["epoch"]: fin["last_seq"]}, nil)
			t.Logf("FIGURE %s: %d fixes, %d re-sent; restart to zero backlog %.1f s; downlink %.1f B per stored fix (%d acks)",
				name, fin["last_seq"], fin["resent"], recovered.Seconds(), float64(fin["storage_ack_bytes"])/float64(fin["stored"]), fin["storage_acks"])
		})
	}

	// SIGKILL while draining a backlog of thousands, then a restart on the
	// same outbox.
	run("agent killed while draining", func(t *testing.T) {
		r := newFaultRig(t, true)
		gpx := filepath.Join(r.dir, "ride.gpx")
		writeGPX(t, gpx, 2000, casaLat, casaLng, false)
		box := filepath.Join(r.dir, "outbox")
		r.mb.stop() // the backlog builds while the broker is away
		// The default re-send delay: a race-built backend drains a backlog
		// slower than 3 s per acknowledgement, and early re-sends only
		// add duplicates for it to skip.
		a := r.startAgentResend(gpx, 0, box, 20*time.Second)
		poll(t, "backlog of 2000 queued", 30*time.Second, func() bool {
			last, _, ok := a.status(t)
			return ok && last == 2000
		})
		r.mb.start()
		poll(t, "draining", 60*time.Second, func() bool { return len(r.storedN(t, 200)) >= 200 })
		a.kill(t)
		one := filepath.Join(r.dir, "one.gpx")
		writeGPX(t, one, 1, casaLat+0.144, casaLng, false) // one more fix, where the ride ended
		b := r.startAgentResend(one, 0, box, 20*time.Second)
		b.wait(t, 90*time.Second)
		fin := b.final(t)
		if fin["last_seq"] != 2001 {
			t.Fatalf("restarted agent's last seq %d, want 2001 (same epoch, counter kept)", fin["last_seq"])
		}
		r.checkStored(t, map[uint64]uint64{fin["epoch"]: 2001}, nil)
		t.Logf("FIGURE killed while draining: 2000 fixes, %d re-sent by the restarted agent", fin["resent"])
	})

	// The outbox file deleted under the running agent, then the agent
	// restarted: a fresh file counts from 1 again in a new epoch. Before
	// epochs the backend dropped those fixes as duplicates.
	run("outbox emptied and agent restarted", func(t *testing.T) {
		r := newFaultRig(t, true)
		box := filepath.Join(r.dir, "outbox")
		gpx := filepath.Join(r.dir, "ride.gpx")
		writeGPX(t, gpx, 100, casaLat, casaLng, false)
		a := r.startAgent(gpx, 20, box)
		time.Sleep(2 * time.Second)
		if err := os.Remove(filepath.Join(box, "outbox.db")); err != nil {
			t.Fatal(err)
		}
		a.wait(t, 60*time.Second) // drains from the unlinked file
		first := a.final(t)
		gpx2 := filepath.Join(r.dir, "ride2.gpx")
		writeGPX(t, gpx2, 50, casaLat+0.0072, casaLng, false) // where the first ride ended
		b := r.startAgent(gpx2, 20, box)
		b.wait(t, 60*time.Second)
		second := b.final(t)
		if second["epoch"] == first["epoch"] || second["last_seq"] != 50 {
			t.Fatalf("after the outbox was emptied: epoch %d (was %d), last seq %d; want a new epoch counting 1..50", second["epoch"], first["epoch"], second["last_seq"])
		}
		r.checkStored(t, map[uint64]uint64{first["epoch"]: first["last_seq"], second["epoch"]: 50}, nil)
	})

	// The agent restarted 3 km from its last fix, and its first fix after
	// the restart a 30 km outlier (a fresh process has no previous fix to
	// filter it against). Before: every true fix refused for ~distance/50 s.
	run("restart 3 km away after a 30 km outlier", func(t *testing.T) {
		r := newFaultRig(t, true)
		box := filepath.Join(r.dir, "outbox")
		gpx := filepath.Join(r.dir, "ride.gpx")
		writeGPX(t, gpx, 60, casaLat, casaLng, false)
		a := r.startAgent(gpx, 20, box)
		a.wait(t, 60*time.Second)
		first := a.final(t)
		gpx2 := filepath.Join(r.dir, "elsewhere.gpx")
		writeGPX(t, gpx2, 60, casaLat+0.027, casaLng, true) // 3 km north, first point 30 km east
		b := r.startAgent(gpx2, 20, box)
		b.wait(t, 60*time.Second)
		second := b.final(t)
		if second["epoch"] != first["epoch"] {
			t.Fatalf("restart on the same outbox changed epoch")
		}
		// The outlier is refused, or, when the replay dated it before the
		// live fix, stored as late: never the live position, never evidence.
		outlier := [2]uint64{first["epoch"], first["last_seq"] + 1}
		for _, f := range r.checkStored(t, map[uint64]uint64{first["epoch"]: second["last_seq"]}, map[[2]uint64]bool{outlier: true}) {
			if [2]uint64{f.Epoch, f.Seq} == outlier && !f.Late {
				t.Fatalf("the 30 km outlier was stored as an on-time fix: %+v", f)
			}
		}
		if !strings.Contains(r.plogs.String(), "courier re-anchored") {
			t.Fatal("no re-anchoring logged: the restart 3 km away was not exercised")
		}
	})

	// Random bytes over pages 2-7 of the outbox made bbolt panic inside
	// Open: exit 2 at every start. Now the file is moved aside (counted)
	// and a new epoch starts.
	run("damaged freelist pages", func(t *testing.T) {
		r := newFaultRig(t, true)
		box := filepath.Join(r.dir, "outbox")
		gpx := filepath.Join(r.dir, "ride.gpx")
		writeGPX(t, gpx, 400, casaLat, casaLng, false)
		r.mb.stop()
		a := r.startAgent(gpx, 0, box)
		eventually(t, "fixes queued", 20*time.Second, func() bool {
			last, _, ok := a.status(t)
			return ok && last == 400
		})
		a.kill(t)
		r.mb.start()
		path := filepath.Join(box, "outbox.db")
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for i := 2 * 4096; i < min(8*4096, len(raw)); i++ {
			raw[i] = byte(i*7919 + i>>3)
		}
		if err := os.WriteFile(path, raw, 0o600); err != nil {
			t.Fatal(err)
		}
		gpx2 := filepath.Join(r.dir, "ride2.gpx")
		writeGPX(t, gpx2, 50, casaLat+0.03, casaLng, false)
		b := r.startAgent(gpx2, 20, box)
		b.wait(t, 60*time.Second)
		fin := b.final(t)
		if fin["damaged"] != 1 || fin["last_seq"] != 50 {
			t.Fatalf("after the damaged file: damaged %d, last seq %d; want 1, 50\n%s", fin["damaged"], fin["last_seq"], b.logs.String())
		}
		r.checkStored(t, map[uint64]uint64{fin["epoch"]: 50}, nil)
	})

	// A 64 KiB filesystem for the outbox with the broker away: the disk
	// fills, the oldest fixes are dropped and counted, the agent keeps
	// running, and everything it kept is stored once the broker is back.
	// (The broker's absence matters only until the disk is full, which a
	// replay at 200x reaches in a few seconds, not a minute.)
	run("64 KiB disk with the broker away", func(t *testing.T) {
		r := newFaultRig(t, true)
		box := mustTinyFS(t, "64k")
		gpx := filepath.Join(r.dir, "ride.gpx")
		writeGPX(t, gpx, 1500, casaLat, casaLng, false)
		r.mb.stop()
		a := r.startAgent(gpx, 300, box)
		eventually(t, "the disk full and fixes lost", 30*time.Second, func() bool {
			m := regexp.MustCompile(`outbox write failed`).FindString(a.logs.String())
			return m != ""
		})
		time.Sleep(2 * time.Second)
		r.mb.start()
		a.wait(t, 90*time.Second)
		fin := a.final(t)
		if fin["lost"] == 0 || fin["last_seq"] != 1500 {
			t.Fatalf("lost %d, last seq %d; want a counted loss and all 1500 numbered", fin["lost"], fin["last_seq"])
		}
		got := r.stored(t)
		seen := map[uint64]bool{}
		for _, f := range got {
			if f.Epoch != fin["epoch"] || f.Seq > 1500 || seen[f.Seq] {
				t.Fatalf("stored %d/%d: unexpected or twice", f.Epoch, f.Seq)
			}
			seen[f.Seq] = true
		}
		// Lost counts every fix dropped before its confirmation, so some of
		// them may have reached the backend already: an upper bound.
		if uint64(len(got))+fin["lost"] < 1500 {
			m := r.api.do(t, "GET", "/metrics", "", nil)
			var lines []string
			for _, l := range strings.Split(string(m.body), "\n") {
				if strings.HasPrefix(l, "tawsil_ingest") {
					lines = append(lines, l)
				}
			}
			t.Fatalf("stored %d + lost %d < 1500 accepted: a loss was not counted\n%s\nagent:\n%s", len(got), fin["lost"], strings.Join(lines, "\n"), tail([]byte(a.logs.String()), 3000))
		}
		if !seen[1500] || seen[1] {
			t.Fatalf("first fix stored %v, last %v: the oldest must go first", seen[1], seen[1500])
		}
		t.Logf("FIGURE 64 KiB disk: 1500 accepted, %d lost (counted), %d stored", fin["lost"], len(got))
	})
}

// mustTinyFS mounts a tmpfs of the given size (root only); elsewhere the
// test is skipped, except in CI where it fails.
func mustTinyFS(tb testing.TB, size string) string {
	tb.Helper()
	dir := tb.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatalf("mount a %s tmpfs: %v %s", size, err, out)
		}
		tb.Skipf("cannot mount a %s tmpfs (needs root): %v %s", size, err, out)
	}
	tb.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	return dir
}
