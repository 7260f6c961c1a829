package agent

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/tawsil/tawsil/agent/internal/outbox"
	"github.com/tawsil/tawsil/shared/topic"
	"github.com/tawsil/tawsil/shared/wire"
)

// ride is the committed GPX of a 15-minute Casablanca ride.
var ride = filepath.Join("..", "source", "testdata", "casablanca-ride.gpx")

// received collects the sequence numbers a subscriber got, per courier.
type received struct {
	mu    sync.Mutex
	order map[string][]uint64 // first occurrences, in arrival order
	seen  map[string]map[uint64]bool
	dups  int
	bad   []error
}

func newReceived() *received {
	return &received{order: map[string][]uint64{}, seen: map[string]map[uint64]bool{}}
}

func (r *received) add(tp string, payload []byte) {
	courier, kind, ok := topic.Parse(topic.DefaultPrefix, tp)
	if !ok || kind != topic.Pos {
		return
	}
	fixes, err := wire.DecodeBatch(payload)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.bad = append(r.bad, err)
		return
	}
	if r.seen[courier] == nil {
		r.seen[courier] = map[uint64]bool{}
	}
	for _, f := range fixes {
		if r.seen[courier][f.Seq] {
			r.dups++
			continue
		}
		r.seen[courier][f.Seq] = true
		r.order[courier] = append(r.order[courier], f.Seq)
	}
}

// complete waits until courier's seqs first..last all arrived.
func (r *received) complete(courier string, first, last uint64, within time.Duration) bool {
	for deadline := time.Now().Add(within); ; time.Sleep(50 * time.Millisecond) {
		r.mu.Lock()
		n := len(r.seen[courier])
		r.mu.Unlock()
		if uint64(n) >= last-first+1 {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// check waits until courier's seqs first..last all arrived, then checks the
// deduplicated arrival order.
func (r *received) check(tb testing.TB, courier string, first, last uint64, within time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(within)
	for {
		r.mu.Lock()
		n := len(r.seen[courier])
		r.mu.Unlock()
		if uint64(n) >= last-first+1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.bad) > 0 {
		tb.Errorf("undecodable payloads: %v", r.bad)
	}
	var missing []uint64
	for s := first; s <= last; s++ {
		if !r.seen[courier][s] {
			missing = append(missing, s)
		}
	}
	if len(missing) > 0 {
		tb.Fatalf("%d of %d sequence numbers never arrived, e.g. %v", len(missing), last-first+1, missing[:min(10, len(missing))])
	}
	got := r.order[courier]
	if !sort.SliceIsSorted(got, func(i, j int) bool { return got[i] < got[j] }) {
		tb.Fatalf("deduplicated arrival order is not increasing: %v", got)
	}
	tb.Logf("courier %s: seqs %d..%d all received in order; %d duplicates dropped", courier, first, last, r.dups)
}

// restartablePort is a loopback listener for a broker that this test stops
// and starts again on the same address. Its port is drawn below the
// kernel's ephemeral range (32768-60999 here), so no port-0 listener of
// another test can take it while the broker is down.
func restartablePort(tb testing.TB) net.Listener {
	tb.Helper()
	for i := 0; i < 50; i++ {
		if ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", 20000+rand.IntN(12000))); err == nil {
			return ln
		}
	}
	tb.Fatal("no free port below the ephemeral range")
	return nil
}

// relisten opens addr again after its broker stopped.
func relisten(tb testing.TB, addr string) net.Listener {
	tb.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		tb.Fatalf("listen again on %s: %v", addr, err)
	}
	return ln
}

// startMochi starts an embedded broker that also hands every pos message
// to rec through an inline subscription registered before any client can
// connect, so that no message is missed across restarts.
func startMochi(tb testing.TB, ln net.Listener, rec *received) *mochi.Server {
	tb.Helper()
	s := mochi.New(&mochi.Options{InlineClient: true, Logger: slog.New(slog.DiscardHandler)})
	if err := s.AddHook(new(auth.AllowHook), nil); err != nil {
		tb.Fatal(err)
	}
	if err := s.AddListener(listeners.NewNet("t", ln)); err != nil {
		tb.Fatal(err)
	}
	for _, f := range []string{topic.Filter(topic.DefaultPrefix, topic.Pos), topic.CompactFilter(topic.DefaultPrefix)} {
		err := s.Subscribe(f, 1, func(_ *mochi.Client, _ packets.Subscription, pk packets.Packet) {
			rec.add(pk.TopicName, pk.Payload)
		})
		if err != nil {
			tb.Fatal(err)
		}
	}
	if err := s.Serve(); err != nil {
		tb.Fatal(err)
	}
	return s
}

// TestEmbeddedBrokerRestart replays the ride through an in-process agent
// while the embedded broker is stopped and started again.
func TestEmbeddedBrokerRestart(t *testing.T) {
	ln := restartablePort(t)
	addr := ln.Addr().String()
	rec := newReceived()
	broker := startMochi(t, ln, rec)
	dir := t.TempDir()
	a, err := New(Config{Broker: "tcp://" + addr, Courier: "c-mochi", Username: "c-mochi",
		Source: "gpx:" + ride + "?speed=60", OutboxDir: dir, StatusAddr: "127.0.0.1:0", ExitWhenDrained: true,
		ProfilePath: filepath.Join("..", "..", "..", "firmware-configs", "rugged-android-handheld.yaml")})
	if err != nil {
		t.Fatal(err)
	}
	statusAddr := a.StatusAddr()
	done := make(chan error, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	go func() { done <- a.Run(ctx) }()

	time.Sleep(3 * time.Second)
	broker.Close()
	time.Sleep(2 * time.Second) // the ride goes on into the outbox
	broker = startMochi(t, relisten(t, addr), rec)
	defer broker.Close()

	if err := <-done; err != nil {
		t.Fatalf("agent: %v", err)
	}
	if statusAddr == "" {
		t.Fatal("status endpoint not bound")
	}
	st := a.Status()
	if st.Fixes.Accepted == 0 || st.LastSeq != st.Fixes.Accepted || st.OutboxDepth != 0 {
		t.Fatalf("status after drain: %+v", st)
	}
	if st.Fixes.Acknowledged < st.Fixes.Accepted {
		t.Fatalf("acknowledged %d < accepted %d", st.Fixes.Acknowledged, st.Fixes.Accepted)
	}
	if n := a.link.Stats().Connects; n < 2 {
		t.Fatalf("%d connections: the broker restart was not exercised", n)
	}
	rec.check(t, "c-mochi", 1, st.LastSeq, 5*time.Second)
}

// mosquitto runs a Mosquitto broker with persistence in dir.
type mosquitto struct {
	tb     testing.TB
	bin    string
	port   int
	dir    string
	cmd    *exec.Cmd
	exited chan struct{}
}

// start runs Mosquitto on m.port. Mosquitto binds its own listener (it
// cannot be handed one), so the port is drawn below the kernel's ephemeral
// range, where no port-0 listener can land; on a first start that finds the
// port taken anyway, another is drawn.
func (m *mosquitto) start() {
	m.tb.Helper()
	first := m.port == 0
	for try := 0; ; try++ {
		if first {
			m.port = 20000 + rand.IntN(12000)
		}
		if m.tryStart() {
			return
		}
		if !first || try == 4 {
			m.tb.Fatalf("mosquitto cannot bind 127.0.0.1:%d", m.port)
		}
	}
}

func (m *mosquitto) tryStart() bool {
	m.tb.Helper()
	conf := filepath.Join(m.dir, "mosquitto.conf")
	logFile := filepath.Join(m.dir, "mosquitto.log")
	_ = os.Remove(logFile)
	body := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location %s/\nmax_queued_messages 100000\nlog_dest file %s\nlog_type all\n", m.port, m.dir, logFile)
	if os.Geteuid() == 0 {
		// Started as root, Mosquitto drops to the "mosquitto" user, which cannot
		// write the test's directory: no persistence file, no log, and queued
		// messages lost across the restart this test makes.
		body = "user root\n" + body
	}
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		m.tb.Fatal(err)
	}
	m.cmd = exec.Command(m.bin, "-c", conf)
	var out safeBuffer
	m.cmd.Stdout, m.cmd.Stderr = &out, &out
	if err := m.cmd.Start(); err != nil {
		m.tb.Fatal(err)
	}
	exited := make(chan struct{})
	m.exited = exited
	go func() { _ = m.cmd.Wait(); close(exited) }()
	for i := 0; i < 100; i++ {
		select {
		case <-exited:
			m.cmd = nil
			logs, _ := os.ReadFile(logFile)
			msg := out.String() + string(logs)
			if strings.Contains(msg, "Address already in use") {
				m.tb.Logf("port %d taken: %s", m.port, msg)
				return false
			}
			m.tb.Fatalf("mosquitto exited:\n%s", msg)
		default:
		}
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", m.port))
		if err == nil {
			c.Close()
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	m.tb.Fatal("mosquitto did not start listening")
	return false
}

func (m *mosquitto) stop() {
	if m.cmd == nil || m.cmd.Process == nil {
		return
	}
	m.cmd.Process.Signal(syscall.SIGTERM) // saves the persistence file
	<-m.exited
	m.cmd = nil
}

// subscribe connects a persistent-session QoS1 subscriber that survives
// broker restarts (Mosquitto keeps its queue in the persistence file).
func subscribe(tb testing.TB, broker string, rec *received) mqtt.Client {
	tb.Helper()
	opts := mqtt.NewClientOptions().AddBroker(broker).SetClientID("e2e-subscriber").SetCleanSession(false).
		SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(50 * time.Millisecond).
		SetMaxReconnectInterval(200 * time.Millisecond).SetOrderMatters(true).
		SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) { rec.add(m.Topic(), m.Payload()) })
	posFilters := map[string]byte{topic.Filter(topic.DefaultPrefix, topic.Pos): 1, topic.CompactFilter(topic.DefaultPrefix): 1}
	opts.SetOnConnectHandler(func(c mqtt.Client) {
		c.SubscribeMultiple(posFilters, nil)
	})
	c := mqtt.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		tb.Fatalf("subscriber connect: %v", tok.Error())
	}
	// Wait for the subscription to be in place.
	tok := c.SubscribeMultiple(posFilters, nil)
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		tb.Fatalf("subscribe: %v", tok.Error())
	}
	return c
}

// buildAgent compiles the agent binary into a temporary directory.
func buildAgent(tb testing.TB) string {
	tb.Helper()
	bin := filepath.Join(tb.TempDir(), "agent")
	cmd := exec.Command("go", "build", "-o", bin, "../../cmd/agent")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestMosquittoKillAndRestart kills the agent process with SIGKILL mid-ride
// and restarts it on the same outbox, then stops and restarts Mosquitto;
// every accepted sequence number must reach the subscriber.
func TestMosquittoKillAndRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the agent and runs a broker")
	}
	mbin, err := exec.LookPath("mosquitto")
	if err != nil {
		if _, err = os.Stat("/usr/sbin/mosquitto"); err != nil {
			missingServer(t, "mosquitto not installed (apt-get install -y mosquitto): the Mosquitto scenario cannot run")
		}
		mbin = "/usr/sbin/mosquitto"
	}
	bin := buildAgent(t)
	m := &mosquitto{tb: t, bin: mbin, dir: t.TempDir()}
	m.start()
	defer m.stop()
	broker := fmt.Sprintf("tcp://127.0.0.1:%d", m.port)
	rec := newReceived()
	sub := subscribe(t, broker, rec)
	defer sub.Disconnect(100)

	outboxDir := t.TempDir()
	agentCmd := func() *exec.Cmd {
		cmd := exec.Command(bin, "run", "--broker", broker, "--courier", "c-kill", "--username", "c-kill",
			"--source", "gpx:"+ride+"?speed=120", "--outbox", outboxDir, "--status-addr", "",
			"--profile", filepath.Join("..", "..", "..", "firmware-configs", "lowend-android-phone.yaml"), "--exit-when-drained",
			"--storage-ack=false") // no backend here: the broker's PUBACK is the end of the line
		cmd.Env = append(os.Environ(), "TAWSIL_AGENT_PASSWORD=unused")
		return cmd
	}
	first := agentCmd()
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	first.Wait()

	second := agentCmd()
	var stderr safeBuffer
	second.Stderr = &stderr
	if err := second.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	m.stop()
	time.Sleep(1500 * time.Millisecond)
	m.start()

	waitErr := make(chan error, 1)
	go func() { waitErr <- second.Wait() }()
	select {
	case err := <-waitErr:
		if err != nil {
			t.Fatalf("restarted agent: %v\n%s", err, stderr.String())
		}
	case <-time.After(45 * time.Second):
		second.Process.Kill()
		t.Fatalf("restarted agent did not drain and exit\n%s", stderr.String())
	}
	box, err := outbox.Open(outboxDir, 100000, nil)
	if err != nil {
		t.Fatal(err)
	}
	last, depth := box.LastSeq(), box.Depth()
	box.Close()
	if depth != 0 || last < 20 {
		t.Fatalf("outbox after exit: last seq %d, depth %d", last, depth)
	}
	if !rec.complete("c-kill", 1, last, 10*time.Second) {
		// Say where the loss happened: the agent got a PUBACK for every fix
		// (its outbox is empty), so print both sides' logs.
		mlog, _ := os.ReadFile(filepath.Join(m.dir, "mosquitto.log"))
		t.Logf("agent log:\n%s\nmosquitto log (tail):\n%s", stderr.String(), tail(mlog, 8000))
	}
	rec.check(t, "c-kill", 1, last, 0)
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

type safeBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *safeBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	return len(p), nil
}

func (b *safeBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

// missingServer fails the test in CI (env CI set), where a missing server
// is a broken machine, and skips it with msg elsewhere.
func missingServer(tb testing.TB, msg string) {
	tb.Helper()
	if os.Getenv("CI") != "" {
		tb.Fatal(msg + " (CI is set: a missing server fails the test)")
	}
	tb.Skip(msg)
}
