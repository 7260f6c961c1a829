package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tawsil/tawsil/backend/internal/area"
	"github.com/tawsil/tawsil/backend/internal/dispatch"
	"github.com/tawsil/tawsil/backend/internal/eta"
	"github.com/tawsil/tawsil/backend/internal/failure"
)

// fixture is what a test run needs besides the day.
type fixture struct {
	areas *area.Areas
	model *eta.Model
	d     *dispatch.Dispatcher
	g     *rig
}

func newFixture(tb testing.TB, cfg Config, rules *failure.RuleSet) fixture {
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
	relays, err := failure.ParseRelayPoints(relayPointsYAML)
	if err != nil {
		tb.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	g := newRig(cfg, model, d, failure.NewEngine(rules, log), cityRelays(relays, areas, "casablanca"), log)
	return fixture{areas: areas, model: model, d: d, g: g}
}

func (f fixture) strategies() []Strategy {
	return []Strategy{tawsil{}, nearestIdle{}}
}

func mustGenerate(tb testing.TB, f fixture) world {
	tb.Helper()
	w, err := generate(f.g.cfg, f.areas, eta.Casablanca())
	if err != nil {
		tb.Fatal(err)
	}
	return w
}

func mustSimulate(tb testing.TB, f fixture, w world, st Strategy) Result {
	tb.Helper()
	r, err := simulate(context.Background(), f.g, w, st)
	if err != nil {
		tb.Fatalf("%s: %v", st.Name(), err)
	}
	return r
}

func outcome(tb testing.TB, r Result, id string) Outcome {
	tb.Helper()
	i := slices.IndexFunc(r.Outcomes, func(o Outcome) bool { return o.ID == id })
	if i < 0 {
		tb.Fatalf("%s: no outcome for %s", r.Strategy, id)
	}
	return r.Outcomes[i]
}

func TestGenerateDay(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Orders, cfg.Couriers = 4000, 10
	w := mustGenerate(t, newFixture(t, cfg, nil))
	var fails, cod, lunch, evening, afternoon int
	reasons := map[failure.Reason]int{}
	storePolicy := map[dispatch.Point]string{}
	for _, o := range w.orders {
		if o.failures > 0 {
			fails++
			reasons[o.reason]++
		}
		if o.cod {
			cod++
		}
		if o.reason == failure.CODNotAvailable && !o.cod {
			t.Errorf("%s: COD_NOT_AVAILABLE without cash on delivery", o.id)
		}
		if p, ok := storePolicy[o.store]; ok && p != o.policy {
			t.Errorf("%s: store policy %s, order has %s", o.id, p, o.policy)
		}
		storePolicy[o.store] = o.policy
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
	if len(w.orders) != 4000 || len(w.starts) != 10 {
		t.Fatalf("%d orders %d couriers", len(w.orders), len(w.starts))
	}
	if fails < 220 || fails > 340 {
		t.Errorf("%d failing orders of 4000, want about 7%%", fails)
	}
	if cod < 1450 || cod > 1750 {
		t.Errorf("%d COD orders of 4000, want about 40%%", cod)
	}
	if u := reasons[failure.CustomerUnavailable]; u < fails*4/10 || u > fails*7/10 {
		t.Errorf("%d of %d failures CUSTOMER_UNAVAILABLE, want about 54%%: %v", u, fails, reasons)
	}
	if lunch < 2*afternoon || evening < 2*afternoon {
		t.Errorf("no peaks: lunch %d evening %d afternoon %d (two-hour windows)", lunch, evening, afternoon)
	}
}

// oneOrderDay is a Maarif store, two couriers at its door and one order
// booked at booked, dropped 2 km away, with the given failure profile.
func oneOrderDay(booked time.Time, o simOrder) world {
	store := dispatch.Point{Lat: 33.5853, Lng: -7.6321}
	o.id, o.bookedAt, o.promiseBy = "o1", booked, booked.Add(time.Hour)
	o.store, o.dropoff = store, offset(store, 1500, 1300)
	if o.policy == "" {
		o.policy = "standard"
	}
	if o.size == "" {
		o.size = "S"
	}
	return world{
		orders: []simOrder{o},
		starts: []dispatch.Point{offset(store, 30, 0), offset(store, 0, 40)},
		open:   booked.Add(-time.Minute), close: booked,
	}
}

func TestFailedAttemptsFollowTheRules(t *testing.T) {
	noon := time.Date(2026, 5, 6, 12, 0, 0, 0, eta.Casablanca())
	lateNight := time.Date(2026, 5, 6, 23, 50, 0, 0, eta.Casablanca()) // every relay point closed at the attempt
	tests := []struct {
		name       string
		booked     time.Time
		give       simOrder
		wantRules  []string
		wantStatus Status
		wantOnTime bool
		wantAction failure.Action // of the first decision
	}{
		{"unavailable retried in the route", noon, simOrder{failures: 1, reason: failure.CustomerUnavailable},
			[]string{"unavailable-same-route"}, Delivered, true, failure.RetryLater},
		{"unavailable twice, next wave", noon, simOrder{failures: 2, reason: failure.CustomerUnavailable},
			[]string{"unavailable-same-route", "unavailable-next-wave"}, Delivered, false, failure.RetryLater},
		{"unavailable twice, relay", noon, simOrder{failures: 2, reason: failure.CustomerUnavailable, policy: "relay_ok"},
			[]string{"unavailable-same-route", "unavailable-relay"}, Relayed, true, failure.RetryLater},
		{"unavailable twice, strict return", noon, simOrder{failures: 2, reason: failure.CustomerUnavailable, policy: "strict_return"},
			[]string{"unavailable-same-route", "catch-all"}, Returned, false, failure.RetryLater},
		{"refused", noon, simOrder{failures: 1, reason: failure.CustomerRefused, cod: true},
			[]string{"refused"}, Returned, false, failure.ReturnToMerchant},
		{"address call", noon, simOrder{failures: 1, reason: failure.AddressNotFound},
			[]string{"address-call"}, Delivered, true, failure.ContactCustomer},
		{"no cash, back in 20 minutes", noon, simOrder{failures: 1, reason: failure.CODNotAvailable, cod: true},
			[]string{"cod-cash-soon"}, Delivered, true, failure.RetryLater},
		{"courier incident, reassigned", noon, simOrder{failures: 1, reason: failure.CourierIncident},
			[]string{"courier-incident"}, Delivered, true, failure.Reassign},
		{"unsafe, relay open", noon, simOrder{failures: 1, reason: failure.UnsafeLocation, policy: "relay_ok"},
			[]string{"unsafe-location-relay"}, Relayed, true, failure.RelayPoint},
		{"unsafe, relays closed", lateNight, simOrder{failures: 1, reason: failure.UnsafeLocation, policy: "relay_ok"},
			[]string{"unsafe-location-relay"}, Returned, false, failure.RelayPoint},
		// No reply in the window: the rule's then (return_to_merchant), as the server does.
		{"unsafe, large parcel", noon, simOrder{failures: 1, reason: failure.UnsafeLocation, policy: "relay_ok", size: "L"},
			[]string{"unsafe-location"}, Returned, false, failure.ContactCustomer},
	}
	cfg := DefaultConfig()
	cfg.Failures.ReplyRate = 0 // nobody answers a contact window
	f := newFixture(t, cfg, nil)
	for _, tt := range tests {
		for _, st := range f.strategies() {
			t.Run(tt.name+"/"+st.Name(), func(t *testing.T) {
				r := mustSimulate(t, f, oneOrderDay(tt.booked, tt.give), st)
				got := outcome(t, r, "o1")
				if !slices.Equal(got.Rules, tt.wantRules) || got.Status != tt.wantStatus || got.OnTime != tt.wantOnTime {
					t.Errorf("rules %v, %s, on time %v; want %v, %s, %v", got.Rules, got.Status, got.OnTime, tt.wantRules, tt.wantStatus, tt.wantOnTime)
				}
				if r.FailedAttempts != len(tt.wantRules) || r.FailedOrders != 1 {
					t.Errorf("%d failed attempts on %d orders, want %d on 1", r.FailedAttempts, r.FailedOrders, len(tt.wantRules))
				}
				if r.Decisions[tt.wantAction] < 1 {
					t.Errorf("decisions %v lack %s", r.Decisions, tt.wantAction)
				}
				if tt.wantStatus == Delivered && got.Attempts != tt.give.failures+1 {
					t.Errorf("delivered after %d attempts, want %d", got.Attempts, tt.give.failures+1)
				}
			})
		}
	}
}

func TestRulesEngineDecides(t *testing.T) {
	rs, err := failure.Parse([]byte(`
max_attempts: 3
final_action: cancel
rules:
  - name: cancel-everything
    action: cancel
`))
	if err != nil {
		t.Fatal(err)
	}
	noon := time.Date(2026, 5, 6, 12, 0, 0, 0, eta.Casablanca())
	w := oneOrderDay(noon, simOrder{failures: 1, reason: failure.CustomerUnavailable})
	f := newFixture(t, DefaultConfig(), rs)
	for _, st := range f.strategies() {
		r := mustSimulate(t, f, w, st)
		got := outcome(t, r, "o1")
		if got.Status != Cancelled || !slices.Equal(got.Rules, []string{"cancel-everything"}) {
			t.Errorf("%s: %s by %v, want cancelled by cancel-everything", st.Name(), got.Status, got.Rules)
		}
		if r.Cancelled != 1 || r.Decisions[failure.Cancel] != 1 || r.Delivered != 0 {
			t.Errorf("%s: cancelled %d, cancel decisions %d, delivered %d", st.Name(), r.Cancelled, r.Decisions[failure.Cancel], r.Delivered)
		}
	}
}

func TestContactWindowReached(t *testing.T) {
	// The customer is reached in the window: the retry is due at once and succeeds.
	cfg := DefaultConfig()
	cfg.Failures.ReplyRate = 1
	f := newFixture(t, cfg, nil)
	noon := time.Date(2026, 5, 6, 12, 0, 0, 0, eta.Casablanca())
	for _, st := range f.strategies() {
		r := mustSimulate(t, f, oneOrderDay(noon, simOrder{failures: 1, reason: failure.UnsafeLocation, policy: "relay_ok", size: "L"}), st)
		if got := outcome(t, r, "o1"); got.Status != Delivered || got.Attempts != 2 {
			t.Errorf("%s: %s after %d attempts, want delivered after 2", st.Name(), got.Status, got.Attempts)
		}
		if r.ContactClosed[failure.RetryLater] != 1 {
			t.Errorf("%s: windows closed %v", st.Name(), r.ContactClosed)
		}
	}
}

// A retry's not-before is the core's and holds in the world: the courier
// does not attempt the drop-off again before it.
func TestRetryWaitsForNotBefore(t *testing.T) {
	cfg := DefaultConfig()
	f := newFixture(t, cfg, rulesOf(t, `
max_attempts: 3
final_action: return_to_merchant
rules:
  - name: retry-in-40
    action: retry_later
    retry_after_minutes: 40
`))
	noon := time.Date(2026, 5, 6, 12, 0, 0, 0, eta.Casablanca())
	for _, st := range f.strategies() {
		r := mustSimulate(t, f, oneOrderDay(noon, simOrder{failures: 1, reason: failure.CustomerUnavailable}), st)
		got := outcome(t, r, "o1")
		if got.Status != Delivered || got.Attempts != 2 || !slices.Equal(got.Rules, []string{"retry-in-40"}) {
			t.Fatalf("%s: %s after %d attempts by %v", st.Name(), got.Status, got.Attempts, got.Rules)
		}
		// Booked at noon, a first attempt after some minutes' ride, then 40
		// minutes at least, plus the second visit's service.
		if min := 40*time.Minute + f.g.dcfg.DropoffService + reattemptCall; got.DoneAt.Sub(noon) < min {
			t.Errorf("%s: delivered %v after booking: the retry came before its not-before", st.Name(), got.DoneAt.Sub(noon))
		}
	}
}

// Nobody can take the order in time: the core flags it and the simulated
// dispatcher assigns it, as a dispatcher on the console would (no promise
// relaxed by the simulator).
func TestUnplaceableOrderGoesToTheDispatcher(t *testing.T) {
	cfg := DefaultConfig()
	f := newFixture(t, cfg, nil)
	noon := time.Date(2026, 5, 6, 12, 0, 0, 0, eta.Casablanca())
	w := oneOrderDay(noon, simOrder{})
	w.starts = []dispatch.Point{offset(w.orders[0].store, 30_000, 0)} // 30 km away: outside the search radius
	r := mustSimulate(t, f, w, tawsil{})
	if r.Flagged != 1 || outcome(t, r, "o1").Status != Delivered {
		t.Fatalf("flagged %d, %s", r.Flagged, outcome(t, r, "o1").Status)
	}
	if wait := r.MaxWaitMin; wait < dispatcherDelay.Minutes() {
		t.Errorf("assigned after %.1f min, before the dispatcher could act", wait)
	}
}

func rulesOf(tb testing.TB, yaml string) *failure.RuleSet {
	tb.Helper()
	rs, err := failure.Parse([]byte(yaml))
	if err != nil {
		tb.Fatal(err)
	}
	return rs
}

func TestSimulateAccountsForEveryOrder(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Orders, cfg.Couriers, cfg.Stores, cfg.FailRate = 400, 25, 8, 0.10
	f := newFixture(t, cfg, nil)
	w := mustGenerate(t, f)
	failing := map[string]bool{}
	for _, o := range w.orders {
		failing[o.id] = o.failures > 0
	}
	var rs []Result
	for _, st := range f.strategies() {
		r := mustSimulate(t, f, w, st)
		rs = append(rs, r)
		if r.Delivered+r.Returned+r.Cancelled+r.Undelivered != r.Orders || r.Orders != 400 {
			t.Errorf("%s: %d delivered + %d returned + %d cancelled + %d unfinished != %d",
				r.Strategy, r.Delivered, r.Returned, r.Cancelled, r.Undelivered, r.Orders)
		}
		if r.OnTime > r.Delivered || r.Km <= 0 || r.Utilisation <= 0 || r.Utilisation > 1 {
			t.Errorf("%s: implausible %+v", r.Strategy, r)
		}
		var decided int
		for _, n := range r.Decisions {
			decided += n
		}
		if decided != r.FailedAttempts || r.FailedAttempts < r.FailedOrders || r.FailedOrders < 20 {
			t.Errorf("%s: %d decisions, %d failed attempts, %d failed orders", r.Strategy, decided, r.FailedAttempts, r.FailedOrders)
		}
		if r.FailedOnTime > r.FailedDelivered || r.FailedDelivered > r.FailedOrders || r.FailedOnTime == 0 {
			t.Errorf("%s: failed orders %d, delivered %d, in promise %d", r.Strategy, r.FailedOrders, r.FailedDelivered, r.FailedOnTime)
		}
		for _, o := range r.Outcomes {
			if tried := o.Attempts > 0; tried && failing[o.ID] != (len(o.Rules) > 0) {
				t.Errorf("%s: %s failed %d times (%v), drawn to fail: %v", r.Strategy, o.ID, len(o.Rules), o.Rules, failing[o.ID])
			}
		}
	}
	ours, base := rs[0], rs[1]
	if ours.OnTime <= base.OnTime {
		t.Errorf("on time: ours %d <= baseline %d", ours.OnTime, base.OnTime)
	}
	if ours.CostMAD/float64(ours.Delivered) >= base.CostMAD/float64(base.Delivered) {
		t.Errorf("cost per order: ours %.2f >= baseline %.2f", ours.CostMAD/float64(ours.Delivered), base.CostMAD/float64(base.Delivered))
	}
}

func TestRelayPointsAreTheBackends(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "internal", "app", "relay_points.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, relayPointsYAML) {
		t.Error("relay_points.yaml differs from backend/internal/app/relay_points.yaml: copy it again")
	}
	f := newFixture(t, DefaultConfig(), nil)
	if len(f.g.relays) == 0 {
		t.Fatal("no relay point in casablanca")
	}
	for _, p := range f.g.relays {
		if !strings.HasPrefix(p.ID, "casa-") {
			t.Errorf("relay %s kept for casablanca", p.ID)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		give func(*Config)
		ok   bool
	}{
		{"default", func(*Config) {}, true},
		{"no orders", func(c *Config) { c.Orders = 0 }, false},
		{"fail rate above one", func(c *Config) { c.FailRate = 1.5 }, false},
		{"negative cod share", func(c *Config) { c.Failures.CODShare = -0.1 }, false},
		{"only cod reasons", func(c *Config) {
			c.Failures.Reasons = []Weighted[failure.Reason]{{failure.CODNotAvailable, 1}}
		}, false},
		{"negative weight", func(c *Config) { c.Failures.Sizes = []Weighted[string]{{"S", -1}, {"M", 2}} }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tt.give(&cfg)
			err := cfg.Validate()
			if (err == nil) != tt.ok || err != nil && !errors.Is(err, errConfig) {
				t.Errorf("Validate() = %v, want ok %v", err, tt.ok)
			}
		})
	}
}

func TestRunPrintsTable(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-orders", "200", "-couriers", "15", "-stores", "5", "-fail", "0.1"}, &out, log); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"tawsil dispatch", "nearest idle (baseline)", "on-time %", "MAD/order", "retry_later", "in promise %", "via relay"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	for _, args := range [][]string{{"-orders", "0"}, {"-fail", "2"}, {"-rules", filepath.Join(t.TempDir(), "missing.yaml")}} {
		if err := run(context.Background(), args, &out, log); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}

func BenchmarkSimulate(b *testing.B) {
	cfg := DefaultConfig()
	cfg.Orders, cfg.Couriers, cfg.Stores, cfg.FailRate = 400, 25, 8, 0.10
	f := newFixture(b, cfg, nil)
	w := mustGenerate(b, f)
	for _, st := range f.strategies() {
		b.Run(strings.Fields(st.Name())[0], func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				mustSimulate(b, f, w, st)
			}
		})
	}
}
