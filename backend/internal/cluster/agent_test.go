package cluster

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"

	"github.com/tawsil/tawsil/shared/topic"
)

// agentBin is cmd/agent as shipped (pure Go), built once next to the other binaries.
var agentBin struct {
	once sync.Once
	path string
	err  error
}

func buildAgent(tb testing.TB) string {
	tb.Helper()
	if err := build(); err != nil {
		tb.Fatal(err)
	}
	agentBin.once.Do(func() {
		agentBin.path = filepath.Join(bins.dir, "agent")
		cmd := exec.Command("go", "build", "-o", agentBin.path, "./cmd/agent")
		cmd.Dir = filepath.Join("..", "..", "..", "agent")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			agentBin.err = fmt.Errorf("go build ./cmd/agent: %v\n%s", err, b)
		}
	})
	if agentBin.err != nil {
		tb.Fatal(agentBin.err)
	}
	return agentBin.path
}

// DeviceTCP returns a TCP address (a port-0 listener of the test) whose
// connections are relayed byte for byte to Mosquitto's device listener:
// the agent dials tcp:// as it does from a phone.
func (c *Cluster) DeviceTCP() string {
	c.tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.tb.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
	)
	c.tb.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, cn := range conns {
			_ = cn.Close()
		}
	})
	go func() {
		for {
			down, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("unix", c.mosqDev)
			if err != nil {
				_ = down.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, down, up)
			mu.Unlock()
			pipe := func(dst, src net.Conn) {
				_, _ = io.Copy(dst, src)
				_ = dst.Close()
				_ = src.Close()
			}
			go pipe(up, down)
			go pipe(down, up)
		}
	}()
	return ln.Addr().String()
}

// fakeGPSD speaks gpsd's JSON protocol on a port-0 listener: after the
// client's WATCH it streams a TPV report of the current position every
// 250 ms. The test moves the courier with MoveTo.
type fakeGPSD struct {
	addr     string
	mu       sync.Mutex
	lat, lng float64
}

func newFakeGPSD(tb testing.TB, lat, lng float64) *fakeGPSD {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	g := &fakeGPSD{addr: ln.Addr().String(), lat: lat, lng: lng}
	done := make(chan struct{})
	tb.Cleanup(func() { close(done); _ = ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go g.serve(conn, done)
		}
	}()
	return g
}

func (g *fakeGPSD) serve(conn net.Conn, done <-chan struct{}) {
	defer conn.Close()
	if _, err := bufio.NewReader(conn).ReadString('\n'); err != nil { // ?WATCH={...}
		return
	}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return
		case <-tick.C:
		}
		g.mu.Lock()
		line := fmt.Sprintf(`{"class":"TPV","mode":3,"time":%q,"lat":%.6f,"lon":%.6f,"eph":5,"speed":0}`+"\n",
			time.Now().UTC().Format(time.RFC3339Nano), g.lat, g.lng)
		g.mu.Unlock()
		if _, err := io.WriteString(conn, line); err != nil {
			return
		}
	}
}

// MoveTo sets the position reported from now on.
func (g *fakeGPSD) MoveTo(lat, lng float64) {
	g.mu.Lock()
	g.lat, g.lng = lat, lng
	g.mu.Unlock()
}

// agentProfile sends every fix (a courier waiting at the store still
// reports), reconnects fast.
const agentProfile = `name: cluster-test
description: every fix, fast reconnects
gps:
  read_interval_s: 1
  max_accuracy_m: 40
  max_speed_mps: 42
  max_fix_age_s: 60
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

// courierAgent is the real agent binary as one courier's device, over all
// its runs (same outbox, same credentials).
type courierAgent struct {
	c                       *Cluster
	bin, broker, gps        string
	courier, user, pass, id string
	outbox, profile         string
	runs                    []*Process
}

// NewAgent provisions courierID's device credentials through replica r (as
// an operator does: issue, then add the login to Mosquitto) and prepares
// the agent; Start runs it.
func (c *Cluster) NewAgent(r *Replica, admin, courierID string, gps *fakeGPSD) *courierAgent {
	c.tb.Helper()
	var cred struct {
		Username string `json:"mqtt_username"`
		Password string `json:"mqtt_password"`
		ClientID string `json:"client_id"`
	}
	r.Must(c.tb, 201, "POST", "/v1/couriers/"+courierID+"/device-credentials", admin, nil).JSON(c.tb, &cred)
	c.AddDevice(cred.Username, cred.Password)
	a := &courierAgent{c: c, bin: buildAgent(c.tb), broker: "tcp://" + c.DeviceTCP(), gps: gps.addr, courier: courierID,
		user: cred.Username, pass: cred.Password, id: cred.ClientID, outbox: c.path("outbox-" + courierID), profile: c.path("agent-profile.yaml")}
	if err := os.WriteFile(a.profile, []byte(agentProfile), 0o600); err != nil {
		c.tb.Fatal(err)
	}
	c.tb.Cleanup(func() {
		if p := a.proc(); p != nil {
			p.signal(syscall.SIGTERM)
		}
		if c.tb.Failed() {
			c.tb.Logf("agent log (tail):\n%s", tail(a.Log(), 60))
		}
	})
	return a
}

func (a *courierAgent) proc() *Process {
	if len(a.runs) == 0 {
		return nil
	}
	return a.runs[len(a.runs)-1]
}

// Start runs the agent and waits until it is connected.
func (a *courierAgent) Start() {
	a.c.tb.Helper()
	env := append(os.Environ(), "TAWSIL_AGENT_PASSWORD="+a.pass)
	a.runs = append(a.runs, startProcess(a.c.tb, env, nil, a.bin, "run", "--broker", a.broker, "--courier", a.courier,
		"--username", a.user, "--client-id", a.id, "--source", "gpsd:"+a.gps, "--outbox", a.outbox,
		"--status-addr", "127.0.0.1:0", "--profile", a.profile))
	eventually(a.c.tb, "agent connected", 20*time.Second, func() bool {
		if !a.proc().running() {
			a.c.tb.Fatalf("agent exited:\n%s", a.proc().Log())
		}
		return strings.Contains(a.proc().Log(), `msg="mqtt connected"`)
	})
}

// Kill ends the agent with SIGKILL: no goodbye, no flush.
func (a *courierAgent) Kill() { a.proc().signal(syscall.SIGKILL) }

// Log is everything the agent logged over all its runs.
func (a *courierAgent) Log() string {
	var b strings.Builder
	for _, p := range a.runs {
		b.WriteString(p.Log())
	}
	return b.String()
}

var (
	logAttr       = regexp.MustCompile(`(\w+)=("(?:[^"\\]|\\.)*"|\S+)`)
	statusAddrRun = regexp.MustCompile(`msg="status endpoint".* addr=(\S+)`)
)

// appliedTask is one "task applied" line of the agent's log.
type appliedTask struct {
	Seq          uint64
	Type         string
	OrderID      string
	RouteVersion uint64
	Stops        int
}

// Applied lists the tasks the agent applied, in order, over all its runs;
// skipped counts the "task skipped" lines.
func (a *courierAgent) Applied() (applied []appliedTask, skipped int) {
	for _, line := range strings.Split(a.Log(), "\n") {
		switch {
		case strings.Contains(line, `msg="task skipped"`):
			skipped++
		case strings.Contains(line, `msg="task applied"`):
			var t appliedTask
			for _, m := range logAttr.FindAllStringSubmatch(line, -1) {
				switch m[1] {
				case "seq":
					t.Seq, _ = strconv.ParseUint(m[2], 10, 64)
				case "type":
					t.Type = m[2]
				case "order_id":
					t.OrderID = m[2]
				case "route_version":
					t.RouteVersion, _ = strconv.ParseUint(m[2], 10, 64)
				case "stops":
					t.Stops, _ = strconv.Atoi(m[2])
				}
			}
			applied = append(applied, t)
		}
	}
	return applied, skipped
}

// agentRoute is the route plan in force on the device (GET /tasks of the
// agent's status endpoint).
type agentRoute struct {
	LastTaskSeq uint64 `json:"last_task_seq"`
	Route       *struct {
		Version uint64 `json:"version"`
		Stops   []struct {
			OrderID string `json:"order_id"`
			Kind    string `json:"kind"`
		} `json:"stops"`
	} `json:"route"`
}

func (a *courierAgent) Route(tb testing.TB) (agentRoute, bool) {
	tb.Helper()
	var v agentRoute
	m := statusAddrRun.FindStringSubmatch(a.proc().Log())
	if m == nil {
		return v, false
	}
	res, err := probe.Get("http://" + m[1] + "/tasks")
	if err != nil {
		return v, false
	}
	defer res.Body.Close()
	return v, json.NewDecoder(res.Body).Decode(&v) == nil
}

// hasApplied reports whether the agent applied a task of type typ for order.
func (a *courierAgent) hasApplied(typ, order string) bool {
	ts, _ := a.Applied()
	return slices.ContainsFunc(ts, func(t appliedTask) bool { return t.Type == typ && t.OrderID == order })
}

// backendRoute is a courier's route as a replica serves it (GET /v1/me/tasks).
type backendRoute struct {
	Route struct {
		Version uint64 `json:"version"`
		Stops   []struct {
			OrderID string `json:"order_id"`
			Kind    string `json:"kind"`
		} `json:"stops"`
	} `json:"route"`
}

// routePlans opens the shared store's route plans, as the replicas write them.
func routePlans(tb testing.TB, c *Cluster) *mongo.Collection {
	tb.Helper()
	cl, err := mongo.Connect(context.Background(), options.Client().ApplyURI(c.StoreURI))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = cl.Disconnect(context.Background()) })
	return cl.Database(c.DB).Collection("route_plans")
}

// latestPlanVersion is the newest route plan version the replicas stored
// for courier (0 when none).
func latestPlanVersion(tb testing.TB, plans *mongo.Collection, courier string) uint64 {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var d struct {
		Version int64 `bson:"version"`
	}
	err := plans.FindOne(ctx, bson.M{"courier_id": courier}, options.FindOne().SetSort(bson.D{{Key: "version", Value: -1}})).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return 0
	}
	if err != nil {
		tb.Fatal(err)
	}
	return uint64(d.Version)
}

// storedStops is the number of stops of courier's plan stored under
// version (ok=false when it is not stored).
func storedStops(tb testing.TB, plans *mongo.Collection, courier string, version uint64) (n int, ok bool) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var d struct {
		Plan []byte `bson:"plan"`
	}
	err := plans.FindOne(ctx, bson.M{"courier_id": courier, "version": int64(version)}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return 0, false
	}
	if err != nil {
		tb.Fatal(err)
	}
	var p struct {
		Visits []json.RawMessage `json:"visits"`
	}
	if err := json.Unmarshal(d.Plan, &p); err != nil {
		tb.Fatalf("stored plan %d: %v", version, err)
	}
	return len(p.Visits), true
}

// TestClusterAgent runs the real agent binary as a courier's device against
// three replicas: offers answered on different replicas, assignments by a
// dispatcher, an unassign, a failure and its re-plan, one replica killed
// with SIGKILL and started again, and the agent itself killed and
// restarted in the middle. What the agent applied (its log, one line per
// task) must hold no task twice and strictly increasing plan versions, and
// the plan in force at the end must be the backend's current route.
func TestClusterAgent(t *testing.T) {
	c := NewCluster(t, replicasWant)
	rules := c.path("rules.yaml")
	if err := os.WriteFile(rules, []byte(restartRules), 0o600); err != nil {
		t.Fatal(err)
	}
	c.Env["TAWSIL_RULES_FILE"] = rules
	c.StartAll()
	r := c.Replicas
	plans := routePlans(t, c)
	admin := r[0].Login(t, adminEmail, adminPass)
	dispatcher := r[1].NewUser(t, admin, "dispatcher")
	merchant := r[2].NewUser(t, admin, "merchant")
	// Room for the five orders of the scenario (the default capacity is 3).
	courier := User{Email: "agent-courier@cluster.test", Password: "password-courier-123"}
	var cu struct {
		CourierID string `json:"courier_id"`
	}
	r[0].Must(t, 201, "POST", "/v1/users", admin, map[string]any{"email": courier.Email, "password": courier.Password, "role": "courier",
		"name": "Agent courier", "capacity": 6}).JSON(t, &cu)
	courier.CourierID, courier.Token = cu.CourierID, r[0].Login(t, courier.Email, courier.Password)
	gps := newFakeGPSD(t, darkStore[0], darkStore[1])
	agent := c.NewAgent(r[1], admin, courier.CourierID, gps)
	agent.Start()
	r[2].Must(t, 200, "POST", "/v1/me/shift", courier.Token, map[string]any{"on_duty": true})
	for _, rep := range r {
		eventually(t, fmt.Sprintf("replica %d sees the agent's courier", rep.N), 20*time.Second, func() bool {
			return seesAll(t, rep, dispatcher.Token, []string{courier.CourierID})
		})
	}
	offered := func(o string) {
		t.Helper()
		eventually(t, "the agent applies the offer of "+o, 20*time.Second, func() bool { return agent.hasApplied("offer", o) })
	}
	// Each action is answered on whichever replica gets it, even when that
	// replica's cache of active orders is behind another's write; only the
	// wait for the device's fix to reach a (restarted) replica is retried.
	do := func(rep *Replica, path, token string, body any) {
		t.Helper()
		untilThere(t, rep, path, token, body)
	}
	// follow waits until the plan in force on the device is the route rep
	// just decided (what rep serves in GET /v1/me/tasks); nothing else
	// re-plans meanwhile.
	follow := func(rep *Replica) backendRoute {
		t.Helper()
		var want backendRoute
		rep.Must(t, 200, "GET", "/v1/me/tasks", courier.Token, nil).JSON(t, &want)
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			got, ok := agent.Route(t)
			if ok && got.Route != nil && got.Route.Version == want.Route.Version && fmt.Sprint(got.Route.Stops) == fmt.Sprint(want.Route.Stops) {
				return want
			}
			if time.Now().After(deadline) {
				var have any = "none"
				if got.Route != nil {
					have = fmt.Sprint(got.Route.Version, got.Route.Stops)
				}
				t.Fatalf("replica %d decided plan %d %v; the agent's plan in force is %v (last task seq %d)", rep.N, want.Route.Version, want.Route.Stops, have, got.LastTaskSeq)
			}
		}
	}

	// An order booked on replica 1 is offered to the only courier; it
	// accepts on replica 2.
	a := book(t, r[0], merchant, "agent-a")
	offered(a)
	do(r[1], "/v1/orders/"+a+"/accept", courier.Token, nil)
	follow(r[1])

	// Booked on replica 2, declined on replica 3 (nobody else: a dispatcher
	// is asked), assigned by the dispatcher on replica 1.
	b := book(t, r[1], merchant, "agent-b")
	offered(b)
	do(r[2], "/v1/orders/"+b+"/decline", courier.Token, map[string]any{"reason": "too far"})
	do(r[0], "/v1/orders/"+b+"/assign", dispatcher.Token, map[string]any{"courier_id": courier.CourierID})
	follow(r[0])

	// Booked on replica 3 and accepted on replica 1; replica 3 is killed
	// with SIGKILL right after, in the middle of the traffic.
	cOrder := book(t, r[2], merchant, "agent-c")
	offered(cOrder)
	do(r[0], "/v1/orders/"+cOrder+"/accept", courier.Token, nil)
	c.Kill(3)

	// The agent is killed (no goodbye); meanwhile the dispatcher takes C
	// back (replica 2) and the courier picks A up (replica 1): the tasks
	// of that time are lost for the device but the newest plan is retained.
	agent.Kill()
	do(r[1], "/v1/orders/"+cOrder+"/unassign", dispatcher.Token, map[string]any{"reason": "customer asked for later"})
	do(r[0], "/v1/orders/"+a+"/pickup", courier.Token, nil)
	agent.Start()
	c.Start(3)

	// After both restarts: B picked up on the restarted replica, A fails
	// (address not found: retry later, a re-plan) on replica 2, and a new
	// order D booked on replica 1 is accepted on replica 3.
	do(r[2], "/v1/orders/"+b+"/pickup", courier.Token, nil)
	follow(r[2])
	do(r[1], "/v1/orders/"+a+"/fail", courier.Token, map[string]any{"reason": "ADDRESS_NOT_FOUND", "evidence": map[string]any{"call_attempts": 1}})
	follow(r[1])
	d := book(t, r[0], merchant, "agent-d")
	offered(d)
	do(r[2], "/v1/orders/"+d+"/accept", courier.Token, nil)
	follow(r[2])

	// Three re-plans at once on the three replicas: their plans may reach
	// the device in another order than their versions.
	e := book(t, r[1], merchant, "agent-e")
	offered(e)
	var wg sync.WaitGroup
	burst := []struct {
		rep  *Replica
		path string
		body any
	}{
		{r[0], "/v1/orders/" + d + "/pickup", nil},
		{r[1], "/v1/orders/" + e + "/accept", nil},
		{r[2], "/v1/orders/" + b + "/fail", map[string]any{"reason": "ADDRESS_NOT_FOUND", "evidence": map[string]any{"call_attempts": 1}}},
	}
	errs := make([]string, len(burst))
	for i, op := range burst {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if res := op.rep.Do(t, "POST", op.path, courier.Token, op.body); res.Status != 200 {
				errs[i] = fmt.Sprintf("replica %d: POST %s = %d: %s", op.rep.N, op.path, res.Status, res.Body)
			}
		}()
	}
	wg.Wait()
	for _, e := range errs {
		if e != "" {
			t.Fatal(e)
		}
	}
	waitCurrent := func(what string) agentRoute {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			got, ok := agent.Route(t)
			want := latestPlanVersion(t, plans, courier.CourierID)
			if ok && got.Route != nil && got.Route.Version == want {
				return got
			}
			if time.Now().After(deadline) {
				var have any = "none"
				if got.Route != nil {
					have = got.Route.Version
				}
				t.Fatalf("%s: the agent's plan in force is %v (last task seq %d), the newest stored plan is %d", what, have, got.LastTaskSeq, want)
			}
		}
	}
	waitCurrent("the agent follows the burst of re-plans")

	// The last decision: E picked up on replica 3. Its route is the
	// backend's current route for the courier.
	do(r[2], "/v1/orders/"+e+"/pickup", courier.Token, nil)
	want := follow(r[2])
	if newest := latestPlanVersion(t, plans, courier.CourierID); want.Route.Version != newest {
		t.Fatalf("replica 3 re-planned to version %d, but the newest stored plan is %d", want.Route.Version, newest)
	}

	// Redeliveries, as a broker makes them after a lost acknowledgement
	// (the backend's login on its own listener): the first assignment and
	// the first plan again, with their own sequence numbers.
	applied, skipped0 := agent.Applied()
	inj, err := dial("unix://"+c.mosqSvc, "test-redeliver", backendUser, backendPass)
	if err != nil {
		t.Fatal(err)
	}
	defer inj.Disconnect(100)
	redeliver := 0
	for _, tk := range applied {
		var msg map[string]any
		switch {
		case tk.Type == "assignment" && redeliver == 0:
			msg = map[string]any{"v": 1, "seq": tk.Seq, "type": tk.Type, "order_id": tk.OrderID, "at": time.Now().UTC()}
		case tk.Type == "route_plan" && redeliver == 1:
			msg = map[string]any{"v": 1, "seq": tk.Seq, "type": tk.Type, "route": map[string]any{"version": tk.RouteVersion, "stops": []any{}}, "at": time.Now().UTC()}
		default:
			continue
		}
		raw, err := json.Marshal(msg)
		if err != nil {
			t.Fatal(err)
		}
		if tok := inj.Publish(topic.Courier(topic.DefaultPrefix, courier.CourierID, topic.Tasks), 1, false, raw); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("redeliver: %v", tok.Error())
		}
		redeliver++
	}
	handled := func() int { a, s := agent.Applied(); return len(a) + s }
	before := len(applied) + skipped0
	eventually(t, "the agent handles both redeliveries", 15*time.Second, func() bool { return handled() >= before+2 })

	// The agent restarted once more, now that all is quiet: it gets the
	// retained plan it already applied, and must keep its plan in force.
	agent.Kill()
	before = handled()
	agent.Start()
	eventually(t, "the restarted agent handles the retained plan", 15*time.Second, func() bool { return handled() > before })

	// The plan in force on the device ends as the backend's current route.
	got := waitCurrent("the agent's plan is the backend's current route")
	if got.Route.Version != want.Route.Version || fmt.Sprint(got.Route.Stops) != fmt.Sprint(want.Route.Stops) {
		t.Errorf("the agent's plan %d %v, the backend's current route %d %v", got.Route.Version, got.Route.Stops, want.Route.Version, want.Route.Stops)
	}

	applied, skipped := agent.Applied()
	seqs := map[uint64]bool{}
	var lastPlan uint64
	nPlans := 0
	for _, tk := range applied {
		if seqs[tk.Seq] {
			t.Errorf("task seq %d (%s %s) applied twice", tk.Seq, tk.Type, tk.OrderID)
		}
		seqs[tk.Seq] = true
		if tk.Type == "route_plan" {
			nPlans++
			if tk.RouteVersion <= lastPlan {
				t.Errorf("route plan %d applied after plan %d", tk.RouteVersion, lastPlan)
			}
			lastPlan = tk.RouteVersion
			// A version names one plan: the one the backend stored under it.
			if n, ok := storedStops(t, plans, courier.CourierID, tk.RouteVersion); ok && n != tk.Stops {
				t.Errorf("route plan %d applied with %d stops; the backend stored plan %d with %d", tk.RouteVersion, tk.Stops, tk.RouteVersion, n)
			}
		}
	}
	// Every assignment made while the agent ran reached it (C's came just
	// before the agent was killed: it may be lost with it).
	for _, o := range []string{a, b, d, e} {
		if !agent.hasApplied("assignment", o) {
			t.Errorf("the agent never applied the assignment of %s", o)
		}
	}
	t.Logf("the agent applied %d tasks (%d route plans, the last version %d) and skipped %d over %d runs",
		len(applied), nPlans, lastPlan, skipped, len(agent.runs))
	if nPlans < 4 {
		t.Errorf("only %d route plans applied: the scenario did not re-route the courier", nPlans)
	}
}
