package e2e

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/tawsil/tawsil/backend/internal/config"
	"github.com/tawsil/tawsil/backend/internal/tlsconf/certtest"
	"github.com/tawsil/tawsil/shared/topic"
)

// The deployment files under test, relative to this package.
const (
	deployConf = "../../../deploy/mosquitto/mosquitto.conf"
	deployACL  = "../../../deploy/mosquitto/acl"
)

const backendUser = "tawsil-backend"

// mosquittoBroker is a real Mosquitto running deploy/mosquitto/mosquitto.conf
// with its listeners moved to free loopback ports and its paths into a temp
// dir; the ACL file is deploy/mosquitto/acl itself.
type mosquittoBroker struct {
	tb                testing.TB
	bin, passwd       string
	dir               string
	devAddr, tlsAddr  string // device listeners (plain, TLS)
	svcAddr           string // backend listener
	backendPassword   string
	ca                *certtest.CA
	certFile, keyFile string
	cmd               *exec.Cmd
	exited            chan struct{} // closed when cmd has been waited for
	log               *logSink
}

// mustMosquitto prepares (but does not start) a broker, or skips the test if
// Mosquitto is not installed.
func mustMosquitto(tb testing.TB) *mosquittoBroker {
	tb.Helper()
	bin := lookBin("mosquitto", "/usr/sbin/mosquitto")
	passwd := lookBin("mosquitto_passwd", "/usr/bin/mosquitto_passwd")
	if bin == "" || passwd == "" {
		missingServer(tb, "mosquitto not installed (apt-get install -y mosquitto mosquitto-clients): the external-broker tests cannot run")
	}
	m := &mosquittoBroker{tb: tb, bin: bin, passwd: passwd, dir: tb.TempDir(), backendPassword: "backend-secret-e2e-0123",
		ca: certtest.NewCA(tb), log: &logSink{}}
	m.certFile, m.keyFile = m.ca.Files(tb, m.dir, "server", "127.0.0.1")
	m.run(m.passwd, "-b", "-c", m.path("backend.passwd"), backendUser, m.backendPassword)
	certtest.WriteFile(tb, m.path("devices.passwd"), nil) // devices are added as the backend issues credentials
	m.pickPorts()
	tb.Cleanup(m.stop)
	return m
}

// pickPorts chooses the broker's ports and writes its configuration.
// Mosquitto binds its own ports (it cannot be handed a listener), so they
// are drawn at random below the kernel's ephemeral range, where no port-0
// listener of another test can land; start retries on a collision.
func (m *mosquittoBroker) pickPorts() {
	base := 20000 + rand.IntN(12000/3)*3
	m.devAddr, m.tlsAddr, m.svcAddr = fmt.Sprintf("127.0.0.1:%d", base), fmt.Sprintf("127.0.0.1:%d", base+1), fmt.Sprintf("127.0.0.1:%d", base+2)
	certtest.WriteFile(m.tb, m.path("mosquitto.conf"), []byte(m.rewriteConf(m.certFile, m.keyFile)))
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

func lookBin(name, fallback string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if _, err := os.Stat(fallback); err == nil {
		return fallback
	}
	return ""
}

func (m *mosquittoBroker) path(name string) string { return filepath.Join(m.dir, name) }

func (m *mosquittoBroker) run(name string, args ...string) {
	m.tb.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		m.tb.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// rewriteConf maps the deployment file onto this test: every listener and
// every absolute path must be known here, so the test breaks (rather than
// silently testing something else) when the deployment file grows.
func (m *mosquittoBroker) rewriteConf(certFile, keyFile string) string {
	m.tb.Helper()
	raw, err := os.ReadFile(deployConf)
	if err != nil {
		m.tb.Fatalf("read deployment config: %v", err)
	}
	acl, err := filepath.Abs(deployACL)
	if err != nil {
		m.tb.Fatal(err)
	}
	listeners := map[string]string{"1883": m.devAddr, "8883": m.tlsAddr, "1884": m.svcAddr}
	paths := map[string]string{
		"/etc/mosquitto/devices.passwd":   m.path("devices.passwd"),
		"/etc/mosquitto/backend.passwd":   m.path("backend.passwd"),
		"/etc/mosquitto/acl":              acl,
		"/etc/mosquitto/certs/server.crt": certFile,
		"/etc/mosquitto/certs/server.key": keyFile,
		"/var/lib/mosquitto/":             m.dir + "/",
	}
	var out strings.Builder
	if os.Geteuid() == 0 {
		// As root Mosquitto would switch to the "mosquitto" user, which cannot
		// read the test's private temp dir.
		out.WriteString("user root\n")
	}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	seen := map[string]bool{}
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		switch {
		case len(fields) == 0 || strings.HasPrefix(fields[0], "#"):
		case fields[0] == "listener":
			addr, ok := listeners[fields[1]]
			if !ok {
				m.tb.Fatalf("deployment config has a listener this test does not know: %q", line)
			}
			host, port, _ := net.SplitHostPort(addr)
			line = "listener " + port + " " + host
			seen[fields[1]] = true
		case len(fields) == 2 && strings.HasPrefix(fields[1], "/"):
			p, ok := paths[fields[1]]
			if !ok {
				m.tb.Fatalf("deployment config has a path this test does not know: %q", line)
			}
			line = fields[0] + " " + p
		}
		out.WriteString(line + "\n")
	}
	if len(seen) != len(listeners) {
		m.tb.Fatalf("deployment config lacks listeners: have %v, want %v", seen, listeners)
	}
	// Connection and denial lines help when a test fails.
	out.WriteString("log_type information\n")
	return out.String()
}

// start runs the broker and waits until every listener accepts connections;
// ports another process holds are exchanged for new ones.
func (m *mosquittoBroker) start() {
	m.tb.Helper()
	for try := 0; ; try++ {
		if m.tryStart() || try == 4 {
			return
		}
		m.pickPorts()
	}
}

func (m *mosquittoBroker) tryStart() bool {
	m.tb.Helper()
	m.log.reset()
	m.cmd = exec.Command(m.bin, "-c", m.path("mosquitto.conf"))
	m.cmd.Stdout, m.cmd.Stderr = m.log, m.log
	if err := m.cmd.Start(); err != nil {
		m.tb.Fatalf("start mosquitto: %v", err)
	}
	exited := make(chan struct{})
	m.exited = exited
	go func() { _ = m.cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(10 * time.Second)
	for _, addr := range []string{m.devAddr, m.tlsAddr, m.svcAddr} {
		for {
			select {
			case <-exited:
				m.cmd = nil
				if strings.Contains(m.log.String(), "Address already in use") {
					m.tb.Logf("mosquitto ports taken, trying others:\n%s", m.log.String())
					return false
				}
				m.tb.Fatalf("mosquitto exited:\n%s", m.log.String())
			default:
			}
			if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
				_ = c.Close()
				break
			}
			if time.Now().After(deadline) {
				m.tb.Fatalf("mosquitto not listening on %s:\n%s", addr, m.log.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return true
}

func (m *mosquittoBroker) stop() {
	if m.cmd == nil || m.cmd.Process == nil {
		return
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.exited:
	case <-time.After(5 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.exited
	}
	m.cmd = nil
}

// addDevice provisions a device login the way an operator does: add it to
// the password file with mosquitto_passwd and make Mosquitto reload (SIGHUP).
// It returns once the login is accepted.
func (m *mosquittoBroker) addDevice(user, password string) {
	m.tb.Helper()
	m.run(m.passwd, "-b", m.path("devices.passwd"), user, password)
	if err := m.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		m.tb.Fatal(err)
	}
	eventually(m.tb, "device login accepted after reload", 10*time.Second, func() bool {
		c, err := dial(m.tb, "tcp://"+m.devAddr, "probe-"+user, user, password, nil)
		if err != nil {
			return false
		}
		c.Disconnect(0)
		return true
	})
}

// dial connects a paho client (no automatic reconnect), or returns the error.
func dial(tb testing.TB, url, clientID, user, pass string, tune func(*paho.ClientOptions)) (paho.Client, error) {
	tb.Helper()
	o := paho.NewClientOptions().AddBroker(url).SetClientID(clientID).SetUsername(user).SetPassword(pass).
		SetAutoReconnect(false).SetConnectTimeout(5 * time.Second).SetOrderMatters(false)
	if tune != nil {
		tune(o)
	}
	c := paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return nil, fmt.Errorf("connect %s: timeout", url)
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	tb.Cleanup(func() { c.Disconnect(100) })
	return c, nil
}

func mustDial(tb testing.TB, url, clientID, user, pass string, tune func(*paho.ClientOptions)) paho.Client {
	tb.Helper()
	c, err := dial(tb, url, clientID, user, pass, tune)
	if err != nil {
		tb.Fatalf("connect %s as %s: %v", url, user, err)
	}
	return c
}

// inbox records the messages a subscription receives.
type inbox struct {
	mu   sync.Mutex
	msgs []string // "topic payload"
}

func (in *inbox) handle(_ paho.Client, m paho.Message) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.msgs = append(in.msgs, m.Topic()+" "+string(m.Payload()))
}

func (in *inbox) all() []string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]string(nil), in.msgs...)
}

func (in *inbox) has(msg string) bool {
	for _, m := range in.all() {
		if m == msg {
			return true
		}
	}
	return false
}

func mustSubscribe(tb testing.TB, c paho.Client, filter string, in *inbox) {
	tb.Helper()
	tok := c.Subscribe(filter, 1, in.handle)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		tb.Fatalf("subscribe %s: %v", filter, tok.Error())
	}
}

// TestMosquittoDeviceACL runs the embedded broker's device checks against a
// real Mosquitto loaded with deploy/mosquitto/mosquitto.conf and acl.
func TestMosquittoDeviceACL(t *testing.T) {
	mb := mustMosquitto(t)
	mb.start()
	const a, b = "courier-a", "courier-b"
	mb.addDevice(a, "password-a-0123")
	mb.addDevice(b, "password-b-0123")
	dev := "tcp://" + mb.devAddr
	prefix := topic.DefaultPrefix

	// The backend's view: everything a device manages to publish.
	seen := &inbox{}
	svc := mustDial(t, "tcp://"+mb.svcAddr, "acl-observer", backendUser, mb.backendPassword, nil)
	mustSubscribe(t, svc, topic.Shared("tawsil-backend", topic.Filter(prefix, topic.Pos)), seen)
	mustSubscribe(t, svc, topic.Filter(prefix, topic.State), seen)
	mustSubscribe(t, svc, topic.Filter(prefix, topic.OwnTracks), seen)

	// Logins: wrong password refused; device logins do not exist on the
	// backend listener; the backend login does not exist on device listeners.
	if _, err := dial(t, dev, "dev-"+a, a, "wrong", nil); err == nil {
		t.Fatal("wrong password accepted")
	}
	if _, err := dial(t, "tcp://"+mb.svcAddr, "dev-"+a, a, "password-a-0123", nil); err == nil {
		t.Fatal("device login accepted on the backend listener")
	}
	if _, err := dial(t, dev, "x", backendUser, mb.backendPassword, nil); err == nil {
		t.Fatal("backend login accepted on the device listener")
	}

	ca := mustDial(t, dev, "dev-"+a, a, "password-a-0123", nil)
	cb := mustDial(t, dev, "dev-"+b, b, "password-b-0123", nil)
	aGot, bGot := &inbox{}, &inbox{}
	// Mosquitto's acl_file grants every SUBACK and filters at delivery, so
	// these succeed at the protocol level; what matters is what arrives.
	mustSubscribe(t, ca, "#", aGot)
	mustSubscribe(t, ca, topic.Courier(prefix, b, topic.Tasks), aGot)
	mustSubscribe(t, ca, topic.Courier(prefix, a, topic.Tasks), aGot)
	mustSubscribe(t, cb, topic.Courier(prefix, b, topic.Tasks), bGot)

	// Publishing: own pos, state and OwnTracks pass; B's topics and A's own
	// read-only topics never reach anyone. A client's publishes are handled
	// in order, so once the final own-topic sentinel is seen, nothing sent
	// before it can still arrive.
	tests := []struct {
		give string
		want bool
	}{
		{give: topic.Courier(prefix, a, topic.Pos), want: true},
		{give: topic.Courier(prefix, b, topic.Pos)},
		{give: topic.Courier(prefix, b, topic.State)},
		{give: topic.Courier(prefix, a, topic.State), want: true},
		{give: topic.Courier(prefix, a, topic.Tasks)},
		{give: topic.Courier(prefix, b, topic.Tasks)},
		{give: topic.Courier(prefix, a, topic.Config)},
		{give: topic.OwnTracksTopic(a, "phone"), want: true},
		{give: topic.OwnTracksTopic(b, "phone")},
		{give: "tawsil/v1/other/" + a},
	}
	for i, tt := range tests {
		mustPublish(t, ca, tt.give, []byte(fmt.Sprint("m", i)), false)
	}
	sentinel := topic.Courier(prefix, a, topic.Pos) + " sentinel"
	mustPublish(t, ca, topic.Courier(prefix, a, topic.Pos), []byte("sentinel"), false)
	eventually(t, "own sentinel delivered", 10*time.Second, func() bool { return seen.has(sentinel) })
	for i, tt := range tests {
		msg := fmt.Sprint(tt.give, " m", i)
		if got := seen.has(msg) || aGot.has(msg) || bGot.has(msg); got != tt.want {
			t.Errorf("publish by %s to %s delivered = %v, want %v", a, tt.give, got, tt.want)
		}
	}

	// Tasks: the backend writes to both couriers; each receives only its own,
	// whatever it subscribed to.
	mustPublish(t, svc, topic.Courier(prefix, b, topic.Tasks), []byte("task-b"), false)
	mustPublish(t, svc, topic.Courier(prefix, a, topic.Tasks), []byte("task-a"), false)
	eventually(t, "A's task delivered", 10*time.Second, func() bool { return aGot.has(topic.Courier(prefix, a, topic.Tasks) + " task-a") })
	eventually(t, "B's task delivered", 10*time.Second, func() bool { return bGot.has(topic.Courier(prefix, b, topic.Tasks) + " task-b") })
	// (Overlapping subscriptions, "#" and its own tasks, may each deliver a copy.)
	for _, got := range aGot.all() {
		if got != topic.Courier(prefix, a, topic.Tasks)+" task-a" {
			t.Fatalf("device A received %q, want only its own task", got)
		}
	}
	// Storage acknowledgements: the backend may write them, a device reads only its own.
	mustSubscribe(t, ca, topic.Courier(prefix, a, topic.Ack), aGot)
	mustPublish(t, svc, topic.Courier(prefix, b, topic.Ack), []byte("ack-b"), false)
	mustPublish(t, svc, topic.Courier(prefix, a, topic.Ack), []byte("ack-a"), false)
	eventually(t, "A's storage ack delivered", 10*time.Second, func() bool { return aGot.has(topic.Courier(prefix, a, topic.Ack) + " ack-a") })
	if aGot.has(topic.Courier(prefix, b, topic.Ack) + " ack-b") {
		t.Fatal("device A received B's storage acknowledgement")
	}

	// Session takeover: A presenting B's client id gets its own session
	// (the client id is replaced by A's username); B stays connected and
	// keeps receiving its tasks.
	mustDial(t, dev, "dev-"+b, a, "password-a-0123", nil)
	mustPublish(t, svc, topic.Courier(prefix, b, topic.Tasks), []byte("task-b2"), false)
	eventually(t, "B's task after the attempt", 10*time.Second, func() bool { return bGot.has(topic.Courier(prefix, b, topic.Tasks) + " task-b2") })
	if !cb.IsConnectionOpen() {
		t.Fatal("device B was disconnected by A using B's client id")
	}
	// The price of username-as-client-id: A's own earlier connection was
	// taken over (one session per courier).
	eventually(t, "A's first connection taken over", 10*time.Second, func() bool { return !ca.IsConnectionOpen() })

	// Last Will: Mosquitto 2.0 accepts a Will on a foreign topic at CONNECT
	// but checks it when publishing it; only a Will on the device's own
	// state topic is delivered. Both connections are A's (same session, so
	// handled one after the other): once the second Will arrives, the first
	// has been decided.
	foreign := rawConnectWithWill(t, mb.devAddr, a, "password-a-0123", topic.Courier(prefix, b, topic.State), "forged-will")
	_ = foreign.Close() // dropped without DISCONNECT: the Will fires
	own := rawConnectWithWill(t, mb.devAddr, a, "password-a-0123", topic.Courier(prefix, a, topic.State), "own-will")
	_ = own.Close()
	eventually(t, "own will delivered", 10*time.Second, func() bool { return seen.has(topic.Courier(prefix, a, topic.State) + " own-will") })
	if seen.has(topic.Courier(prefix, b, topic.State) + " forged-will") {
		t.Fatal("a device's Will was published on another courier's state topic")
	}

	// The TLS device listener: trusted with the CA, same ACL.
	tlsOpt := func(o *paho.ClientOptions) {
		o.SetTLSConfig(&tls.Config{RootCAs: mb.ca.Pool(), MinVersion: tls.VersionTLS12})
	}
	ct := mustDial(t, "tls://"+mb.tlsAddr, "dev-"+b, b, "password-b-0123", tlsOpt)
	mustPublish(t, ct, topic.Courier(prefix, a, topic.Pos), []byte("tls-forged"), false)
	mustPublish(t, ct, topic.Courier(prefix, b, topic.Pos), []byte("over-tls"), false)
	eventually(t, "fix over TLS", 10*time.Second, func() bool { return seen.has(topic.Courier(prefix, b, topic.Pos) + " over-tls") })
	if seen.has(topic.Courier(prefix, a, topic.Pos) + " tls-forged") {
		t.Fatal("ACL not applied on the TLS listener")
	}
}

// rawConnectWithWill opens an MQTT 3.1.1 connection carrying a Last Will
// (QoS 1, not retained) and returns the socket once CONNACK accepted it, so
// that closing it drops the client without DISCONNECT (paho offers no way).
func rawConnectWithWill(tb testing.TB, addr, user, pass, willTopic, willMsg string) net.Conn {
	tb.Helper()
	str := func(s string) []byte {
		b := binary.BigEndian.AppendUint16(nil, uint16(len(s)))
		return append(b, s...)
	}
	var body []byte
	body = append(body, str("MQTT")...)
	body = append(body, 4)                   // protocol level 3.1.1
	body = append(body, 0xC0|0x08|0x04|0x02) // username, password, will QoS1, will flag, clean session
	body = binary.BigEndian.AppendUint16(body, 60)
	body = append(body, str("raw-"+user)...)
	body = append(body, str(willTopic)...)
	body = append(body, str(willMsg)...)
	body = append(body, str(user)...)
	body = append(body, str(pass)...)
	pkt := []byte{0x10}
	for n := len(body); ; {
		d := byte(n % 128)
		if n /= 128; n > 0 {
			d |= 0x80
		}
		pkt = append(pkt, d)
		if n == 0 {
			break
		}
	}
	pkt = append(pkt, body...)
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(pkt); err != nil {
		tb.Fatal(err)
	}
	ack := make([]byte, 4)
	if _, err := c.Read(ack); err != nil {
		tb.Fatalf("read CONNACK: %v", err)
	}
	if ack[0] != 0x20 || ack[3] != 0 {
		tb.Fatalf("CONNACK %x: connection with a will on %s refused", ack, willTopic)
	}
	return c
}

// e2eEnv is the environment mustBackend uses, minus the broker settings.
func e2eEnv(tb testing.TB) map[string]string {
	return map[string]string{
		"TAWSIL_JWT_SECRET":     "e2e-secret-0123456789abcdef0123456789",
		"TAWSIL_ADMIN_EMAIL":    adminEmail,
		"TAWSIL_ADMIN_PASSWORD": adminPass,
		"TAWSIL_DATA_DIR":       tb.TempDir(),
		"TAWSIL_LOG_LEVEL":      "debug",
		"TAWSIL_DISPATCH_EVERY": "200ms",
	}
}

// backendConfig is the e2e configuration for a backend using mb as its
// external broker.
func backendConfig(tb testing.TB, mb *mosquittoBroker, clientID string) config.Config {
	tb.Helper()
	env := e2eEnv(tb)
	env["MQTT_URL"] = "tcp://" + mb.svcAddr
	env["TAWSIL_MQTT_USERNAME"] = backendUser
	env["TAWSIL_MQTT_PASSWORD"] = mb.backendPassword
	env["TAWSIL_MQTT_CLIENT_ID"] = clientID
	cfg, err := config.Load(func(k string) string { return env[k] })
	if err != nil {
		tb.Fatal(err)
	}
	return cfg
}

// TestMosquittoBackendIngest runs the backend against Mosquitto: a device's
// batch is stored once and indexed, and a backend restart loses nothing the
// device published while the backend was down (persistent session behind a
// shared subscription).
func TestMosquittoBackendIngest(t *testing.T) {
	mb := mustMosquitto(t)
	mb.start()
	cfg := backendConfig(t, mb, "tawsil-backend-e2e-1")
	b, stopBackend := startBackend(t, cfg)
	eventually(t, "backend ready", 15*time.Second, func() bool { return b.do(t, "GET", "/readyz", "", nil).status == 200 })

	admin, _ := b.login(t, adminEmail, adminPass)
	courier := b.mustUser(t, admin, "courier")
	dev := b.mustDevice(t, admin, courier.CourierID)
	mb.addDevice(dev.Username, dev.Password)
	b.mustStatus(t, 200, "POST", "/v1/me/shift", courier.Token, map[string]any{"on_duty": true})

	prefix := topic.DefaultPrefix
	pos := topic.Courier(prefix, courier.CourierID, topic.Pos)
	tasks := &inbox{}
	c := mustDial(t, "tcp://"+mb.devAddr, dev.ClientID, dev.Username, dev.Password, func(o *paho.ClientOptions) {
		o.SetCleanSession(false)
	})
	mustSubscribe(t, c, topic.Courier(prefix, courier.CourierID, topic.Tasks), tasks)

	count := func() int64 {
		n, err := b.Store.CountPositions(t.Context(), courier.CourierID)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	t0 := time.Now().Add(-5 * time.Minute).UTC().Truncate(time.Millisecond)
	mustPublish(t, c, pos, mustEncode(t, fixes(1, 5, t0, 33.57, -7.59)), false)
	eventually(t, "first batch stored", 15*time.Second, func() bool { return count() == 5 })
	// A redelivered, overlapping batch adds only the new fixes.
	mustPublish(t, c, pos, mustEncode(t, fixes(3, 5, t0.Add(10*time.Second), 33.5704, -7.59)), false)
	eventually(t, "overlap stored once", 15*time.Second, func() bool { return count() == 7 })
	if lc, ok := b.Index.Get(courier.CourierID); !ok || lc.Fix.Seq != 7 {
		t.Fatalf("live index: %+v, %v; want seq 7", lc.Fix, ok)
	}
	// The backend's own write path: a task reaches the device through Mosquitto.
	if err := b.Bus.Publish(t.Context(), topic.Courier(prefix, courier.CourierID, topic.Tasks), []byte("hello"), 1, false); err != nil {
		t.Fatal(err)
	}
	eventually(t, "task delivered", 10*time.Second, func() bool {
		return tasks.has(topic.Courier(prefix, courier.CourierID, topic.Tasks) + " hello")
	})

	// Restart: while the backend is down, Mosquitto acknowledges the device
	// and queues the backend's share in its persistent session.
	stopBackend()
	for i := 0; i < 4; i++ {
		from := 20 + 5*i
		mustPublish(t, c, pos, mustEncode(t, fixes(from, 5, t0.Add(time.Duration(from)*5*time.Second), 33.571, -7.59)), false)
	}
	b, _ = startBackend(t, cfg) // same data dir, same client id
	eventually(t, "backlog stored after restart", 20*time.Second, func() bool { return count() == 27 })
	eventually(t, "live index caught up", 10*time.Second, func() bool {
		lc, ok := b.Index.Get(courier.CourierID)
		return ok && lc.Fix.Seq == 39
	})
	// Nothing more arrives: the queue held each message once.
	mustPublish(t, c, pos, mustEncode(t, fixes(50, 1, t0.Add(300*time.Second), 33.572, -7.59)), false)
	eventually(t, "fresh fix after backlog", 15*time.Second, func() bool { return count() == 28 })
	if strings.Contains(b.logs.String(), "not acknowledged") {
		t.Fatalf("backend refused messages:\n%s", b.logs.String())
	}
}

// TestMosquittoSharedOfflineMember records what Mosquitto does with the share
// of a shared-subscription member that is offline with a persistent session:
// the share is queued for it (not given to the online member) and delivered
// when it returns. deploy/README.md's scale-down advice rests on this.
func TestMosquittoSharedOfflineMember(t *testing.T) {
	mb := mustMosquitto(t)
	mb.start()
	mb.addDevice("courier-s", "password-s-0123")
	filter := topic.Shared("tawsil-backend", topic.Filter(topic.DefaultPrefix, topic.Pos))
	member := func(id string, in *inbox) paho.Client {
		c := mustDial(t, "tcp://"+mb.svcAddr, id, backendUser, mb.backendPassword, func(o *paho.ClientOptions) {
			o.SetCleanSession(false).SetDefaultPublishHandler(in.handle)
		})
		mustSubscribe(t, c, filter, in)
		return c
	}
	in1, in2 := &inbox{}, &inbox{}
	member("replica-1", in1)
	m2 := member("replica-2", in2)
	m2.Disconnect(100)

	dev := mustDial(t, "tcp://"+mb.devAddr, "dev-courier-s", "courier-s", "password-s-0123", nil)
	const n = 20
	for i := 0; i < n; i++ {
		mustPublish(t, dev, topic.Courier(topic.DefaultPrefix, "courier-s", topic.Pos), []byte(fmt.Sprint(i)), false)
	}
	mustPublish(t, dev, topic.Courier(topic.DefaultPrefix, "courier-s", topic.State), []byte("flush"), false)
	member("replica-2", in2)
	eventually(t, "every message delivered once", 10*time.Second, func() bool { return len(in1.all())+len(in2.all()) >= n })
	got := map[string]int{}
	for _, m := range append(in1.all(), in2.all()...) {
		got[m]++
	}
	if len(got) != n || len(in1.all())+len(in2.all()) != n {
		t.Fatalf("delivered %d distinct of %d (online member %d, returning member %d)", len(got), n, len(in1.all()), len(in2.all()))
	}
	// Everything replica-2 got was published while it was offline.
	if len(in2.all()) == 0 {
		t.Fatalf("the online member received all %d messages: offline members are skipped", n)
	}
	t.Logf("online member got %d of %d; the offline member's %d were queued and delivered on return", len(in1.all()), n, len(in2.all()))
}
