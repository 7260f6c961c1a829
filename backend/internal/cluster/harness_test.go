// Package cluster tests Tawsil as it is deployed with several replicas:
// real processes (the built backend and docstore binaries), a real Mosquitto
// with per-device logins and the deployment's ACL, and one document store on
// FerretDB/PostgreSQL shared by every replica.
//
// Needs mosquitto and a PostgreSQL database (TAWSIL_TEST_PG_URL, e.g.
// postgres://tawsil_test:tawsil_test@127.0.0.1:5432/tawsil_test; .ci/run
// creates it). Without them the tests skip locally and fail under CI.
//
// The harness is meant to be extended: Cluster.Kill (SIGKILL), Stop
// (SIGTERM), Start (same HTTP port, same MQTT client id) and WaitReady.
package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"

	"github.com/tawsil/tawsil/shared/topic"
	"github.com/tawsil/tawsil/shared/wire"
)

const (
	adminEmail   = "admin@cluster.test"
	adminPass    = "admin-password-cluster"
	jwtSecret    = "cluster-secret-0123456789abcdef0123456789"
	storeUser    = "tawsil"
	storePass    = "store-password-cluster-0123"
	backendUser  = "tawsil-backend"
	backendPass  = "backend-password-cluster-0123"
	deployACL    = "../../../deploy/mosquitto/acl"
	shareGroup   = "tawsil-backend"
	replicasWant = 3
)

// bins holds the binaries, built once per test run by the first cluster.
var bins struct {
	once              sync.Once
	dir               string
	backend, docstore string
	err               error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if bins.dir != "" {
		_ = os.RemoveAll(bins.dir)
	}
	os.Exit(code)
}

func build() error {
	bins.once.Do(func() {
		dir, err := os.MkdirTemp("", "tawsil-cluster-bin-")
		if err != nil {
			bins.err = err
			return
		}
		bins.dir = dir
		bins.backend, bins.docstore = filepath.Join(dir, "backend"), filepath.Join(dir, "docstore")
		for pkg, out := range map[string]string{"../../cmd/backend": bins.backend, "../../cmd/docstore": bins.docstore} {
			if b, err := exec.Command("go", "build", "-o", out, pkg).CombinedOutput(); err != nil {
				bins.err = fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
				return
			}
		}
	})
	return bins.err
}

// need skips (locally) or fails (CI) when a server the cluster tests need is missing.
func need(tb testing.TB, what string, ok bool) {
	tb.Helper()
	if ok {
		return
	}
	if os.Getenv("CI") != "" {
		tb.Fatalf("%s is required under CI (.ci/run installs it)", what)
	}
	tb.Skipf("%s not available: skipping the multi-process tests", what)
}

// Cluster is a running Mosquitto, document store and backend replicas.
type Cluster struct {
	tb       testing.TB
	dir      string
	Mosq     *Process
	mosqSvc  string // unix socket: backend listener
	mosqDev  string // unix socket: device listener
	passwd   string // mosquitto_passwd
	Store    *Process
	storeLn  net.Listener
	StoreURI string
	DB       string
	dropDB   func()
	Replicas []*Replica
	Env      map[string]string // every replica's environment (tests may add to it before Start)
}

// Process is a child process with its log.
type Process struct {
	cmd    *exec.Cmd
	exited chan struct{}
	log    *bytes.Buffer
	mu     *sync.Mutex
}

func (p *Process) running() bool {
	if p == nil || p.cmd == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// Log is what the process wrote so far.
func (p *Process) Log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func startProcess(tb testing.TB, env []string, files []*os.File, name string, args ...string) *Process {
	tb.Helper()
	p := &Process{log: &bytes.Buffer{}, mu: &sync.Mutex{}, exited: make(chan struct{})}
	p.cmd = exec.Command(name, args...)
	p.cmd.Env = env
	p.cmd.ExtraFiles = files
	// Children die with the test process, even when it is killed on a timeout.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p.cmd.Stdout, p.cmd.Stderr = lockedWriter{p.mu, p.log}, lockedWriter{p.mu, p.log}
	if err := p.cmd.Start(); err != nil {
		tb.Fatalf("start %s: %v", name, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.exited) }()
	return p
}

// signal sends sig and waits (up to 20 s, then SIGKILL) for the exit.
func (p *Process) signal(sig syscall.Signal) {
	if !p.running() {
		return
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// Replica is one backend process; its HTTP listener belongs to the test, so
// a restarted replica serves on the same port.
type Replica struct {
	N        int
	ClientID string
	Base     string // http://127.0.0.1:port
	ln       *os.File
	Proc     *Process
	logs     []string // logs of earlier runs
}

// Logs is everything the replica logged over all its runs.
func (r *Replica) Logs() string {
	s := strings.Join(r.logs, "\n")
	if r.Proc != nil {
		s += r.Proc.Log()
	}
	return s
}

// NewCluster starts Mosquitto and the document store and prepares n
// replicas (not started: call StartAll or Start).
func NewCluster(tb testing.TB, n int) *Cluster {
	tb.Helper()
	if testing.Short() {
		tb.Skip("multi-process tests are not short")
	}
	mosq, _ := exec.LookPath("mosquitto")
	if mosq == "" {
		if _, err := os.Stat("/usr/sbin/mosquitto"); err == nil {
			mosq = "/usr/sbin/mosquitto"
		}
	}
	passwd, _ := exec.LookPath("mosquitto_passwd")
	need(tb, "mosquitto (apt-get install mosquitto mosquitto-clients)", mosq != "" && passwd != "")
	pg := os.Getenv("TAWSIL_TEST_PG_URL")
	need(tb, "PostgreSQL (TAWSIL_TEST_PG_URL)", pg != "")
	if err := build(); err != nil {
		tb.Fatal(err)
	}

	// Unix socket paths must stay short (108 bytes): a short temp dir.
	dir, err := os.MkdirTemp("", "tc-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = os.RemoveAll(dir) })
	c := &Cluster{tb: tb, dir: dir, passwd: passwd, mosqSvc: filepath.Join(dir, "svc.sock"), mosqDev: filepath.Join(dir, "dev.sock"),
		DB: fmt.Sprintf("cluster_%d", time.Now().UnixNano())}
	c.startMosquitto(mosq)
	c.startStore(pg)
	c.Env = map[string]string{
		"TAWSIL_JWT_SECRET":            jwtSecret,
		"TAWSIL_ADMIN_EMAIL":           adminEmail,
		"TAWSIL_ADMIN_PASSWORD":        adminPass,
		"MONGODB_URI":                  c.StoreURI,
		"TAWSIL_MONGO_DB":              c.DB,
		"MQTT_URL":                     "unix://" + c.mosqSvc,
		"TAWSIL_MQTT_USERNAME":         backendUser,
		"TAWSIL_MQTT_PASSWORD":         backendPass,
		"TAWSIL_MQTT_SHARE_GROUP":      shareGroup,
		"TAWSIL_HTTP_LISTEN_FD":        "3",
		"TAWSIL_LOG_LEVEL":             "info",
		"TAWSIL_DISPATCH_EVERY":        "200ms",
		"TAWSIL_WEBHOOK_ALLOW_PRIVATE": "true",
	}
	for i := 1; i <= n; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		f, err := ln.(*net.TCPListener).File()
		if err != nil {
			tb.Fatal(err)
		}
		r := &Replica{N: i, ClientID: fmt.Sprintf("tawsil-backend-%d", i), Base: "http://" + ln.Addr().String(), ln: f}
		_ = ln.Close() // f keeps the socket listening
		c.Replicas = append(c.Replicas, r)
	}
	tb.Cleanup(c.stopAll)
	return c
}

func (c *Cluster) path(name string) string { return filepath.Join(c.dir, name) }

func (c *Cluster) run(name string, args ...string) {
	c.tb.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		c.tb.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// startMosquitto runs Mosquitto as deploy/mosquitto does (per-listener
// logins, the deployment's ACL file as is, persistence, the backend's large
// in-flight window), on two Unix sockets: devices and backend.
func (c *Cluster) startMosquitto(bin string) {
	c.tb.Helper()
	acl, err := filepath.Abs(deployACL)
	if err != nil {
		c.tb.Fatal(err)
	}
	c.run(c.passwd, "-b", "-c", c.path("backend.passwd"), backendUser, backendPass)
	if err := os.WriteFile(c.path("devices.passwd"), nil, 0o600); err != nil {
		c.tb.Fatal(err)
	}
	conf := fmt.Sprintf(`per_listener_settings true
persistence true
persistence_location %[1]s/
max_inflight_messages 1000
max_queued_messages 200000
message_size_limit 65536
log_dest stdout
log_type error
log_type warning
log_type notice
listener 0 %[2]s
allow_anonymous false
use_username_as_clientid true
password_file %[1]s/devices.passwd
acl_file %[4]s
listener 0 %[3]s
allow_anonymous false
password_file %[1]s/backend.passwd
acl_file %[4]s
`, c.dir, c.mosqDev, c.mosqSvc, acl)
	if os.Geteuid() == 0 {
		conf = "user root\n" + conf // else Mosquitto drops to the mosquitto user and cannot write here
	}
	if err := os.WriteFile(c.path("mosquitto.conf"), []byte(conf), 0o600); err != nil {
		c.tb.Fatal(err)
	}
	c.Mosq = startProcess(c.tb, os.Environ(), nil, bin, "-c", c.path("mosquitto.conf"))
	eventually(c.tb, "mosquitto listening", 10*time.Second, func() bool {
		if !c.Mosq.running() {
			c.tb.Fatalf("mosquitto exited:\n%s", c.Mosq.Log())
		}
		for _, s := range []string{c.mosqDev, c.mosqSvc} {
			conn, err := net.Dial("unix", s)
			if err != nil {
				return false
			}
			_ = conn.Close()
		}
		return true
	})
}

// startStore runs the docstore binary on FerretDB/PostgreSQL, on a listener
// this test opened (handed over as fd 3).
func (c *Cluster) startStore(pg string) {
	c.tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.tb.Fatal(err)
	}
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		c.tb.Fatal(err)
	}
	c.storeLn = ln
	c.StoreURI = fmt.Sprintf("mongodb://%s:%s@%s/?authMechanism=PLAIN", storeUser, storePass, ln.Addr())
	env := append(os.Environ(), "TAWSIL_DOCSTORE_LISTEN_FD=3", "TAWSIL_DOCSTORE_USERNAME="+storeUser, "TAWSIL_DOCSTORE_PASSWORD="+storePass,
		"TAWSIL_FERRET_HANDLER=postgresql", "TAWSIL_FERRET_PG_URL="+pg, "TAWSIL_LOG_LEVEL=warn")
	c.Store = startProcess(c.tb, env, []*os.File{f}, bins.docstore)
	_ = f.Close()
	cl, err := mongo.Connect(context.Background(), options.Client().ApplyURI(c.StoreURI).SetServerSelectionTimeout(20*time.Second))
	if err != nil {
		c.tb.Fatal(err)
	}
	if err := cl.Ping(context.Background(), nil); err != nil {
		c.tb.Fatalf("document store not answering: %v\n%s", err, c.Store.Log())
	}
	c.dropDB = func() {
		// The database is a PostgreSQL schema shared with other runs: drop it.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := cl.Database(c.DB).Drop(ctx); err != nil {
			c.tb.Logf("drop %s: %v", c.DB, err)
		}
		_ = cl.Disconnect(ctx)
	}
}

// Start starts replica i (1-based) and waits until it is ready.
func (c *Cluster) Start(i int) *Replica {
	c.tb.Helper()
	c.launch(i)
	c.WaitReady(i)
	return c.Replicas[i-1]
}

func (c *Cluster) launch(i int) {
	c.tb.Helper()
	r := c.Replicas[i-1]
	if r.Proc.running() {
		c.tb.Fatalf("replica %d already running", i)
	}
	if r.Proc != nil {
		r.logs = append(r.logs, r.Proc.Log())
	}
	env := os.Environ()
	for k, v := range c.Env {
		env = append(env, k+"="+v)
	}
	env = append(env, "TAWSIL_MQTT_CLIENT_ID="+r.ClientID, "TAWSIL_DATA_DIR="+c.path(fmt.Sprintf("data-%d", i)))
	r.Proc = startProcess(c.tb, env, []*os.File{r.ln}, bins.backend)
}

// StartAll starts every replica: the first alone (it creates the admin), then the rest together.
func (c *Cluster) StartAll() {
	c.tb.Helper()
	c.Start(1)
	for i := 2; i <= len(c.Replicas); i++ {
		c.launch(i)
	}
	for i := 2; i <= len(c.Replicas); i++ {
		c.WaitReady(i)
	}
}

// WaitReady waits for replica i's /readyz.
func (c *Cluster) WaitReady(i int) {
	c.tb.Helper()
	r := c.Replicas[i-1]
	eventually(c.tb, fmt.Sprintf("replica %d ready", i), 60*time.Second, func() bool {
		if !r.Proc.running() {
			c.tb.Fatalf("replica %d exited:\n%s", i, r.Logs())
		}
		res, err := probe.Get(r.Base + "/readyz")
		if err != nil {
			return false
		}
		_ = res.Body.Close()
		return res.StatusCode == 200
	})
}

// Kill sends SIGKILL to replica i: no shutdown work at all.
func (c *Cluster) Kill(i int) { c.Replicas[i-1].Proc.signal(syscall.SIGKILL) }

// Stop stops replica i gracefully (SIGTERM).
func (c *Cluster) Stop(i int) { c.Replicas[i-1].Proc.signal(syscall.SIGTERM) }

// Restart stops replica i gracefully and starts it again.
func (c *Cluster) Restart(i int) *Replica {
	c.tb.Helper()
	c.Stop(i)
	return c.Start(i)
}

func (c *Cluster) stopAll() {
	var wg sync.WaitGroup
	for _, r := range c.Replicas {
		wg.Add(1)
		go func(r *Replica) {
			defer wg.Done()
			r.Proc.signal(syscall.SIGTERM)
			_ = r.ln.Close()
		}(r)
	}
	wg.Wait()
	if c.tb.Failed() {
		for _, r := range c.Replicas {
			c.tb.Logf("replica %d log (tail):\n%s", r.N, tail(r.Logs(), 40))
		}
	}
	if c.dropDB != nil {
		c.dropDB()
	}
	c.Store.signal(syscall.SIGTERM)
	_ = c.storeLn.Close()
	c.Mosq.signal(syscall.SIGTERM)
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// AddDevice provisions a device login as an operator does
// (mosquitto_passwd, then SIGHUP) and waits until Mosquitto accepts it.
func (c *Cluster) AddDevice(user, password string) {
	c.tb.Helper()
	c.run(c.passwd, "-b", c.path("devices.passwd"), user, password)
	if err := c.Mosq.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		c.tb.Fatal(err)
	}
	eventually(c.tb, "device login accepted", 10*time.Second, func() bool {
		cl, err := dial("unix://"+c.mosqDev, "probe", user, password)
		if err != nil {
			return false
		}
		cl.Disconnect(0)
		return true
	})
}

func dial(url, clientID, user, pass string) (paho.Client, error) {
	o := paho.NewClientOptions().AddBroker(url).SetClientID(clientID).SetUsername(user).SetPassword(pass).
		SetAutoReconnect(false).SetConnectTimeout(5 * time.Second).SetOrderMatters(false)
	cl := paho.NewClient(o)
	tok := cl.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return nil, fmt.Errorf("connect %s: timeout", url)
	}
	return cl, tok.Error()
}

// Device is a courier's device connected to the device listener.
type Device struct {
	CourierID string
	client    paho.Client
	seq       uint64
	mu        sync.Mutex
	tasks     []wire.Task
}

// Connect provisions courierID's device credentials (through replica r) and connects.
func (c *Cluster) Connect(r *Replica, admin, courierID string) *Device {
	c.tb.Helper()
	var cred struct {
		Username string `json:"mqtt_username"`
		Password string `json:"mqtt_password"`
	}
	r.Must(c.tb, 201, "POST", "/v1/couriers/"+courierID+"/device-credentials", admin, nil).JSON(c.tb, &cred)
	c.AddDevice(cred.Username, cred.Password)
	cl, err := dial("unix://"+c.mosqDev, "dev-"+courierID, cred.Username, cred.Password)
	if err != nil {
		c.tb.Fatalf("device connect: %v", err)
	}
	c.tb.Cleanup(func() { cl.Disconnect(100) })
	d := &Device{CourierID: courierID, client: cl}
	tok := cl.Subscribe(topic.Courier(topic.DefaultPrefix, courierID, topic.Tasks), 1, func(_ paho.Client, m paho.Message) {
		if t, err := wire.DecodeTask(m.Payload()); err == nil {
			d.mu.Lock()
			d.tasks = append(d.tasks, t)
			d.mu.Unlock()
		}
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		c.tb.Fatalf("subscribe tasks: %v", tok.Error())
	}
	return d
}

// At publishes one fix at p.
func (d *Device) At(tb testing.TB, lat, lng float64, t time.Time) {
	tb.Helper()
	d.seq++
	raw, err := wire.EncodeBatch(nil, []wire.Fix{{Seq: d.seq, Time: t.UTC().Truncate(time.Millisecond), Lat: lat, Lng: lng, Accuracy: 6,
		Heading: wire.Unknown, Battery: 70}})
	if err != nil {
		tb.Fatal(err)
	}
	tok := d.client.Publish(topic.Courier(topic.DefaultPrefix, d.CourierID, topic.Pos), 1, false, raw)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		tb.Fatalf("publish: %v", tok.Error())
	}
}

// Tasks is every task message the device received, in arrival order.
func (d *Device) Tasks() []wire.Task {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]wire.Task(nil), d.tasks...)
}

// Resp is an HTTP answer.
type Resp struct {
	Status int
	Body   []byte
}

// JSON decodes the body.
func (r Resp) JSON(tb testing.TB, dst any) {
	tb.Helper()
	if err := json.Unmarshal(r.Body, dst); err != nil {
		tb.Fatalf("decode %s: %v", r.Body, err)
	}
}

var (
	client = &http.Client{Timeout: 30 * time.Second}
	probe  = &http.Client{Timeout: 2 * time.Second}
)

// Do sends a request to the replica.
func (r *Replica) Do(tb testing.TB, method, path, token string, body any, headers ...string) Resp {
	tb.Helper()
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			tb.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, r.Base+path, rd)
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
	res, err := client.Do(req)
	if err != nil {
		tb.Errorf("replica %d: %s %s: %v", r.N, method, path, err)
		return Resp{}
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		tb.Errorf("replica %d: read %s: %v", r.N, path, err)
	}
	return Resp{Status: res.StatusCode, Body: b}
}

// Must is Do that fails the test on another status.
func (r *Replica) Must(tb testing.TB, want int, method, path, token string, body any, headers ...string) Resp {
	tb.Helper()
	res := r.Do(tb, method, path, token, body, headers...)
	if res.Status != want {
		tb.Fatalf("replica %d: %s %s = %d, want %d: %s", r.N, method, path, res.Status, want, res.Body)
	}
	return res
}

// Login returns an access token.
func (r *Replica) Login(tb testing.TB, email, password string) string {
	tb.Helper()
	var out struct {
		AccessToken string `json:"access_token"`
	}
	r.Must(tb, 200, "POST", "/v1/auth/login", "", map[string]string{"email": email, "password": password}).JSON(tb, &out)
	return out.AccessToken
}

// User is an account created through the API.
type User struct {
	ID, Email, Password, Token, CourierID, MerchantID string
}

var userSeq struct {
	mu sync.Mutex
	n  int
}

// NewUser creates a user of a role through replica r and logs it in.
func (r *Replica) NewUser(tb testing.TB, admin, role string) User {
	tb.Helper()
	userSeq.mu.Lock()
	userSeq.n++
	n := userSeq.n
	userSeq.mu.Unlock()
	u := User{Email: fmt.Sprintf("%s%d@cluster.test", role, n), Password: "password-" + role + "-123"}
	var out struct {
		ID         string `json:"id"`
		CourierID  string `json:"courier_id"`
		MerchantID string `json:"merchant_id"`
	}
	r.Must(tb, 201, "POST", "/v1/users", admin, map[string]any{"email": u.Email, "password": u.Password, "role": role, "name": "Test " + role}).JSON(tb, &out)
	u.ID, u.CourierID, u.MerchantID = out.ID, out.CourierID, out.MerchantID
	u.Token = r.Login(tb, u.Email, u.Password)
	return u
}

func eventually(tb testing.TB, what string, timeout time.Duration, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
