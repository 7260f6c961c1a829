// Command loadgen measures Tawsil's ingest end to end over a real MQTT
// broker: it provisions couriers through the HTTP API, runs simulated
// devices (one MQTT connection each, QoS1, moving fixes in Casablanca),
// measures the broker-only ceiling with a bare subscriber, checks that every
// acknowledged fix was stored, and times publish→queryable.
//
//	loadgen provision -api http://127.0.0.1:8080 -n 200 -out creds.json
//	loadgen ceiling   -broker tcp://127.0.0.1:1883 -creds creds.json -publishers 50
//	loadgen ingest    -broker tcp://127.0.0.1:1883 -api http://127.0.0.1:8080 -creds creds.json -publishers 50 -probes 4
//	loadgen bench     (ceiling, then ingest with the same traffic, then the ratio)
//
// Admin credentials come from -admin-email or TAWSIL_ADMIN_EMAIL and from
// TAWSIL_ADMIN_PASSWORD (never a flag: it would show in ps).
// Everything stops by itself: each publisher sends at most -messages
// messages and runs at most -duration.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

// errUsage means the command line was wrong (the usage was printed).
var errUsage = errors.New("usage: loadgen provision|ceiling|ingest|bench [flags]")

// config is every flag of every mode.
type config struct {
	API           string
	Broker        string
	Creds         string
	Out           string
	AdminEmail    string
	AdminPassword string
	Couriers      int
	Sources       int
	Workers       int
	Publishers    int
	Probes        int
	Load          loadOptions
	CeilingPrefix string
	Probe         probeOptions
	Stall         time.Duration
	CPUProfile    string
	Verify        bool
	CPU           cpuMeter
	Rounds        int
}

func parse(mode string, args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	c := config{
		AdminEmail:    getenv("TAWSIL_ADMIN_EMAIL"),
		AdminPassword: getenv("TAWSIL_ADMIN_PASSWORD"),
		Load:          loadOptions{Prefix: "tawsil/v1", Batch: 10, Messages: 2000, Duration: 30 * time.Second, Window: 16},
		Probe:         probeOptions{Every: time.Second, Poll: 5 * time.Millisecond, Timeout: 10 * time.Second},
	}
	fs := flag.NewFlagSet("loadgen "+mode, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.API, "api", "http://127.0.0.1:8080", "backend HTTP base URL")
	fs.StringVar(&c.Broker, "broker", "tcp://127.0.0.1:1883", "MQTT broker URL")
	fs.StringVar(&c.Creds, "creds", "", "credentials file (fleet-credentials.json format)")
	fs.StringVar(&c.Out, "out", "loadgen-credentials.json", "provision: where to write the credentials")
	fs.StringVar(&c.AdminEmail, "admin-email", c.AdminEmail, "admin login (default $TAWSIL_ADMIN_EMAIL; password from $TAWSIL_ADMIN_PASSWORD)")
	fs.IntVar(&c.Couriers, "n", 100, "provision: couriers to create")
	fs.IntVar(&c.Sources, "sources", 0, "provision: spread courier logins over this many loopback source addresses 127.0.0.2… (0: about one per 25 couriers)")
	fs.IntVar(&c.Workers, "workers", 4, "provision: concurrent requests")
	fs.IntVar(&c.Publishers, "publishers", 50, "simulated devices publishing load (the first of -creds)")
	fs.IntVar(&c.Probes, "probes", 0, "ingest: latency probe devices (the next of -creds), one fix per -probe-every")
	fs.StringVar(&c.Load.Prefix, "prefix", c.Load.Prefix, "topic prefix of the ingest run")
	fs.StringVar(&c.CeilingPrefix, "ceiling-prefix", "loadgen-ceiling/v1", "topic prefix of the ceiling run (one the backend does not subscribe to)")
	fs.Float64Var(&c.Load.Rate, "rate", 0, "messages per second per publisher (0: as fast as -window allows)")
	fs.IntVar(&c.Load.Batch, "batch", c.Load.Batch, "fixes per message")
	fs.IntVar(&c.Load.Messages, "messages", c.Load.Messages, "messages per publisher (count bound)")
	fs.DurationVar(&c.Load.Duration, "duration", c.Load.Duration, "time bound of a run")
	fs.IntVar(&c.Load.Window, "window", c.Load.Window, "QoS1 publishes in flight per connection")
	fs.DurationVar(&c.Probe.Every, "probe-every", c.Probe.Every, "time between a probe's fixes (at least 1s)")
	fs.DurationVar(&c.Probe.Poll, "probe-poll", c.Probe.Poll, "query interval while waiting for a probe fix")
	fs.DurationVar(&c.Stall, "stall", 60*time.Second, "give up waiting for storage after this long without progress")
	fs.IntVar(&c.Rounds, "rounds", 1, "bench: ceiling then ingest this many times; the round of median ratio is reported")
	fs.BoolVar(&c.Verify, "verify", true, "ingest: compare acknowledged and stored fixes per courier")
	fs.StringVar(&c.CPUProfile, "cpuprofile", "", "write loadgen's own CPU profile here")
	cpuPids := fs.String("cpu", "", "ceiling, ingest: report the CPU time these processes (name=pid,name=pid) used per fix, from /proc")
	fs.StringVar(&c.CPU.pgDB, "cpu-pg", "", "ceiling, ingest: also the CPU time of the PostgreSQL backends serving this database")
	if err := fs.Parse(args); err != nil {
		return c, errUsage
	}
	c.Load.Broker = c.Broker
	var err error
	if c.CPU.pids, err = parseCPUFlag(*cpuPids); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("%w: unexpected %q", errUsage, fs.Arg(0))
	}
	if c.Probe.Every < time.Second {
		return c, errors.New("-probe-every must be at least 1s: the API shows device time in whole seconds")
	}
	if c.Probe.Poll <= 0 {
		return c, errors.New("-probe-poll must be positive")
	}
	if c.Rounds < 1 {
		return c, errors.New("-rounds must be at least 1")
	}
	return c, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) == 0 {
		return errUsage
	}
	mode := args[0]
	c, err := parse(mode, args[1:], getenv, stderr)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if c.CPUProfile != "" {
		f, err := os.Create(c.CPUProfile)
		if err != nil {
			return fmt.Errorf("cpuprofile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	switch mode {
	case "provision":
		return runProvision(ctx, c, stdout, log)
	case "ceiling":
		_, err := ceilingMode(ctx, c, stdout, log)
		return err
	case "ingest":
		_, err := ingestMode(ctx, c, stdout, log)
		return err
	case "bench":
		return benchMode(ctx, c, stdout, log)
	}
	return fmt.Errorf("%w: unknown mode %q", errUsage, mode)
}

func runProvision(ctx context.Context, c config, stdout io.Writer, log *slog.Logger) error {
	if c.AdminEmail == "" || c.AdminPassword == "" {
		return errors.New("provision: set TAWSIL_ADMIN_EMAIL (or -admin-email) and TAWSIL_ADMIN_PASSWORD")
	}
	n := c.Sources
	if n == 0 {
		n = (c.Couriers + 24) / 25
	}
	var sources []string
	for i := range min(n, 250) {
		sources = append(sources, fmt.Sprintf("127.0.0.%d", i+2))
	}
	if !strings.Contains(c.API, "127.0.0.1") && !strings.Contains(c.API, "localhost") {
		sources = nil // other addresses are only for loopback runs
	}
	start := time.Now()
	creds, err := provision(ctx, provisionOptions{BaseURL: c.API, AdminEmail: c.AdminEmail, AdminPassword: c.AdminPassword,
		Couriers: c.Couriers, Prefix: fmt.Sprintf("lg%d-", start.Unix()), Password: "loadgen-courier-pw-2026",
		Workers: c.Workers, Sources: sources}, log)
	if err != nil {
		return err
	}
	if err := writeCredentials(c.Out, creds); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "provisioned %d couriers (on shift, device credentials) in %.1fs -> %s\n",
		len(creds), time.Since(start).Seconds(), c.Out)
	return nil
}

// split returns the load publishers and the probes from the credentials.
func split(c config) (load, probes []Credential, err error) {
	if c.Creds == "" {
		return nil, nil, errors.New("-creds is required")
	}
	creds, err := readCredentials(c.Creds)
	if err != nil {
		return nil, nil, err
	}
	if c.Publishers < 1 || c.Publishers+c.Probes > len(creds) {
		return nil, nil, fmt.Errorf("-publishers %d and -probes %d need %d credentials; %s has %d",
			c.Publishers, c.Probes, c.Publishers+c.Probes, c.Creds, len(creds))
	}
	return creds[:c.Publishers], creds[c.Publishers : c.Publishers+c.Probes], nil
}

func ceilingMode(ctx context.Context, c config, stdout io.Writer, log *slog.Logger) (ceilingResult, error) {
	load, _, err := split(c)
	if err != nil {
		return ceilingResult{}, err
	}
	o := c.Load
	o.Prefix = c.CeilingPrefix
	o.SeqBase = uint64(time.Now().UnixMicro())
	sub := Credential{ClientID: fmt.Sprintf("loadgen-ceiling-%d", os.Getpid()), Username: "loadgen-ceiling"}
	res, err := runCeiling(ctx, load, o, sub, c.Stall, c.CPU, log)
	if err != nil {
		return res, err
	}
	f := res.Fleet
	fmt.Fprintf(stdout, "ceiling: %d publishers x %d msgs x %d fixes/msg, window %d, rate %s, topic %s/couriers/+/pos, one QoS1 subscriber\n",
		len(load), o.Messages, o.Batch, o.Window, rateText(o.Rate), o.Prefix)
	fmt.Fprintf(stdout, "ceiling: published %d msgs / %d fixes (%d failed), %.1f bytes/fix, publish %.0f fixes/s\n",
		f.Messages, f.Fixes, f.Failed, float64(f.Bytes)/float64(max(f.Fixes, 1)), f.rate())
	fmt.Fprintf(stdout, "ceiling: received %d of %d fixes (%d msgs, %d malformed), complete=%t\n",
		res.Received, f.Fixes, res.Messages, res.Bad, res.Complete)
	fmt.Fprintf(stdout, "ceiling: broker-only throughput %.0f fixes/s (%.0f msgs/s), first publish to last delivery\n",
		res.FixesPerS, res.MessagesPS)
	fmt.Fprintf(stdout, "ceiling: publish->delivered (bare subscriber, 1 message in %d): n=%d p50=%s p99=%s max=%s\n",
		sampleEvery, len(res.Delays), ms(quantile(res.Delays, 0.5)), ms(quantile(res.Delays, 0.99)), ms(quantile(res.Delays, 1)))
	if c.CPU.enabled() {
		fmt.Fprintf(stdout, "ceiling: cpu %s, first publish to last delivery\n", res.CPU.perKFix(res.Received))
	}
	return res, nil
}

func rateText(r float64) string {
	if r == 0 {
		return "unpaced"
	}
	return fmt.Sprintf("%.1f msg/s per publisher", r)
}

// ingestResult is the end-to-end figure.
type ingestResult struct {
	Fleet     fleetResult
	StoredAt  time.Time
	FixesPerS float64
	Loss      lossReport
	Latency   []time.Duration
	Unseen    int
	Verified  bool
	CPU       cpuUse
}

func ingestMode(ctx context.Context, c config, stdout io.Writer, log *slog.Logger) (ingestResult, error) {
	load, probes, err := split(c)
	if err != nil {
		return ingestResult{}, err
	}
	if c.AdminEmail == "" || c.AdminPassword == "" {
		return ingestResult{}, errors.New("ingest: set TAWSIL_ADMIN_EMAIL (or -admin-email) and TAWSIL_ADMIN_PASSWORD")
	}
	a := newAPI(c.API, "")
	token, err := a.login(ctx, c.AdminEmail, c.AdminPassword)
	if err != nil {
		return ingestResult{}, fmt.Errorf("admin login: %w", err)
	}
	before, err := a.metrics(ctx, "tawsil_history_written_total")
	if err != nil {
		return ingestResult{}, err
	}
	o := c.Load
	o.SeqBase = uint64(time.Now().UnixMicro())
	from := time.Now().Add(-time.Second)

	pctx, stopProbes := context.WithCancel(ctx)
	defer stopProbes()
	var lat latencies
	probeSent := make([]sent, len(probes))
	probeErr := make(chan error, len(probes))
	for i, p := range probes {
		go func() {
			s, err := runProbe(pctx, a, token, o.Broker, o.Prefix, p, o.SeqBase, c.Probe, &lat, log)
			probeSent[i] = s
			probeErr <- err
		}()
	}
	cpu0 := c.CPU.sample()
	fleet, ferr := runFleet(ctx, load, o, log)
	if ferr != nil {
		return ingestResult{}, ferr
	}
	// Probes go on while the backend drains what the fleet sent: their
	// latency is the one a dispatcher sees under this load.
	storedAt, written, werr := waitStored(ctx, a, before["tawsil_history_written_total"], fleet.Fixes, c.Stall)
	cpuUsed := cpu0.until(c.CPU.sample())
	stopProbes()
	var errs []error
	for range probes {
		errs = append(errs, <-probeErr)
	}
	if err := errors.Join(errs...); err != nil {
		return ingestResult{}, err
	}
	res := ingestResult{Fleet: fleet, CPU: cpuUsed}
	want := fleet.Fixes
	for _, s := range probeSent {
		want += s.Acked
	}
	if werr == nil && want > fleet.Fixes {
		_, written, werr = waitStored(ctx, a, before["tawsil_history_written_total"], want, c.Stall)
	}
	res.StoredAt = storedAt
	if d := storedAt.Sub(fleet.Start).Seconds(); d > 0 && werr == nil {
		res.FixesPerS = float64(want) / d
	}
	fmt.Fprintf(stdout, "ingest: %d publishers x %d msgs x %d fixes/msg, window %d, rate %s, + %d latency probes at 1 fix/%s\n",
		len(load), o.Messages, o.Batch, o.Window, rateText(o.Rate), len(probes), c.Probe.Every)
	fmt.Fprintf(stdout, "ingest: published %d msgs / %d fixes (%d failed) in %.2fs, publish %.0f fixes/s\n",
		fleet.Messages, fleet.Fixes, fleet.Failed, fleet.End.Sub(fleet.Start).Seconds(), fleet.rate())
	if werr != nil {
		fmt.Fprintf(stdout, "ingest: NOT ALL STORED: %v\n", werr)
	} else {
		fmt.Fprintf(stdout, "ingest: %d fixes stored (history_written +%.0f) %.2fs after the first publish: %.0f fixes/s published-to-stored\n",
			want, written, storedAt.Sub(fleet.Start).Seconds(), res.FixesPerS)
	}
	if c.CPU.enabled() && werr == nil {
		fmt.Fprintf(stdout, "ingest: cpu %s, first publish to stored\n", res.CPU.perKFix(fleet.Fixes))
	}
	const (
		rejections = "tawsil_ingest_rejections_total"
		outOfOrder = `tawsil_ingest_fixes_total{outcome="out_of_order"}`
		flushSum   = "tawsil_history_flush_seconds_sum"
		flushCount = "tawsil_history_flush_seconds_count"
	)
	if m, err := a.metrics(ctx, rejections, outOfOrder, flushSum, flushCount); err == nil {
		fmt.Fprintf(stdout, "ingest: backend since start: %.0f rejected, %.0f out of order (stored, live position kept); history: %.0f flushes, %.1f ms mean, %.1f s busy in total\n",
			m[rejections], m[outOfOrder], m[flushCount], 1000*m[flushSum]/max(m[flushCount], 1), m[flushSum])
	}
	if c.Verify {
		all := fleetResult{PerCourier: append(append([]sent{}, fleet.PerCourier...), probeSent...)}
		loss, err := verify(ctx, a, token, all, from, log)
		if err != nil {
			return res, err
		}
		res.Loss, res.Verified = loss, true
		verdict := "ZERO LOSS"
		if !loss.zeroLoss() {
			verdict = "LOSS"
		}
		fmt.Fprintf(stdout, "ingest: %s: %d couriers, %d fixes acknowledged by the broker, %d stored (GET /v1/couriers/{id}/track), %d missing, %d couriers with a max-seq mismatch, %d stored but never acknowledged\n",
			verdict, loss.Couriers, loss.Sent, loss.Stored, loss.Missing, len(loss.BadCouriers), loss.Unknown)
	}
	lat.mu.Lock()
	res.Latency, res.Unseen = lat.samples, lat.unseen
	lat.mu.Unlock()
	if len(probes) > 0 {
		fmt.Fprintf(stdout, "ingest: publish->queryable (GET /v1/couriers?near=, polled every %s): n=%d p50=%s p99=%s max=%s unseen=%d\n",
			c.Probe.Poll, len(res.Latency), ms(quantile(res.Latency, 0.5)), ms(quantile(res.Latency, 0.99)),
			ms(quantile(res.Latency, 1)), res.Unseen)
	}
	if werr != nil {
		return res, werr
	}
	if res.Verified && !res.Loss.zeroLoss() {
		return res, fmt.Errorf("ingest: %d acknowledged fixes not stored", res.Loss.Missing)
	}
	return res, nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond)) }

func benchMode(ctx context.Context, c config, stdout io.Writer, log *slog.Logger) error {
	if c.Rounds == 1 {
		_, err := benchRound(ctx, c, stdout, log)
		return err
	}
	// Each figure is a few seconds of a machine others share: the ceiling
	// and the ingest run of one round can meet different neighbours. Rounds
	// alternate the two, every round's lines are shown (prefixed), and the
	// round of median throughput ratio is printed again whole, unprefixed:
	// its figures, not a mix of rounds'.
	var rounds []benchResult
	for r := range c.Rounds {
		var out strings.Builder
		w := &linePrefixer{w: stdout, prefix: fmt.Sprintf("round %d/%d: ", r+1, c.Rounds)}
		res, err := benchRound(ctx, c, io.MultiWriter(w, &out), log)
		w.flush()
		if err != nil {
			return fmt.Errorf("round %d: %w", r+1, err)
		}
		res.out = out.String()
		rounds = append(rounds, res)
	}
	byRatio := slices.Clone(rounds)
	slices.SortStableFunc(byRatio, func(a, b benchResult) int { return cmp.Compare(a.ratio, b.ratio) })
	med := byRatio[(len(byRatio)-1)/2]
	fmt.Fprint(stdout, med.out)
	var ratios, cpus []string
	for _, r := range rounds {
		ratios = append(ratios, fmt.Sprintf("%.1f %%", r.ratio))
		cpus = append(cpus, fmt.Sprintf("%.1f %%", r.cpuRatio))
	}
	fmt.Fprintf(stdout, "ratio: rounds (ceiling then ingest, in turn): throughput %s; cpu per fix %s; above: the round of median throughput ratio\n",
		strings.Join(ratios, ", "), strings.Join(cpus, ", "))
	return nil
}

// benchResult is one round of bench: its ratios and what it printed.
type benchResult struct {
	ratio, cpuRatio float64
	out             string
}

// benchRound runs the ceiling, then the same traffic end to end, and prints
// their ratios.
func benchRound(ctx context.Context, c config, stdout io.Writer, log *slog.Logger) (benchResult, error) {
	var res benchResult
	ceil, err := ceilingMode(ctx, c, stdout, log)
	if err != nil {
		return res, err
	}
	ing, ierr := ingestMode(ctx, c, stdout, log)
	if ing.FixesPerS > 0 && ceil.FixesPerS > 0 {
		res.ratio = 100 * ing.FixesPerS / ceil.FixesPerS
		fmt.Fprintf(stdout, "ratio: ingest %.0f / broker-only %.0f fixes/s = %.1f %%\n",
			ing.FixesPerS, ceil.FixesPerS, res.ratio)
	}
	if c.CPU.enabled() && ing.CPU.total > 0 && ceil.CPU.total > 0 && ceil.Received > 0 {
		ic, cc := ing.CPU.total/float64(ing.Fleet.Fixes), ceil.CPU.total/float64(ceil.Received)
		res.cpuRatio = 100 * cc / ic
		fmt.Fprintf(stdout, "ratio: cpu per fix, broker-only / ingest = %.2f / %.2f CPU ms per 1000 fixes = %.1f %%\n",
			1e6*cc, 1e6*ic, res.cpuRatio)
	}
	return res, ierr
}

// linePrefixer writes each line with a prefix, as the lines come.
type linePrefixer struct {
	w      io.Writer
	prefix string
	part   []byte
}

func (l *linePrefixer) Write(p []byte) (int, error) {
	for _, b := range p {
		if len(l.part) == 0 {
			l.part = append(l.part, l.prefix...)
		}
		l.part = append(l.part, b)
		if b == '\n' {
			if _, err := l.w.Write(l.part); err != nil {
				return 0, err
			}
			l.part = l.part[:0]
		}
	}
	return len(p), nil
}

// flush writes an unfinished last line.
func (l *linePrefixer) flush() {
	if len(l.part) > 0 {
		_, _ = l.w.Write(append(l.part, '\n'))
		l.part = l.part[:0]
	}
}
