package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tawsil/tawsil/backend/internal/area"
	"github.com/tawsil/tawsil/backend/internal/dispatch"
	"github.com/tawsil/tawsil/backend/internal/eta"
)

func smallDay(tb testing.TB, cfg Config) (world, *eta.Model, *dispatch.Dispatcher) {
	tb.Helper()
	areas, err := area.New(area.Default())
	if err != nil {
		tb.Fatal(err)
	}
	model, err := eta.New(eta.Default(), nil)
	if err != nil {
		tb.Fatal(err)
	}
	d, err := dispatch.New(dispatch.Default(), model)
	if err != nil {
		tb.Fatal(err)
	}
	w, err := generate(cfg, areas, eta.Casablanca())
	if err != nil {
		tb.Fatal(err)
	}
	return w, model, d
}

func TestGenerateDay(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Orders, cfg.Couriers = 2000, 10
	w, _, _ := smallDay(t, cfg)
	var fails, lunch, evening, afternoon int
	for _, o := range w.orders {
		if o.fails {
			fails++
		}
		switch h := o.bookedAt.Hour(); {
		case h == 12 || h == 13:
			lunch++
		case h == 20 || h == 21:
			evening++
		case h == 16 || h == 17:
			afternoon++
		}
		if !o.promiseBy.Equal(o.bookedAt.Add(time.Hour)) {
			t.Fatalf("promise %v for booking %v", o.promiseBy, o.bookedAt)
		}
	}
	if len(w.orders) != 2000 || len(w.starts) != 10 {
		t.Fatalf("%d orders %d couriers", len(w.orders), len(w.starts))
	}
	if fails < 100 || fails > 180 {
		t.Errorf("%d failing orders of 2000, want about 7%%", fails)
	}
	if lunch < 2*afternoon || evening < 2*afternoon {
		t.Errorf("no peaks: lunch %d evening %d afternoon %d (two-hour windows)", lunch, evening, afternoon)
	}
}

func TestSimulateAccountsForEveryOrder(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Orders, cfg.Couriers, cfg.Stores = 400, 25, 8
	w, model, d := smallDay(t, cfg)
	ours := simulate(cfg, w, model, d.Config(), scored{cfg: cfg, d: d, wait: 3 * time.Minute})
	base := simulate(cfg, w, model, d.Config(), nearestIdle{})
	for _, r := range []Result{ours, base} {
		if r.Delivered+r.Returned+r.Undelivered != r.Orders || r.Orders != 400 {
			t.Errorf("%s: %d delivered + %d returned + %d unfinished != %d", r.Strategy, r.Delivered, r.Returned, r.Undelivered, r.Orders)
		}
		if r.OnTime > r.Delivered || r.Km <= 0 || r.Utilisation <= 0 || r.Utilisation > 1 {
			t.Errorf("%s: implausible %+v", r.Strategy, r)
		}
	}
	if ours.OnTime < base.OnTime {
		t.Errorf("on time: ours %d < baseline %d", ours.OnTime, base.OnTime)
	}
	if ours.CostMAD/float64(ours.Delivered) > base.CostMAD/float64(base.Delivered) {
		t.Errorf("cost per order: ours %.2f > baseline %.2f", ours.CostMAD/float64(ours.Delivered), base.CostMAD/float64(base.Delivered))
	}
}

func TestRunPrintsTable(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-orders", "200", "-couriers", "15", "-stores", "5"}, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"tawsil dispatch", "nearest idle (baseline)", "on-time %", "MAD/order"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if err := run(context.Background(), []string{"-orders", "0"}, &out); err == nil {
		t.Error("zero orders accepted")
	}
}
