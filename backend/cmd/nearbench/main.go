// Command nearbench measures the dispatcher's hot query,
// GET /v1/couriers?near=, over HTTP with a large live fleet.
//
//	nearbench fleet -mongo URI -n 50000        # couriers on shift + their last positions, written to the store
//	nearbench http  -api URL -conns 8 -duration 15s   # token from $NEARBENCH_TOKEN
//	nearbench bare  -conns 8 -duration 15s            # the same load against a bare Fiber app
//
// fleet writes what a running backend would have saved (the couriers
// collection and courier_state) so that a backend started on that store
// restores the whole fleet into its live index at start, without 50,000
// logins. http is a closed-loop load generator: each connection sends the
// next request when the answer is in, over a kept-alive HTTP/1.1
// connection, so its latencies are the server's answer times; query points
// vary over Casablanca in the same deterministic order as the wrk script of
// .ci/bench.sh.
//
// bare is the machine's ceiling for that load: the same client, in the same
// process layout (one server process, one load process on the same cores),
// against a Fiber app with no middleware that answers every request with a
// constant JSON body as long as a near= answer of 5 couriers. What the
// backend loses against it is the cost of its own work per request.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"

	"github.com/gofiber/fiber/v2"

	"github.com/tawsil/tawsil/backend/internal/mongostore"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "nearbench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errors.New("usage: nearbench fleet|http [flags]")
	}
	fs := flag.NewFlagSet("nearbench "+args[0], flag.ContinueOnError)
	switch args[0] {
	case "fleet":
		uri := fs.String("mongo", "", "MongoDB URI of the backend's store")
		db := fs.String("db", "tawsil", "database")
		n := fs.Int("n", 50_000, "couriers")
		seed := fs.Uint64("seed", 42, "random seed of the positions")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		return fleet(ctx, *uri, *db, *n, *seed)
	case "http":
		api := fs.String("api", "http://127.0.0.1:8080", "backend base URL")
		conns := fs.Int("conns", 8, "connections")
		d := fs.Duration("duration", 15*time.Second, "measured time")
		warm := fs.Duration("warmup", 2*time.Second, "unmeasured time first")
		pid := fs.Int("pid", 0, "the server's process id: report its CPU time per request")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		token := os.Getenv("NEARBENCH_TOKEN")
		if token == "" {
			return errors.New("NEARBENCH_TOKEN is empty")
		}
		r, err := load(ctx, *api, token, *conns, *warm, *d, *pid)
		if err != nil {
			return err
		}
		fmt.Printf("near= over HTTP, %d connections, %v: %.0f req/s, p50 %v, p90 %v, p99 %v, max %v, %d requests, %d errors%s\n",
			*conns, *d, r.qps, r.p(0.50), r.p(0.90), r.p(0.99), r.p(1), len(r.durs), r.errors, r.cpuNote())
		return nil
	case "bare":
		conns := fs.Int("conns", 8, "connections")
		d := fs.Duration("duration", 15*time.Second, "measured time")
		warm := fs.Duration("warmup", 2*time.Second, "unmeasured time first")
		serve := fs.String("serve", "", "only serve the bare app on this address (no load)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		return bare(ctx, *serve, *conns, *warm, *d)
	}
	return fmt.Errorf("unknown mode %q", args[0])
}

// Casablanca, as the live index benchmarks bound it.
const (
	minLat, maxLat = 33.45, 33.65
	minLng, maxLng = -7.75, -7.45
)

// fleet inserts n couriers, on shift, each with a fresh last position.
func fleet(ctx context.Context, uri, dbName string, n int, seed uint64) error {
	if uri == "" {
		return errors.New("-mongo is required")
	}
	client, err := mongo.Connect(ctx, options.Client().ApplyURI(uri).SetRetryWrites(false))
	if err != nil {
		return err
	}
	defer func() { _ = client.Disconnect(context.Background()) }()
	if err := client.Ping(ctx, nil); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	db := client.Database(dbName)
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))
	now := time.Now().UTC()
	start := time.Now()
	const chunk = 1000
	for lo := 0; lo < n; lo += chunk {
		hi := min(lo+chunk, n)
		couriers := make([]any, 0, hi-lo)
		states := make([]any, 0, hi-lo)
		for i := lo; i < hi; i++ {
			id := fmt.Sprintf("bench-courier-%06d", i)
			// The fields of mongostore's courier document. No user_id: a
			// courier whose user is missing counts as erased at restore
			// (app.activeCourier) and would not be live.
			couriers = append(couriers, bson.M{"_id": id, "name": "Bench " + strconv.Itoa(i),
				"vehicle": "scooter", "capacity": 2, "on_shift": true, "shift_from": now.Add(-time.Hour), "created_at": now.Add(-time.Hour)})
			states = append(states, mongostore.CourierState{CourierID: id, Seq: 1,
				Lat: wireDegrees(minLat + rng.Float64()*(maxLat-minLat)), Lng: wireDegrees(minLng + rng.Float64()*(maxLng-minLng)),
				AccuracyM: 5, SpeedMPS: 3, Heading: 90, Battery: 80, T: now.Add(-time.Second), SeenAt: now, Online: true})
		}
		ordered := options.InsertMany().SetOrdered(false)
		if _, err := db.Collection("couriers").InsertMany(ctx, couriers, ordered); err != nil {
			return fmt.Errorf("insert couriers: %w", err)
		}
		if _, err := db.Collection("courier_state").InsertMany(ctx, states, ordered); err != nil {
			return fmt.Errorf("insert courier states: %w", err)
		}
	}
	fmt.Printf("fleet: %d couriers on shift with a position, written in %v\n", n, time.Since(start).Round(time.Millisecond))
	return nil
}

// wireDegrees is d as a fix from the wire holds it: a whole number of
// 1e-6 degree (shared/wire's position codec), the precision of every
// position a running backend saves. A random float64 has 17 significant
// digits no device sends, and would make the answer's JSON pay for a
// shortest-float search real positions never need.
func wireDegrees(d float64) float64 { return math.Round(d*1e6) / 1e6 }

// bareBody is a near= answer's size (5 couriers with names, ~1.4 kB).
var bareBody = func() []byte {
	b := []byte(`{"couriers":[`)
	for i := range 5 {
		if i > 0 {
			b = append(b, ',')
		}
		b = fmt.Appendf(b, `{"id":"bench-courier-%06d","name":"Bench %d","lat":33.54992240655483,"lng":-7.600087813356795,`+
			`"distance_m":11.9,"cell":"8939aab9223ffff","status":"available","online":true,"on_shift":true,"load":0,`+
			`"capacity":2,"vehicle":"scooter","battery":80,"updated_at":"2026-12-02T02:38:16Z"}`, 19638+i, 19638+i)
	}
	return append(b, "]}"...)
}()

// bare serves a Fiber app with one constant route in a child process (so
// that server and client are two processes sharing the cores, as with the
// backend) and loads it as http does; with serve set it is that child.
func bare(ctx context.Context, serve string, conns int, warm, d time.Duration) error {
	if serve != "" {
		ln, err := net.Listen("tcp", serve)
		if err != nil {
			return err
		}
		app := fiber.New(fiber.Config{DisableStartupMessage: true})
		app.Get("/v1/couriers", func(c *fiber.Ctx) error {
			c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
			return c.Send(bareBody)
		})
		fmt.Println(ln.Addr().String())
		go func() { <-ctx.Done(); _ = app.Shutdown() }()
		return app.Listener(ln)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, self, "bare", "-serve", "127.0.0.1:0")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	addr, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		return fmt.Errorf("bare server: %w", err)
	}
	// The same request as http sends: a real token when there is one (the
	// bare app reads it and ignores it), else one of a token's size.
	token := os.Getenv("NEARBENCH_TOKEN")
	if token == "" {
		token = strings.Repeat("t", 320)
	}
	r, err := load(ctx, "http://"+strings.TrimSpace(addr), token, conns, warm, d, cmd.Process.Pid)
	if err != nil {
		return err
	}
	fmt.Printf("bare Fiber, constant %d-byte JSON, %d connections, %v: %.0f req/s, p50 %v, p90 %v, p99 %v, max %v, %d requests, %d errors%s\n",
		len(bareBody), conns, d, r.qps, r.p(0.50), r.p(0.90), r.p(0.99), r.p(1), len(r.durs), r.errors, r.cpuNote())
	return nil
}

type result struct {
	durs   []time.Duration
	errors int
	qps    float64
	cpu    time.Duration // the server's CPU time over the measured window, if known
	self   time.Duration // this load generator's CPU time over that window
}

// cpuNote is ", server CPU 31.2 µs/request, load generator CPU 14.0
// µs/request" when the server's CPU time is known: per-request costs that
// other processes on the machine disturb less than the throughput.
func (r *result) cpuNote() string {
	if r.cpu <= 0 || len(r.durs) == 0 {
		return ""
	}
	n := float64(len(r.durs))
	return fmt.Sprintf(", server CPU %.1f µs/request, load generator CPU %.1f µs/request",
		float64(r.cpu.Microseconds())/n, float64(r.self.Microseconds())/n)
}

// selfCPU is the CPU time (user + system) this process has used.
func selfCPU() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, err
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

// procCPU is the CPU time (user + system) process pid has used, from
// /proc/pid/stat in clock ticks of 10 ms (USER_HZ is 100 on Linux).
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("bad /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("bad /proc/%d/stat", pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64) // field 14
	stime, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("bad /proc/%d/stat", pid)
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}

func (r *result) p(q float64) time.Duration {
	if len(r.durs) == 0 {
		return 0
	}
	return r.durs[int(q*float64(len(r.durs)-1))].Round(time.Microsecond)
}

// load runs conns closed-loop clients for warm+d and measures the last d;
// with pid > 0, also that process's CPU time over the last d.
func load(ctx context.Context, api, token string, conns int, warm, d time.Duration, pid int) (result, error) {
	u, err := url.Parse(api)
	if err != nil || u.Host == "" {
		return result{}, fmt.Errorf("bad -api %q", api)
	}
	var (
		mu    sync.Mutex
		all   result
		wg    sync.WaitGroup
		first error
	)
	begin := time.Now()
	measureFrom, end := begin.Add(warm), begin.Add(warm+d)
	for c := range conns {
		wg.Go(func() {
			durs, errs, err := client(ctx, u.Host, token, c, conns, measureFrom, end)
			mu.Lock()
			defer mu.Unlock()
			all.durs = append(all.durs, durs...)
			all.errors += errs
			if err != nil && first == nil {
				first = err
			}
		})
	}
	var cpu0, cpu1, self0, self1 time.Duration
	var cpuErr error
	if pid > 0 {
		wg.Go(func() {
			time.Sleep(time.Until(measureFrom))
			if cpu0, cpuErr = procCPU(pid); cpuErr != nil {
				return
			}
			if self0, cpuErr = selfCPU(); cpuErr != nil {
				return
			}
			time.Sleep(time.Until(end))
			if cpu1, cpuErr = procCPU(pid); cpuErr != nil {
				return
			}
			self1, cpuErr = selfCPU()
		})
	}
	wg.Wait()
	if first != nil {
		return result{}, first
	}
	if pid > 0 && cpuErr == nil {
		all.cpu, all.self = cpu1-cpu0, self1-self0
	}
	slices.Sort(all.durs)
	all.qps = float64(len(all.durs)) / d.Seconds()
	return all, nil
}

// client sends requests i = c, c+conns, ... over one connection.
func client(ctx context.Context, host, token string, c, conns int, from, end time.Time) ([]time.Duration, int, error) {
	conn, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp", host)
	if err != nil {
		return nil, 0, err
	}
	defer func() { _ = conn.Close() }()
	br := bufio.NewReaderSize(conn, 64<<10)
	req := make([]byte, 0, 1024)
	durs := make([]time.Duration, 0, 1<<16)
	errs := 0
	for i := c + 1; ctx.Err() == nil; i += conns {
		now := time.Now()
		if now.After(end) {
			break
		}
		lat := 33.52 + float64((i*7919)%1000)/1000*0.10
		lng := -7.68 + float64((i*104729)%1000)/1000*0.18
		req = append(req[:0], "GET /v1/couriers?near="...)
		req = strconv.AppendFloat(req, lat, 'f', 6, 64)
		req = append(req, ',')
		req = strconv.AppendFloat(req, lng, 'f', 6, 64)
		req = append(req, "&status=available&limit=5 HTTP/1.1\r\nHost: "...)
		req = append(req, host...)
		req = append(req, "\r\nAuthorization: Bearer "...)
		req = append(req, token...)
		req = append(req, "\r\n\r\n"...)
		if _, err := conn.Write(req); err != nil {
			return durs, errs, err
		}
		status, err := readResponse(br)
		if err != nil {
			return durs, errs, err
		}
		if now.Before(from) {
			continue
		}
		durs = append(durs, time.Since(now))
		if status != 200 {
			errs++
		}
	}
	return durs, errs, nil
}

// readResponse reads one HTTP/1.1 response with a Content-Length body and
// returns its status.
func readResponse(br *bufio.Reader) (int, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.1 ")) {
		return 0, fmt.Errorf("bad status line %q", line)
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, fmt.Errorf("bad status line %q", line)
	}
	length := -1
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		if len(line) <= 2 {
			break
		}
		if k, v, ok := bytes.Cut(line, []byte(":")); ok && bytes.EqualFold(k, []byte("Content-Length")) {
			if length, err = strconv.Atoi(string(bytes.TrimSpace(v))); err != nil {
				return 0, fmt.Errorf("bad Content-Length %q", v)
			}
		}
	}
	if length < 0 {
		return 0, errors.New("response without Content-Length")
	}
	_, err = br.Discard(length)
	if err == nil && status == 200 && length < 20 {
		return status, io.ErrUnexpectedEOF // an empty answer means the fleet is not there
	}
	return status, err
}
