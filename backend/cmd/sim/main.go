// Command sim plays a day of Casablanca deliveries through the server's own
// order core (internal/core) and, in the same run and on the same bookings,
// through a plain nearest-idle-courier baseline, and prints on-time rate,
// cost per order, courier utilisation and what became of failed attempts
// for both.
//
// The simulator is a shell around core.Step, as the server's delivery
// service is: every change of an order (booking, offer and answer, pick-up,
// delivery, failure report with its GPS evidence, the rules' decision,
// timers, a customer's reply, a dispatcher's action) is a step of the core,
// with a virtual clock and the core's timers in a heap; routes are planned
// as the server plans them (core.PlanInput, the real planner). What the
// simulator adds is only the world: couriers move at the eta model's speeds
// with log-normal noise per leg; offered couriers accept; the same bookings
// fail at the same drop-offs, for the same reasons, in both runs (see
// FailureProfile); a contact window's customer answers with -reply-rate; a
// dispatcher assigns an order the core flagged (nobody could take it) to
// the nearest courier with a free place two minutes later. Tawsil's run
// uses the core's offer rounds over the dispatch ranking; the baseline's
// dispatcher assigns each order to the nearest idle courier instead. The
// failure rules are the built-in ones unless -rules names a file; relay
// points are the backend's list, embedded.
//
//	go run ./backend/cmd/sim -orders 4000 -couriers 220
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"text/tabwriter"

	"github.com/tawsil/tawsil/backend/internal/area"
	"github.com/tawsil/tawsil/backend/internal/dispatch"
	"github.com/tawsil/tawsil/backend/internal/eta"
	"github.com/tawsil/tawsil/backend/internal/failure"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	err := run(ctx, os.Args[1:], os.Stdout, log)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "sim:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer, log *slog.Logger) error {
	cfg := DefaultConfig()
	var rulesPath, relaysPath string
	fs := flag.NewFlagSet("sim", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "random seed")
	fs.IntVar(&cfg.Orders, "orders", cfg.Orders, "bookings in the day")
	fs.IntVar(&cfg.Couriers, "couriers", cfg.Couriers, "couriers on shift")
	fs.IntVar(&cfg.Stores, "stores", cfg.Stores, "pick-up points (dark stores, restaurants)")
	fs.Float64Var(&cfg.FailRate, "fail", cfg.FailRate, "share of first drop-off attempts that fail")
	fs.Float64Var(&cfg.Failures.RetrySuccess, "retry-ok", cfg.Failures.RetrySuccess, "chance that an attempt after a failed one succeeds")
	fs.Float64Var(&cfg.Failures.ReplyRate, "reply-rate", cfg.Failures.ReplyRate, "chance that a contact_customer window reaches the customer (else the rule's then applies)")
	fs.Float64Var(&cfg.Failures.CODShare, "cod", cfg.Failures.CODShare, "share of orders paid cash on delivery")
	fs.StringVar(&rulesPath, "rules", "", "failed-delivery rules YAML (default: the built-in rules)")
	fs.StringVar(&relaysPath, "relays", "", "relay points YAML (default: the backend's list, embedded)")
	fs.Float64Var(&cfg.CostPerHour, "cost-hour", cfg.CostPerHour, "MAD per courier shift hour")
	fs.Float64Var(&cfg.CostPerKm, "cost-km", cfg.CostPerKm, "MAD per km")
	fs.Float64Var(&cfg.Noise, "noise", cfg.Noise, "sd of log(actual/predicted) leg time")
	dcfg := dispatch.Default()
	fs.DurationVar(&dcfg.Margin, "margin", dcfg.Margin, "dispatch: promise safety margin")
	fs.DurationVar(&dcfg.MarginPerStop, "margin-per-stop", dcfg.MarginPerStop, "dispatch: extra margin per stop ahead")
	fs.Float64Var(&dcfg.Weights.DeliveryMin, "w-delivery", dcfg.Weights.DeliveryMin, "dispatch: weight per minute to the new handover")
	fs.Float64Var(&dcfg.Weights.Load, "w-load", dcfg.Weights.Load, "dispatch: weight per carried order")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	rules := failure.Default()
	if rulesPath != "" {
		rs, err := failure.Load(rulesPath)
		if err != nil {
			return err
		}
		rules = rs
	}
	relayYAML := relayPointsYAML
	if relaysPath != "" {
		b, err := os.ReadFile(relaysPath)
		if err != nil {
			return fmt.Errorf("relay points: %w", err)
		}
		relayYAML = b
	}
	relays, err := failure.ParseRelayPoints(relayYAML)
	if err != nil {
		return err
	}
	areas, err := area.New(area.Default())
	if err != nil {
		return err
	}
	model, err := eta.New(eta.Default(), log)
	if err != nil {
		return err
	}
	d, err := dispatch.New(dcfg, model)
	if err != nil {
		return err
	}
	w, err := generate(cfg, areas, eta.Casablanca())
	if err != nil {
		return err
	}
	g := newRig(cfg, model, d, failure.NewEngine(rules, log), cityRelays(relays, areas, "casablanca"), log)
	strategies := []Strategy{tawsil{}, nearestIdle{}}
	var results []Result
	for _, st := range strategies {
		r, err := simulate(ctx, g, w, st)
		if err != nil {
			return fmt.Errorf("%s: %w", st.Name(), err)
		}
		results = append(results, r)
	}
	printTable(out, cfg, len(g.relays), results)
	return nil
}

func pct(n, of int) float64 { return 100 * float64(n) / float64(max(of, 1)) }

func printTable(out io.Writer, cfg Config, relays int, rs []Result) {
	fp := cfg.Failures
	fmt.Fprintf(out, "Casablanca day: %d orders, %d couriers, %d stores, first-attempt failure %.0f%%, seed %d\n",
		cfg.Orders, cfg.Couriers, cfg.Stores, cfg.FailRate*100, cfg.Seed)
	fmt.Fprintf(out, "cost: %.2f MAD/courier-hour, %.2f MAD/km\n", cfg.CostPerHour, cfg.CostPerKm)
	fmt.Fprintf(out, "failures: COD %.0f%% of orders, retry success %.0f%%, %d relay points in the city; reasons (COD orders) %s; policies %s\n\n",
		100*fp.CODShare, 100*fp.RetrySuccess, relays, mix(fp.Reasons), mix(fp.Policies))
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "strategy\ton-time %\tdelivered\treturned\tcancelled\tfailed att.\tlate after fail\tunfinished\tmedian min\tp90 min\tmax wait min\tkm\tkm/order\tMAD/order\tutilisation %\t")
	for _, r := range rs {
		fmt.Fprintf(tw, "%s\t%.1f\t%d\t%d\t%d\t%d\t%d\t%d\t%.1f\t%.1f\t%.1f\t%.0f\t%.2f\t%.2f\t%.1f\t\n",
			r.Strategy, pct(r.OnTime, r.Orders), r.Delivered, r.Returned, r.Cancelled, r.FailedAttempts, r.LateAfterFailure, r.Undelivered,
			r.MedianMin, r.P90Min, r.MaxWaitMin, r.Km, r.Km/float64(max(r.Delivered, 1)), r.CostMAD/float64(max(r.Delivered, 1)), 100*r.Utilisation)
	}
	tw.Flush()
	fmt.Fprintln(out, "\nAfter failed attempts (decided by the failure rules, routes re-planned by the routing planner):")
	tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := "strategy\tfailed orders\tfailed att."
	for _, a := range failure.Actions() {
		head += "\t" + string(a)
	}
	fmt.Fprintln(tw, head+"\tdispatcher_review\tdelivered\tin promise\tin promise %\tvia relay\treturned\tcancelled\treplans\t")
	for _, r := range rs {
		row := fmt.Sprintf("%s\t%d\t%d", r.Strategy, r.FailedOrders, r.FailedAttempts)
		for _, a := range failure.Actions() {
			row += fmt.Sprintf("\t%d", r.Decisions[a])
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.1f\t%d\t%d\t%d\t%d\t\n", row, r.Decisions[failure.DispatcherReview],
			r.FailedDelivered, r.FailedOnTime, pct(r.FailedOnTime, r.FailedOrders), r.Relayed, r.Returned, r.Cancelled, r.Replans)
	}
	tw.Flush()
	for _, r := range rs {
		fmt.Fprintf(out, "\n%s: %d orders went to the dispatcher (no courier could take them in time, or a rule asked for a human)", r.Strategy, r.Flagged)
	}
	fmt.Fprintln(out)
	fmt.Fprintln(out, "\non-time %: delivered (relay points included) within the hour, over all orders. MAD/order: (couriers x shift hours x hourly cost + km x km cost) / delivered.")
	fmt.Fprintln(out, "in promise: failed orders delivered within the hour after all; % over failed orders. Decisions count every failed attempt.")
}

// mix prints a weighted mix as "a 45%, b 13%".
func mix[T any](ws []Weighted[T]) string {
	sum := totalWeight(ws, nil)
	parts := make([]string, len(ws))
	for i, w := range ws {
		parts[i] = fmt.Sprintf("%v %.0f%%", w.Value, 100*w.Weight/sum)
	}
	return strings.Join(parts, ", ")
}
