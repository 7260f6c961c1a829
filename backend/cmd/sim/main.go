// Command sim plays a day of Casablanca deliveries through Tawsil's real
// dispatch scoring and, in the same run and on the same bookings, through a
// plain nearest-idle-courier baseline, and prints on-time rate, cost per
// order and courier utilisation for both.
//
// Couriers move at the eta model's speeds (prior speed, road detour) with
// log-normal noise per leg, so predictions are not perfect. The same
// bookings fail at the same drop-offs in both runs; a failed attempt is
// either retried at the end of the route or brought back to the store.
//
//	go run ./backend/cmd/sim -orders 4000 -couriers 220
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"text/tabwriter"
	"time"

	"github.com/tawsil/tawsil/backend/internal/area"
	"github.com/tawsil/tawsil/backend/internal/dispatch"
	"github.com/tawsil/tawsil/backend/internal/eta"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "sim:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("sim", flag.ContinueOnError)
	fs.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "random seed")
	fs.IntVar(&cfg.Orders, "orders", cfg.Orders, "bookings in the day")
	fs.IntVar(&cfg.Couriers, "couriers", cfg.Couriers, "couriers on shift")
	fs.IntVar(&cfg.Stores, "stores", cfg.Stores, "pick-up points (dark stores, restaurants)")
	fs.Float64Var(&cfg.FailRate, "fail", cfg.FailRate, "share of first drop-off attempts that fail")
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
	if cfg.Orders < 1 || cfg.Couriers < 1 || cfg.Stores < 1 || cfg.FailRate < 0 || cfg.FailRate > 1 {
		return fmt.Errorf("orders, couriers, stores must be positive and fail in 0..1")
	}
	areas, err := area.New(area.Default())
	if err != nil {
		return err
	}
	model, err := eta.New(eta.Default(), nil)
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
	strategies := []Strategy{scored{cfg: cfg, d: d, wait: 3 * time.Minute}, nearestIdle{}}
	var results []Result
	for _, st := range strategies {
		if err := ctx.Err(); err != nil {
			return err
		}
		results = append(results, simulate(cfg, w, model, dcfg, st))
	}
	printTable(out, cfg, results)
	return nil
}

func printTable(out io.Writer, cfg Config, rs []Result) {
	fmt.Fprintf(out, "Casablanca day: %d orders, %d couriers, %d stores, first-attempt failure %.0f%%, seed %d\n",
		cfg.Orders, cfg.Couriers, cfg.Stores, cfg.FailRate*100, cfg.Seed)
	fmt.Fprintf(out, "cost: %.2f MAD/courier-hour, %.2f MAD/km\n\n", cfg.CostPerHour, cfg.CostPerKm)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "strategy\ton-time %\tdelivered\treturned\tfailed att.\tlate after fail\tunfinished\tmedian min\tp90 min\tmax wait min\tkm\tkm/order\tMAD/order\tutilisation %\t")
	for _, r := range rs {
		ontime := 100 * float64(r.OnTime) / float64(r.Orders)
		per := r.CostMAD / float64(max(r.Delivered, 1))
		fmt.Fprintf(tw, "%s\t%.1f\t%d\t%d\t%d\t%d\t%d\t%.1f\t%.1f\t%.1f\t%.0f\t%.2f\t%.2f\t%.1f\t\n",
			r.Strategy, ontime, r.Delivered, r.Returned, r.Failed, r.LateAfterFailure, r.Undelivered, r.MedianMin, r.P90Min, r.MaxWaitMin,
			r.Km, r.Km/float64(max(r.Delivered, 1)), per, 100*r.Utilisation)
	}
	tw.Flush()
	fmt.Fprintln(out, "\non-time %: delivered within the hour, over all orders. MAD/order: (couriers x shift hours x hourly cost + km x km cost) / delivered.")
}
