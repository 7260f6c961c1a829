package delivery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tawsil/tawsil/backend/internal/dispatch"
	"github.com/tawsil/tawsil/backend/internal/embedded/docstore"
	"github.com/tawsil/tawsil/backend/internal/eta"
	"github.com/tawsil/tawsil/backend/internal/failure"
	"github.com/tawsil/tawsil/backend/internal/livemap"
	"github.com/tawsil/tawsil/backend/internal/mongostore"
	"github.com/tawsil/tawsil/backend/internal/order"
	"github.com/tawsil/tawsil/backend/internal/routing"
	"github.com/tawsil/tawsil/shared/wire"
)

// The durable-state tests run the service over embedded FerretDB with a
// virtual clock: a "restart" is a new Service over the same store, and a
// timer's deadline is reached by moving the clock and calling FireDue.

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// tasks records what the service publishes to devices.
type tasks struct {
	mu  sync.Mutex
	got map[string][]wire.Task
}

func (b *tasks) Publish(_ context.Context, topic string, payload []byte, _ byte, _ bool) error {
	var t wire.Task
	if err := json.Unmarshal(payload, &t); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.got == nil {
		b.got = map[string][]wire.Task{}
	}
	b.got[topic] = append(b.got[topic], t)
	return nil
}

func (b *tasks) all() map[string][]wire.Task {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := map[string][]wire.Task{}
	for k, v := range b.got {
		out[k] = append([]wire.Task(nil), v...)
	}
	return out
}

type noDensity struct{}

func (noDensity) OrderOpened(string, float64, float64, time.Time)         {}
func (noDensity) OrderClosed(string)                                      {}
func (noDensity) Failed(float64, float64, time.Time)                      {}
func (noDensity) UnderSupplied(float64, float64, float64, time.Time) bool { return false }

const durableRules = `
max_attempts: 3
final_action: return_to_merchant
rules:
  - name: call-then-return
    match: {reasons: [CUSTOMER_UNAVAILABLE], verified: false}
    action: contact_customer
    reply_window_minutes: 20
    then: return_to_merchant
  - name: retry-in-an-hour
    match: {reasons: [ADDRESS_NOT_FOUND], verified: false}
    action: retry_later
    retry_after_minutes: 60
  - name: catch-all
    action: return_to_merchant
`

var (
	shop  = order.Place{Lat: 33.5890, Lng: -7.6200, Address: "shop"}
	custA = order.Place{Lat: 33.5790, Lng: -7.6300, Address: "A"}
	day   = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
)

type world struct {
	st    *mongostore.Store
	idx   *livemap.Index
	clock *clock
	bus   *tasks
}

func mustWorld(tb testing.TB) *world {
	tb.Helper()
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError}))
	srv, err := docstore.Start(ctx, docstore.Options{DataDir: tb.TempDir(), Logger: quiet})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(srv.Close)
	st, err := mongostore.Open(ctx, srv.URI(), "tawsil_test", quiet)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = st.Close(context.Background()) })
	return &world{st: st, clock: &clock{t: day}, bus: &tasks{}}
}

// courier puts a courier on shift at p in the live index (a fresh index per
// process, as after a restart the index is rebuilt from positions).
func (w *world) courier(tb testing.TB, id string, p order.Place) {
	tb.Helper()
	if _, err := w.idx.Update(id, wire.Fix{Seq: uint64(w.clock.Now().UnixMilli()), Time: w.clock.Now(), Lat: p.Lat, Lng: p.Lng, Accuracy: 5, Battery: 80}, w.clock.Now()); err != nil {
		tb.Fatal(err)
	}
	w.idx.SetShift(id, true)
	if err := w.idx.SetProfile(id, "scooter", 3); err != nil {
		tb.Fatal(err)
	}
	if err := w.idx.SetStatus(id, livemap.StatusAvailable, 0); err != nil {
		tb.Fatal(err)
	}
}

// process starts one backend's order side over the world's store (no
// background loops: the test fires timers itself).
func (w *world) process(tb testing.TB, couriers map[string]order.Place) *Service {
	tb.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	model, err := eta.New(eta.Default(), log)
	if err != nil {
		tb.Fatal(err)
	}
	disp, err := dispatch.New(dispatch.Default(), model)
	if err != nil {
		tb.Fatal(err)
	}
	rs, err := failure.Parse([]byte(durableRules))
	if err != nil {
		tb.Fatal(err)
	}
	w.idx = livemap.New()
	for id, p := range couriers {
		w.courier(tb, id, p)
	}
	cfg := DefaultConfig()
	s := New(cfg, Deps{Store: w.st, Index: w.idx, Density: noDensity{}, ETA: model, Dispatch: disp, Rules: failure.NewEngine(rs, log),
		Planner: routing.Builtin{}, Bus: w.bus, Log: log,
		Merchant: func(context.Context, string) (string, string, error) { return "standard", "code", nil }}, NewHub(), nil)
	s.now = w.clock.Now
	if _, _, err := s.restore(context.Background()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Close)
	return s
}

func (w *world) book(tb testing.TB, s *Service, id string) {
	tb.Helper()
	o, err := order.Book(order.Booking{ID: id, MerchantID: "m1", Pickup: shop, Dropoff: custA, Size: order.SizeS,
		CustomerName: "Amina", CustomerPhone: "+212612345678", PriceMAD: 20, Policy: order.Policy{RequireHandoverCode: true}}, w.clock.Now())
	if err != nil {
		tb.Fatal(err)
	}
	so := mongostore.StoredOrder{Order: o}
	ctx := context.Background()
	if err := w.st.InsertOrder(ctx, so); err != nil {
		tb.Fatal(err)
	}
	if err := w.st.Commit(ctx, so, order.Event{OrderID: id, To: order.StatusBooked, Action: "book", At: w.clock.Now(), Version: o.Version}); err != nil {
		tb.Fatal(err)
	}
	s.remember(&so)
}

func mustOrder(tb testing.TB, s *Service, id string) *mongostore.StoredOrder {
	tb.Helper()
	o, err := s.load(context.Background(), id, true)
	if err != nil {
		tb.Fatal(err)
	}
	return o
}

// An open offer keeps its deadline through a restart (no "restart" expiry),
// expires on time in the new process, and the next courier gets the order;
// two processes polling the same due timer fire it once.
func TestRestartKeepsOffer(t *testing.T) {
	w := mustWorld(t)
	ctx := context.Background()
	near := map[string]order.Place{"c1": shop, "c2": {Lat: shop.Lat + 0.003, Lng: shop.Lng}}
	p1 := w.process(t, near)
	w.book(t, p1, "o1")
	if err := p1.dispatchOrder(ctx, "o1", nil); err != nil {
		t.Fatal(err)
	}
	o := mustOrder(t, p1, "o1")
	if o.Status != order.StatusOffered || o.OfferedTo != "c1" {
		t.Fatalf("first offer: %s to %q", o.Status, o.OfferedTo)
	}
	p1.Close()

	w.clock.Add(10 * time.Second)
	p2 := w.process(t, near)
	if o := mustOrder(t, p2, "o1"); o.Status != order.StatusOffered || o.OfferedTo != "c1" {
		t.Fatalf("after the restart: %s to %q (the offer must keep its deadline)", o.Status, o.OfferedTo)
	}
	tasks, _, _ := p2.Tasks("c1")
	if len(tasks) != 1 || tasks[0].OfferExpires == nil || !tasks[0].OfferExpires.Equal(day.Add(30*time.Second)) {
		t.Fatalf("c1's tasks after the restart: %+v", tasks)
	}
	if n, err := p2.FireDue(ctx); err != nil || n != 0 {
		t.Fatalf("fired %d before the deadline (%v)", n, err)
	}
	w.clock.Add(21 * time.Second) // past the deadline
	if n, err := p2.FireDue(ctx); err != nil || n != 1 {
		t.Fatalf("fired %d at the deadline (%v)", n, err)
	}
	if err := p2.dispatchOrder(ctx, "o1", nil); err != nil { // the next epoch
		t.Fatal(err)
	}
	if o := mustOrder(t, p2, "o1"); o.Status != order.StatusOffered || o.OfferedTo != "c2" {
		t.Fatalf("after the deadline: %s to %q, want offered to c2", o.Status, o.OfferedTo)
	}

	// Two replicas poll the second deadline at once: one fires it.
	p3 := w.process(t, near)
	p2.now, p3.now = w.clock.Now, w.clock.Now
	w.clock.Add(31 * time.Second)
	var fired atomic.Int32
	var wg sync.WaitGroup
	for _, p := range []*Service{p2, p3} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := p.FireDue(ctx)
			if err != nil {
				t.Error(err)
			}
			fired.Add(int32(n))
		}()
	}
	wg.Wait()
	if fired.Load() != 1 {
		t.Fatalf("the timer fired %d times", fired.Load())
	}
	if _, err := p3.epoch(ctx, w.clock.Now()); err != nil { // nobody left: to a dispatcher
		t.Fatal(err)
	}
	evs, err := w.st.Events(ctx, "o1")
	if err != nil {
		t.Fatal(err)
	}
	expired := 0
	for _, e := range evs {
		if e.Action == order.ActExpire {
			expired++
			if e.Reason != "offer timeout" {
				t.Errorf("expiry reason %q", e.Reason)
			}
		}
	}
	if o := mustOrder(t, p3, "o1"); expired != 2 || !o.Flags.NeedsDispatcher {
		t.Fatalf("%d expiries, needs dispatcher %v; want 2 and true", expired, o.Flags.NeedsDispatcher)
	}
	// Task numbers rose across both processes.
	for topic, ts := range w.bus.all() {
		for i := 1; i < len(ts); i++ {
			if ts[i].Seq <= ts[i-1].Seq {
				t.Errorf("%s: task %d has seq %d after %d", topic, i, ts[i].Seq, ts[i-1].Seq)
			}
		}
	}
}

// assignAndPickup gives order id to c1 and picks it up.
func (w *world) assignAndPickup(tb testing.TB, s *Service, id string) {
	tb.Helper()
	ctx := context.Background()
	if _, err := s.Assign(ctx, order.Actor{Role: order.RoleDispatcher, ID: "d1"}, id, "c1"); err != nil {
		tb.Fatal(err)
	}
	if _, err := s.Pickup(ctx, order.Actor{Role: order.RoleCourier, ID: "c1"}, id); err != nil {
		tb.Fatal(err)
	}
}

// A retry_later "in 60 minutes" and a contact_customer window survive a
// restart: the not-before holds, the customer's reply is accepted by the
// new process, and without a reply the rule's then applies when the window
// ends.
func TestRestartKeepsRetryAndContact(t *testing.T) {
	w := mustWorld(t)
	ctx := context.Background()
	c1 := order.Actor{Role: order.RoleCourier, ID: "c1"}
	at := map[string]order.Place{"c1": shop}
	p1 := w.process(t, at)
	for _, id := range []string{"retry", "reply", "silent"} {
		w.book(t, p1, id)
		w.assignAndPickup(t, p1, id)
	}
	w.courier(t, "c1", custA)
	if res, err := p1.Fail(ctx, c1, "retry", FailRequest{Reason: "ADDRESS_NOT_FOUND"}); err != nil || res.Decision.Action != "retry_later" {
		t.Fatalf("fail retry: %+v, %v", res, err)
	}
	for _, id := range []string{"reply", "silent"} {
		if res, err := p1.Fail(ctx, c1, id, FailRequest{Reason: "CUSTOMER_UNAVAILABLE", CallAttempts: 2}); err != nil || res.Decision.Action != "contact_customer" {
			t.Fatalf("fail %s: %+v, %v", id, res, err)
		}
	}
	failedAt := w.clock.Now()
	p1.Close()

	w.clock.Add(time.Minute)
	p2 := w.process(t, map[string]order.Place{"c1": custA})
	// The retry is not due at once: its not-before is kept and planned around.
	o := mustOrder(t, p2, "retry")
	if want := failedAt.Add(60 * time.Minute); !o.NotBefore.Equal(want) {
		t.Fatalf("not-before after the restart: %v, want %v", o.NotBefore, want)
	}
	r := p2.replan(ctx, "c1", "test")
	for _, v := range r.Visits {
		if v.OrderID == "retry" && v.Depart.Before(o.NotBefore) {
			t.Fatalf("the retry is planned at %v, before its not-before %v", v.Depart, o.NotBefore)
		}
	}
	// The customer's reply is accepted after the restart.
	if got, err := p2.CustomerReply(ctx, "reply", true); err != nil || got.Contact != nil || !got.NotBefore.IsZero() {
		t.Fatalf("reply after the restart: %+v, %v", got, err)
	}
	if _, err := p2.CustomerReply(ctx, "reply", true); !errors.Is(err, order.ErrInvalidTransition) {
		t.Fatalf("second reply: %v", err)
	}
	// No reply: the window's end applies the rule's then (return_to_merchant).
	w.clock.Add(18 * time.Minute)
	if n, err := p2.FireDue(ctx); err != nil || n != 0 {
		t.Fatalf("fired %d before the window's end (%v)", n, err)
	}
	if o := mustOrder(t, p2, "silent"); o.Status != order.StatusReattemptScheduled {
		t.Fatalf("silent before the window's end: %s", o.Status)
	}
	w.clock.Add(2 * time.Minute)
	if n, err := p2.FireDue(ctx); err != nil || n != 1 {
		t.Fatalf("fired %d at the window's end (%v)", n, err)
	}
	if o := mustOrder(t, p2, "silent"); o.Status != order.StatusReturning || o.Contact != nil {
		t.Fatalf("silent after the window: %s (contact %+v), want returning", o.Status, o.Contact)
	}
	if o := mustOrder(t, p2, "reply"); o.Status != order.StatusReattemptScheduled {
		t.Fatalf("the answered order was touched by its window: %s", o.Status)
	}
}

// The fairness figures a dispatch decision weighs come from the store: the
// orders a courier was given today and how long an idle courier has been
// waiting (since its shift began) survive a restart.
func TestRestartKeepsFairness(t *testing.T) {
	w := mustWorld(t)
	ctx := context.Background()
	if err := w.st.OpenShift(ctx, "c2", day.Add(-30*time.Minute)); err != nil {
		t.Fatal(err)
	}
	at := map[string]order.Place{"c1": shop, "c2": shop}
	p1 := w.process(t, at)
	for _, id := range []string{"f1", "f2"} {
		w.book(t, p1, id)
		if _, err := p1.Assign(ctx, order.Actor{Role: order.RoleDispatcher, ID: "d1"}, id, "c1"); err != nil {
			t.Fatal(err)
		}
	}
	p1.Close()
	w.clock.Add(10 * time.Minute)
	p2 := w.process(t, at)
	byID := map[string]dispatch.Candidate{}
	for _, c := range p2.candidates(shop.Lat, shop.Lng, nil) {
		byID[c.CourierID] = c
	}
	if got := byID["c1"].AssignedToday; got != 2 {
		t.Errorf("c1 assigned today after the restart: %d, want 2", got)
	}
	if got := byID["c2"].IdleSince; !got.Equal(day.Add(-30 * time.Minute)) {
		t.Errorf("c2 idle since %v, want its shift start %v", got, day.Add(-30*time.Minute))
	}
}

// The fairness count is for the merchant day on Casablanca's clock: an
// order assigned at 23:30 there (22:30 UTC) no longer counts an hour later
// (00:30 the next day, still the same UTC day), before a restart or after.
func TestFairnessDayIsCasablancas(t *testing.T) {
	w := mustWorld(t)
	ctx := context.Background()
	w.clock.Add(12*time.Hour + 30*time.Minute) // 2026-11-21 22:30 UTC, 23:30 in Casablanca
	at := map[string]order.Place{"c1": shop}
	p1 := w.process(t, at)
	w.book(t, p1, "late")
	if _, err := p1.Assign(ctx, order.Actor{Role: order.RoleDispatcher, ID: "d1"}, "late", "c1"); err != nil {
		t.Fatal(err)
	}
	today := func(p *Service) int {
		for _, c := range p.candidates(shop.Lat, shop.Lng, nil) {
			if c.CourierID == "c1" {
				return c.AssignedToday
			}
		}
		t.Fatal("c1 is no candidate")
		return 0
	}
	if n := today(p1); n != 1 {
		t.Fatalf("assigned today at 23:30: %d, want 1", n)
	}
	w.clock.Add(time.Hour)
	if n := today(p1); n != 0 {
		t.Errorf("assigned today at 00:30 the next day: %d, want 0", n)
	}
	p1.Close()
	p2 := w.process(t, at)
	if n := today(p2); n != 0 {
		t.Errorf("assigned today at 00:30 the next day, after a restart: %d, want 0", n)
	}
}

// dispatchOrder runs a dispatch epoch at the service's clock (no slot
// claim): the waiting orders, id among them, get their offers.
func (s *Service) dispatchOrder(ctx context.Context, id string, _ map[string]bool) error {
	if _, err := s.epoch(ctx, s.now().UTC()); err != nil {
		return err
	}
	o, err := s.load(ctx, id, true)
	if err != nil {
		return err
	}
	if o.OfferedTo == "" && o.CourierID == "" {
		return fmt.Errorf("order %s: not offered by the epoch (%s)", id, o.Status)
	}
	return nil
}
