package core

import (
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/tawsil/tawsil/backend/internal/dispatch"
	"github.com/tawsil/tawsil/backend/internal/eta"
	"github.com/tawsil/tawsil/backend/internal/failure"
	"github.com/tawsil/tawsil/backend/internal/geo"
	"github.com/tawsil/tawsil/backend/internal/order"
	"github.com/tawsil/tawsil/backend/internal/routing"
	"github.com/tawsil/tawsil/shared/wire"
)

// t0 is the injected clock's start: every time in these tests derives from it.
var t0 = time.Date(2030, 3, 4, 10, 0, 0, 0, time.UTC)

var (
	shop = order.Place{Lat: 33.5731, Lng: -7.5898, Address: "shop"}
	door = order.Place{Lat: 33.5890, Lng: -7.6030, Address: "door"}
)

func mustCore(tb testing.TB) *Core {
	tb.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	m, err := eta.New(eta.Default(), log)
	if err != nil {
		tb.Fatal(err)
	}
	d, err := dispatch.New(dispatch.Default(), m)
	if err != nil {
		tb.Fatal(err)
	}
	return &Core{Dispatch: d, OfferTimeout: 30 * time.Second, Rules: failure.NewEngine(failure.Default(), log),
		Verify: failure.DefaultVerifyConfig(),
		Relays: []failure.Relay{{ID: "r1", Name: "Hanout", Lat: door.Lat + 0.001, Lng: door.Lng}}}
}

func mustBooked(tb testing.TB, policy order.Policy) State {
	tb.Helper()
	o, err := order.Book(order.Booking{ID: "o1", MerchantID: "m1", Pickup: shop, Dropoff: door, Size: order.SizeS,
		CustomerName: "Amina Alaoui", CustomerPhone: "+212612345678", PriceMAD: 25, Policy: policy}, t0)
	if err != nil {
		tb.Fatal(err)
	}
	return State{Order: o}
}

// near is a courier candidate a few hundred metres from the shop.
func near(id string, north float64) dispatch.Candidate {
	return dispatch.Candidate{CourierID: id, Lat: shop.Lat + north, Lng: shop.Lng, Capacity: 3, IdleSince: t0.Add(-time.Hour)}
}

func mustStep(tb testing.TB, c *Core, st State, ev Event, in Input) Result {
	tb.Helper()
	r, err := c.Step(st, ev, in)
	if err != nil {
		tb.Fatalf("step %T: %v", ev, err)
	}
	return r
}

// find returns the effects of type T.
func find[T Effect](r Result) []T {
	var out []T
	for _, e := range r.Effects {
		if x, ok := e.(T); ok {
			out = append(out, x)
		}
	}
	return out
}

func one[T Effect](tb testing.TB, r Result) T {
	tb.Helper()
	xs := find[T](r)
	if len(xs) != 1 {
		var zero T
		tb.Fatalf("want one %T, got %d in %#v", zero, len(xs), r.Effects)
	}
	return xs[0]
}

func appended(tb testing.TB, r Result) order.Event {
	tb.Helper()
	if !r.Changed() {
		tb.Fatalf("no event appended: %#v", r.Effects)
	}
	ev := r.Effects[0].(Append).Event
	if ev.Version != r.State.Version || ev.OrderID != r.State.ID {
		tb.Fatalf("event v%d of %s does not match state v%d", ev.Version, ev.OrderID, r.State.Version)
	}
	return ev
}

// offered runs a booking through its first offer to the nearer of a and b.
func offered(tb testing.TB, c *Core, st State) Result {
	tb.Helper()
	r := mustStep(tb, c, st, Booked{}, Input{Now: t0})
	return epoch(tb, c, r.State, t0, near("far", 0.01), near("near", 0.001))
}

// epoch runs a dispatch epoch at now over st alone and steps its decision.
func epoch(tb testing.TB, c *Core, st State, now time.Time, cands ...dispatch.Candidate) Result {
	tb.Helper()
	decided, _ := c.Decide([]State{st}, cands, now, nil)
	if len(decided) != 1 || decided[0].Order != st.ID {
		tb.Fatalf("epoch decided %+v", decided)
	}
	return mustStep(tb, c, st, Decided{Courier: decided[0].Courier}, Input{Now: now})
}

func TestBookedThenOffered(t *testing.T) {
	c := mustCore(t)
	st := mustBooked(t, order.Policy{})
	r := mustStep(t, c, st, Booked{}, Input{Now: t0})
	if ev := appended(t, r); ev.Action != "book" || ev.At != t0 {
		t.Fatalf("event %+v", ev)
	}
	if wh := one[Webhook](t, r); wh.Name != "order.booked" || wh.Payload["handover_code"] != st.HandoverCode {
		t.Fatalf("webhook %+v", wh)
	}
	if len(find[FollowUp](r)) != 0 || !Awaiting(r.State) {
		t.Fatal("a booking waits for the next dispatch epoch")
	}

	r = offered(t, c, r.State)
	if ev := appended(t, r); ev.Action != order.ActOffer || r.State.OfferedTo != "near" || r.State.Status != order.StatusOffered {
		t.Fatalf("offer %+v to %q", ev, r.State.OfferedTo)
	}
	tm := one[ArmTimer](t, r).Timer
	if tm.Kind != TimerOffer || !tm.Due.Equal(t0.Add(30*time.Second)) || tm.Courier != "near" || tm.Ref != 1 {
		t.Fatalf("offer timer %+v", tm)
	}
	if p := one[Publish](t, r); p.Courier != "near" || p.Task.Type != wire.TaskOffer || !p.Task.ExpiresAt.Equal(tm.Due) || p.Task.Order.CustomerFirst != "Amina" || p.Task.Order.ReadyAt != nil {
		t.Fatalf("offer task %+v", p)
	}
	if r.State.Round == nil || len(r.State.Round.Ranked) != 1 || Awaiting(r.State) {
		t.Fatalf("round %+v", r.State.Round)
	}
}

func TestOfferDeclinedExpiredThenFlagged(t *testing.T) {
	c := mustCore(t)
	c.MaxOffers = 2
	r := offered(t, c, mustBooked(t, order.Policy{}))

	// The first courier declines: the next epoch offers the second.
	r = mustStep(t, c, r.State, Answered{Courier: "near", Reason: "busy"}, Input{Now: t0.Add(5 * time.Second)})
	if ev := appended(t, r); ev.Action != order.ActDecline || r.State.Status != order.StatusBooked {
		t.Fatalf("decline %+v", ev)
	}
	if ct := one[CancelTimer](t, r); ct.ID != OfferTimerID("o1", 1, "near") {
		t.Fatalf("cancel %+v", ct)
	}
	f := one[FollowUp](t, r).Event
	if d, ok := f.(Dispatch); !ok || !d.Continue {
		t.Fatalf("follow-up %#v", f)
	}
	now := t0.Add(5 * time.Second)
	if w := mustStep(t, c, r.State, f, Input{Now: now}); len(w.Effects) != 0 || !Awaiting(r.State) {
		t.Fatalf("the round has nobody left: it waits for an epoch, %#v", w.Effects)
	}
	r = epoch(t, c, r.State, now.Add(time.Minute), near("far", 0.01), near("near", 0.001))
	if r.State.OfferedTo != "far" {
		t.Fatalf("second offer to %q", r.State.OfferedTo)
	}
	tm := one[ArmTimer](t, r).Timer

	// A stale timer (the first offer's) finds nothing to do.
	stale := Timer{ID: OfferTimerID("o1", 1, "near"), Kind: TimerOffer, OrderID: "o1", Courier: "near", Ref: 1, Due: t0.Add(30 * time.Second)}
	if got := mustStep(t, c, r.State, TimerDue{stale}, Input{Now: stale.Due}); len(got.Effects) != 0 || got.State.Version != r.State.Version {
		t.Fatalf("stale timer did %#v", got.Effects)
	}

	// The second offer's deadline passes: expired, the device told, and
	// with MaxOffers offered the order goes to a dispatcher.
	r = mustStep(t, c, r.State, TimerDue{tm}, Input{Now: tm.Due})
	if ev := appended(t, r); ev.Action != order.ActExpire || ev.At != tm.Due {
		t.Fatalf("expire %+v", ev)
	}
	if p := one[Publish](t, r); p.Courier != "far" || p.Task.Type != wire.TaskOfferExpired {
		t.Fatalf("expired task %+v", p)
	}
	r = mustStep(t, c, r.State, one[FollowUp](t, r).Event, Input{Now: tm.Due})
	if ev := appended(t, r); ev.Action != "needs_dispatcher" || !r.State.Flags.NeedsDispatcher || r.State.Round != nil {
		t.Fatalf("flag %+v, state %+v", ev, r.State.Flags)
	}
	one[FlagDispatcher](t, r)
	// Flagged again: nothing changes.
	if again := mustStep(t, c, r.State, Dispatch{Continue: true}, Input{Now: tm.Due}); len(again.Effects) != 0 {
		t.Fatalf("flagged twice: %#v", again.Effects)
	}
}

func TestAcceptInTimeOnly(t *testing.T) {
	c := mustCore(t)
	r := offered(t, c, mustBooked(t, order.Policy{}))
	before := r.State.Clone()

	if _, err := c.Step(r.State, Answered{Courier: "near", Accept: true}, Input{Now: t0.Add(31 * time.Second)}); !errors.Is(err, order.ErrInvalidTransition) {
		t.Fatalf("late accept: %v", err)
	}
	if _, err := c.Step(r.State, Answered{Courier: "far", Accept: true}, Input{Now: t0.Add(time.Second)}); !errors.Is(err, order.ErrInvalidTransition) && !errors.Is(err, order.ErrForbidden) {
		t.Fatalf("accept by another courier: %v", err)
	}
	a := mustStep(t, c, r.State, Answered{Courier: "near", Accept: true}, Input{Now: t0.Add(10 * time.Second)})
	if a.State.Status != order.StatusAssigned || a.State.CourierID != "near" || a.State.Round != nil {
		t.Fatalf("accepted: %+v", a.State.Order)
	}
	if p := one[Publish](t, a); p.Task.Type != wire.TaskAssignment || p.Courier != "near" {
		t.Fatalf("assignment task %+v", p)
	}
	one[Assigned](t, a)
	one[Replan](t, a)
	one[CancelTimer](t, a)
	if r.State.Status != before.Status || r.State.Version != before.Version || r.State.Round == nil {
		t.Fatal("Step modified its input state")
	}
}

func TestDispatchSkipsGoneAndExcluded(t *testing.T) {
	c := mustCore(t)
	st := mustStep(t, c, mustBooked(t, order.Policy{}), Booked{}, Input{Now: t0}).State
	x := mustStep(t, c, st, Dispatch{Exclude: map[string]bool{"a": true}}, Input{Now: t0})
	if ev := appended(t, x); ev.Action != "dispatch_excluded" || !Awaiting(x.State) {
		t.Fatalf("exclusion %+v", ev)
	}
	decided, _ := c.Decide([]State{x.State}, []dispatch.Candidate{near("a", 0.001), near("b", 0.002), near("c", 0.003)}, t0, nil)
	if len(decided) != 1 || decided[0].Courier != "b" {
		t.Fatalf("decided %+v, want b (a excluded)", decided)
	}
	gone := func(id string) bool { return id != "b" }
	if got := mustStep(t, c, x.State, Decided{Courier: "b"}, Input{Now: t0, Reachable: gone}); len(got.Effects) != 0 {
		t.Fatalf("offered to a courier gone: %#v", got.Effects)
	}
	if got := mustStep(t, c, x.State, Decided{Courier: "a"}, Input{Now: t0}); len(got.Effects) != 0 {
		t.Fatalf("offered to an excluded courier: %#v", got.Effects)
	}
	r := epoch(t, c, x.State, t0, near("a", 0.001), near("c", 0.003))
	if r.State.OfferedTo != "c" {
		t.Fatalf("offered to %q, want c (a excluded, b gone)", r.State.OfferedTo)
	}
	// Continue without a round does nothing.
	if got := mustStep(t, c, st, Dispatch{Continue: true}, Input{Now: t0}); len(got.Effects) != 0 {
		t.Fatalf("continue without a round: %#v", got.Effects)
	}
}

// assignedTo is an order assigned by a dispatcher.
func assignedTo(tb testing.TB, c *Core, policy order.Policy, courier string) State {
	tb.Helper()
	st := mustStep(tb, c, mustBooked(tb, policy), Booked{}, Input{Now: t0}).State
	return mustStep(tb, c, st, Assign{Actor: order.Actor{Role: order.RoleDispatcher, ID: "d1"}, Courier: courier}, Input{Now: t0}).State
}

func pickedUp(tb testing.TB, c *Core, policy order.Policy) State {
	tb.Helper()
	st := assignedTo(tb, c, policy, "k1")
	r := mustStep(tb, c, st, PickedUp{Courier: "k1", Where: &geo.Point{Lat: shop.Lat, Lng: shop.Lng}}, Input{Now: t0.Add(10 * time.Minute)})
	if ev := appended(tb, r); ev.Action != order.ActPickup || ev.Lat == nil {
		tb.Fatalf("pickup %+v", ev)
	}
	one[Replan](tb, r)
	return r.State
}

func TestAssignOverridesOffer(t *testing.T) {
	c := mustCore(t)
	r := offered(t, c, mustBooked(t, order.Policy{}))
	a := mustStep(t, c, r.State, Assign{Actor: order.Actor{Role: order.RoleDispatcher, ID: "d1"}, Courier: "k9"}, Input{Now: t0.Add(time.Second)})
	if a.State.CourierID != "k9" || a.State.Round != nil {
		t.Fatalf("assign: %+v", a.State.Order)
	}
	pubs := find[Publish](a)
	if len(pubs) != 2 || pubs[0].Courier != "near" || pubs[0].Task.Type != wire.TaskCancellation || pubs[1].Courier != "k9" {
		t.Fatalf("tasks %+v", pubs)
	}
	if ct := one[CancelTimer](t, a); ct.ID != OfferTimerID("o1", 1, "near") {
		t.Fatalf("cancel %+v", ct)
	}
}

func TestPickupDeliverReturn(t *testing.T) {
	c := mustCore(t)
	st := pickedUp(t, c, order.Policy{})
	r := mustStep(t, c, st, Delivered{Courier: "k1", Code: st.HandoverCode, Note: "proof p1"}, Input{Now: t0.Add(30 * time.Minute)})
	if ev := appended(t, r); ev.Action != order.ActDeliver || r.State.Status != order.StatusDelivered {
		t.Fatalf("deliver %+v", ev)
	}
	one[Released](t, r)
	if len(find[Publish](r)) != 0 {
		t.Fatal("a delivery sends no cancellation")
	}
	// To a relay point when the drop-off was moved to one.
	st.RelayID = "r1"
	st.Policy.AllowRelay = true
	if r := mustStep(t, c, st, Delivered{Courier: "k1"}, Input{Now: t0.Add(30 * time.Minute)}); appended(t, r).Action != order.ActDeliverRelay {
		t.Fatal("relay delivery")
	}
	if _, err := c.Step(pickedUp(t, c, order.Policy{RequireHandoverCode: true}), Delivered{Courier: "k1", Code: "nope"}, Input{Now: t0}); !errors.Is(err, order.ErrHandoverCode) {
		t.Fatalf("wrong code: %v", err)
	}
}

func TestUnassignAndCancel(t *testing.T) {
	c := mustCore(t)
	dsp := order.Actor{Role: order.RoleDispatcher, ID: "d1"}
	st := assignedTo(t, c, order.Policy{}, "k1")
	r := mustStep(t, c, st, Unassign{Actor: dsp, Reason: "flat tyre"}, Input{Now: t0})
	if r.State.Status != order.StatusBooked || r.State.CourierID != "" {
		t.Fatalf("unassign %+v", r.State.Order)
	}
	if p := one[Publish](t, r); p.Courier != "k1" || p.Task.Type != wire.TaskCancellation {
		t.Fatalf("cancellation %+v", p)
	}
	if d := one[FollowUp](t, r).Event.(Dispatch); !d.Exclude["k1"] {
		t.Fatalf("re-dispatch excludes the courier: %+v", d)
	}

	r = mustStep(t, c, st, Cancel{Actor: order.Actor{Role: order.RoleMerchant, ID: "m1"}, Reason: "customer changed mind"}, Input{Now: t0})
	if r.State.Status != order.StatusCancelled {
		t.Fatalf("cancel %+v", r.State.Order)
	}
	one[Released](t, r)
	if _, err := c.Step(st, Cancel{Actor: order.Actor{Role: order.RoleMerchant, ID: "m2"}}, Input{Now: t0}); !errors.Is(err, order.ErrForbidden) {
		t.Fatalf("another merchant's cancel: %v", err)
	}
}

func TestFailureReportDecidedByTheRules(t *testing.T) {
	tests := []struct {
		name   string
		reason failure.Reason
		fixes  bool
		want   failure.Action
	}{
		{"incident reassigns", failure.CourierIncident, false, failure.Reassign},
		{"unverified goes to a dispatcher", failure.CustomerUnavailable, false, failure.DispatcherReview},
		{"damaged returns", failure.Damaged, false, failure.ReturnToMerchant},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustCore(t)
			st := pickedUp(t, c, order.Policy{})
			now := t0.Add(25 * time.Minute)
			r := mustStep(t, c, st, FailureReport{Courier: "k1", Reason: tt.reason, Note: "n"}, Input{Now: now, Policy: "standard"})
			if ev := appended(t, r); ev.Action != order.ActFail || r.State.Status != order.StatusFailedAttempt || len(r.State.Attempts) != 1 {
				t.Fatalf("fail %+v", ev)
			}
			if r.Decision.Action != tt.want {
				t.Fatalf("decision %s (%s), want %s", r.Decision.Action, r.Decision.Rule, tt.want)
			}
			ex := one[FollowUp](t, r).Event.(Execute)
			here := &geo.Point{Lat: door.Lat, Lng: door.Lng + 0.0005}
			r = mustStep(t, c, r.State, ex, Input{Now: now, Courier: here})
			switch tt.want {
			case failure.Reassign:
				if r.State.Status != order.StatusBooked || r.State.Pickup.Lat != here.Lat || r.State.OrigPickup == nil || *r.State.OrigPickup != shop {
					t.Fatalf("reassign: %+v / %+v", r.State.Pickup, r.State.OrigPickup)
				}
				if d := one[FollowUp](t, r).Event.(Dispatch); !d.Exclude["k1"] {
					t.Fatal("the next courier is another")
				}
			case failure.DispatcherReview:
				if !r.State.Flags.NeedsDispatcher || r.State.Status != order.StatusFailedAttempt {
					t.Fatalf("review: %+v", r.State.Order)
				}
				one[FlagDispatcher](t, r)
			case failure.ReturnToMerchant:
				if r.State.Status != order.StatusReturning {
					t.Fatalf("return: %s", r.State.Status)
				}
			}
		})
	}
}

func TestFailureByAnotherCourierIsNotFound(t *testing.T) {
	c := mustCore(t)
	if _, err := c.Step(pickedUp(t, c, order.Policy{}), FailureReport{Courier: "k2", Reason: failure.Damaged}, Input{Now: t0}); !errors.Is(err, order.ErrNotFound) {
		t.Fatalf("err %v", err)
	}
}

// failedAt is an order in failed_attempt at now.
func failedAt(tb testing.TB, c *Core, policy order.Policy, now time.Time) State {
	tb.Helper()
	return mustStep(tb, c, pickedUp(tb, c, policy), FailureReport{Courier: "k1", Reason: failure.Damaged}, Input{Now: now}).State
}

func TestRetryLaterNotBefore(t *testing.T) {
	c := mustCore(t)
	now := t0.Add(20 * time.Minute)
	st := failedAt(t, c, order.Policy{}, now)
	dec := failure.Decision{Action: failure.RetryLater, Rule: "r", Params: failure.Params{RetryAfterMinutes: 15, AfterNextStops: 1}}
	departs := []time.Time{now.Add(25 * time.Minute)}
	r := mustStep(t, c, st, Execute{Decision: dec, Courier: "k1"}, Input{Now: now, Departs: departs})
	if r.State.Status != order.StatusReattemptScheduled || !r.State.NotBefore.Equal(departs[0]) || r.State.Contact != nil {
		t.Fatalf("retry: %s not before %v", r.State.Status, r.State.NotBefore)
	}
	if len(find[ArmTimer](r)) != 0 {
		t.Fatal("a retry arms no timer: the route plan holds the not-before")
	}
}

func TestContactWindow(t *testing.T) {
	c := mustCore(t)
	now := t0.Add(20 * time.Minute)
	dec := func(then failure.Action) Execute {
		return Execute{Courier: "k1", Decision: failure.Decision{Action: failure.ContactCustomer, Rule: "call",
			Params: failure.Params{ReplyWindowMinutes: 10, Then: then, RetryAfterMinutes: 5}}}
	}
	open := func(t *testing.T, then failure.Action) (State, Timer) {
		r := mustStep(t, c, failedAt(t, c, order.Policy{}, now), dec(then), Input{Now: now})
		tm := one[ArmTimer](t, r).Timer
		if r.State.Contact == nil || tm.Kind != TimerContact || !tm.Due.Equal(now.Add(10*time.Minute)) || tm.Ref != r.State.Contact.ID {
			t.Fatalf("window %+v, timer %+v", r.State.Contact, tm)
		}
		if !r.State.NotBefore.Equal(tm.Due) {
			t.Fatalf("not before %v, want the window's end", r.State.NotBefore)
		}
		if wh := find[Webhook](r); len(wh) != 2 || wh[1].Name != "order.contact_customer" {
			t.Fatalf("webhooks %+v", wh)
		}
		return r.State, tm
	}
	t.Run("no reply returns", func(t *testing.T) {
		st, tm := open(t, failure.ReturnToMerchant)
		r := mustStep(t, c, st, TimerDue{tm}, Input{Now: tm.Due})
		if r.State.Status != order.StatusReturning || r.State.Contact != nil {
			t.Fatalf("then: %s", r.State.Status)
		}
		// The timer again (another replica, a retry) finds the window closed.
		if again := mustStep(t, c, r.State, TimerDue{tm}, Input{Now: tm.Due}); len(again.Effects) != 0 {
			t.Fatal("a window closed twice")
		}
	})
	t.Run("no reply retries later", func(t *testing.T) {
		st, tm := open(t, failure.RetryLater)
		r := mustStep(t, c, st, TimerDue{tm}, Input{Now: tm.Due})
		if ev := appended(t, r); ev.Action != "contact_closed" || !r.State.NotBefore.Equal(tm.Due.Add(5*time.Minute)) {
			t.Fatalf("then retry: %+v not before %v", ev, r.State.NotBefore)
		}
	})
	t.Run("no reply reassign asks a dispatcher", func(t *testing.T) {
		st, tm := open(t, failure.Reassign)
		r := mustStep(t, c, st, TimerDue{tm}, Input{Now: tm.Due})
		if !r.State.Flags.NeedsDispatcher || r.State.Status != order.StatusReattemptScheduled {
			t.Fatalf("then reassign: %+v", r.State.Order)
		}
	})
	t.Run("reachable retries now", func(t *testing.T) {
		st, tm := open(t, failure.ReturnToMerchant)
		r := mustStep(t, c, st, CustomerReply{Reachable: true}, Input{Now: now.Add(3 * time.Minute)})
		if r.State.Contact != nil || !r.State.NotBefore.IsZero() || r.State.Status != order.StatusReattemptScheduled {
			t.Fatalf("reachable: %+v not before %v", r.State.Contact, r.State.NotBefore)
		}
		if ct := one[CancelTimer](t, r); ct.ID != tm.ID {
			t.Fatalf("cancel %+v", ct)
		}
		if _, err := c.Step(r.State, CustomerReply{Reachable: true}, Input{Now: now}); !errors.Is(err, order.ErrInvalidTransition) {
			t.Fatalf("second reply: %v", err)
		}
	})
	t.Run("delivered in the window", func(t *testing.T) {
		st, tm := open(t, failure.ReturnToMerchant)
		r := mustStep(t, c, st, Delivered{Courier: "k1"}, Input{Now: now.Add(2 * time.Minute)})
		if r.State.Status != order.StatusDelivered || r.State.Contact != nil {
			t.Fatalf("delivered: %s, contact %+v", r.State.Status, r.State.Contact)
		}
		if ct := one[CancelTimer](t, r); ct.ID != tm.ID {
			t.Fatalf("cancel %+v", ct)
		}
		if late := mustStep(t, c, r.State, TimerDue{tm}, Input{Now: tm.Due}); len(late.Effects) != 0 {
			t.Fatal("the window's end changed a delivered order")
		}
	})
	t.Run("not reachable applies then now", func(t *testing.T) {
		st, _ := open(t, failure.Cancel)
		r := mustStep(t, c, st, CustomerReply{Reachable: false}, Input{Now: now.Add(time.Minute)})
		if r.State.Status != order.StatusCancelled {
			t.Fatalf("not reachable: %s", r.State.Status)
		}
		one[Released](t, r)
	})
}

func TestRelayAndResolve(t *testing.T) {
	c := mustCore(t)
	now := t0.Add(20 * time.Minute)
	relay := Execute{Courier: "k1", Decision: failure.Decision{Action: failure.RelayPoint, Rule: "relay"}}
	r := mustStep(t, c, failedAt(t, c, order.Policy{AllowRelay: true}, now), relay, Input{Now: now})
	if r.State.RelayID != "r1" || r.State.Dropoff.Lat != c.Relays[0].Lat || r.State.Status != order.StatusReattemptScheduled {
		t.Fatalf("relay: %q %+v", r.State.RelayID, r.State.Dropoff)
	}
	r = mustStep(t, c, failedAt(t, c, order.Policy{}, now), relay, Input{Now: now})
	if r.State.Status != order.StatusReturning || r.Decision.Action != failure.ReturnToMerchant {
		t.Fatalf("relay not allowed: %s %s", r.State.Status, r.Decision.Action)
	}
	dsp := order.Actor{Role: order.RoleDispatcher, ID: "d1"}
	if _, err := c.Step(failedAt(t, c, order.Policy{}, now), Resolve{Actor: dsp, Action: failure.RelayPoint}, Input{Now: now}); !errors.Is(err, order.ErrInvalidTransition) {
		t.Fatalf("dispatcher relay without policy: %v", err)
	}
	if _, err := c.Step(failedAt(t, c, order.Policy{}, now), Resolve{Actor: dsp, Action: "fly"}, Input{Now: now}); !errors.Is(err, order.ErrInvalidAction) {
		t.Fatalf("unknown action: %v", err)
	}
	r = mustStep(t, c, failedAt(t, c, order.Policy{}, now), Resolve{Actor: dsp, Action: failure.Cancel}, Input{Now: now})
	if r.State.Status != order.StatusCancelled {
		t.Fatalf("resolve cancel: %s", r.State.Status)
	}
}

func TestPinWindow(t *testing.T) {
	c := mustCore(t)
	st := mustBooked(t, order.Policy{})
	st.Pin = &order.Pin{Status: order.PinUnconfirmed, ConfirmBy: t0.Add(20 * time.Minute)}
	r := mustStep(t, c, st, Booked{}, Input{Now: t0})
	tm := one[ArmTimer](t, r).Timer
	if tm.Kind != TimerPin || !tm.Due.Equal(st.Pin.ConfirmBy) || len(find[FollowUp](r)) != 0 {
		t.Fatalf("pin booking: %+v", r.Effects)
	}
	booked := r.State
	if _, err := c.Step(booked, Assign{Actor: order.Actor{Role: order.RoleDispatcher, ID: "d"}, Courier: "k"}, Input{Now: t0}); !errors.Is(err, ErrPinClosed) {
		t.Fatalf("assign before the pin: %v", err)
	}
	if got := mustStep(t, c, booked, Dispatch{}, Input{Now: t0}); len(got.Effects) != 0 || Awaiting(booked) {
		t.Fatal("dispatched before the pin")
	}
	if d, _ := c.Decide([]State{booked}, []dispatch.Candidate{near("a", 0.001)}, t0, nil); len(d) != 0 {
		t.Fatal("an epoch placed it before the pin")
	}
	late := mustStep(t, c, booked, TimerDue{tm}, Input{Now: tm.Due})
	if !late.State.Flags.NeedsDispatcher {
		t.Fatal("pin overdue goes to a dispatcher")
	}
	at := t0.Add(5 * time.Minute)
	p := mustStep(t, c, late.State, PinConfirmed{Actor: order.Actor{Role: order.RoleCustomer}, Dropoff: door, PriceMAD: 30}, Input{Now: at})
	if p.State.PinPending() || !p.State.PromiseBy.Equal(at.Add(order.Promise)) || p.State.PriceMAD != 30 || p.State.Flags.NeedsDispatcher {
		t.Fatalf("pin: %+v", p.State.Order)
	}
	if !Awaiting(p.State) {
		t.Fatal("the next epoch places it after the pin")
	}
	if _, err := c.Step(p.State, PinConfirmed{Actor: order.Actor{Role: order.RoleCustomer}, Dropoff: door}, Input{Now: at}); !errors.Is(err, ErrPinClosed) {
		t.Fatalf("second pin: %v", err)
	}
}

func TestCourierGone(t *testing.T) {
	c := mustCore(t)
	admin := order.Actor{Role: order.RoleAdmin, ID: "a1"}
	r := offered(t, c, mustBooked(t, order.Policy{}))
	g := mustStep(t, c, r.State, CourierGone{Courier: "near", By: admin}, Input{Now: t0.Add(time.Second)})
	if appended(t, g).Action != order.ActExpire {
		t.Fatal("the offer is withdrawn")
	}
	if d := one[FollowUp](t, g).Event.(Dispatch); !d.Exclude["near"] {
		t.Fatal("re-offered without the courier")
	}
	if next := epoch(t, c, g.State, t0.Add(time.Minute), near("near", 0.001), near("far", 0.01)); next.State.OfferedTo != "far" {
		t.Fatalf("next offer to %q", next.State.OfferedTo)
	}

	a := mustStep(t, c, assignedTo(t, c, order.Policy{}, "k1"), CourierGone{Courier: "k1", By: admin}, Input{Now: t0})
	if a.State.Status != order.StatusBooked || appended(t, a).Actor != admin {
		t.Fatalf("assigned: %s", a.State.Status)
	}
	p := mustStep(t, c, pickedUp(t, c, order.Policy{}), CourierGone{Courier: "k1", By: admin}, Input{Now: t0})
	if !p.State.Flags.NeedsDispatcher || p.State.Status != order.StatusPickedUp {
		t.Fatalf("carried: %+v", p.State.Order)
	}
	if o := mustStep(t, c, assignedTo(t, c, order.Policy{}, "k1"), CourierGone{Courier: "k2", By: admin}, Input{Now: t0}); len(o.Effects) != 0 {
		t.Fatal("another courier's order changed")
	}
}

func TestReturnedBackToTheMerchant(t *testing.T) {
	c := mustCore(t)
	now := t0.Add(20 * time.Minute)
	st := mustStep(t, c, pickedUp(t, c, order.Policy{}), FailureReport{Courier: "k1", Reason: failure.Damaged}, Input{Now: now}).State
	st = mustStep(t, c, st, Execute{Courier: "k1", Decision: failure.Decision{Action: failure.ReturnToMerchant, Rule: "damaged"}}, Input{Now: now}).State
	if stops := Stops(st); len(stops) != 1 || stops[0].Kind != "return" || stops[0].Loc.Lat != shop.Lat {
		t.Fatalf("return stops %+v", stops)
	}
	r := mustStep(t, c, st, ReturnedBack{Actor: order.Actor{Role: order.RoleCourier, ID: "k1"}}, Input{Now: now.Add(15 * time.Minute)})
	if r.State.Status != order.StatusReturned || !r.State.Milestones.ReturnedAt.Equal(now.Add(15*time.Minute)) {
		t.Fatalf("returned: %s at %v", r.State.Status, r.State.Milestones.ReturnedAt)
	}
	if rel := one[Released](t, r); rel.Courier != "k1" {
		t.Fatalf("released %+v", rel)
	}
}

func TestAtRiskAndNotes(t *testing.T) {
	c := mustCore(t)
	st := assignedTo(t, c, order.Policy{}, "k1")
	r := mustStep(t, c, st, AtRisk{Risk: true}, Input{Now: t0})
	if ev := appended(t, r); ev.Action != "at_risk" || !r.State.Flags.AtRisk || ev.From != ev.To {
		t.Fatalf("at risk %+v", ev)
	}
	if again := mustStep(t, c, r.State, AtRisk{Risk: true}, Input{Now: t0}); len(again.Effects) != 0 {
		t.Fatal("an unchanged flag takes a version")
	}
	n := mustStep(t, c, r.State, Note{Kind: "handover_rejected", Actor: order.Actor{Role: order.RoleCourier, ID: "k1"}, Why: "wrong code"}, Input{Now: t0})
	if ev := appended(t, n); ev.Action != "handover_rejected" || n.State.Version != r.State.Version+1 || n.State.Status != st.Status {
		t.Fatalf("note %+v", ev)
	}
	if len(n.Effects) != 1 {
		t.Fatalf("a note only appends: %#v", n.Effects)
	}
}

func TestCandidateAndIdle(t *testing.T) {
	o := mustBooked(t, order.Policy{})
	lookup := func(id string) *State {
		if id == o.ID {
			return &o
		}
		return nil
	}
	busy := Courier{ID: "k1", Load: 1, Capacity: 3, IdleSince: t0.Add(-time.Hour), LastSeen: t0,
		Visits: []routing.Visit{{Stop: routing.Stop{OrderID: "o1", Kind: routing.Pickup, Loc: geo.Point{Lat: shop.Lat, Lng: shop.Lng}}},
			{Stop: routing.Stop{OrderID: "o1", Kind: routing.Dropoff, Loc: geo.Point{Lat: door.Lat, Lng: door.Lng}}}}}
	c := Candidate(busy, lookup)
	if !c.IdleSince.IsZero() || len(c.Route) != 2 || c.Route[0].Kind != dispatch.StopPickup || !c.Route[1].PromiseBy.Equal(o.PromiseBy) ||
		!c.Route[0].PromiseBy.IsZero() || c.Route[1].Origin.Lat != shop.Lat {
		t.Fatalf("busy candidate %+v", c)
	}
	if c := Candidate(Courier{ID: "k2", LastSeen: t0}, lookup); !c.IdleSince.Equal(t0) {
		t.Fatalf("idle since unknown: %v, want the last fix", c.IdleSince)
	}
	if c := Candidate(Courier{ID: "k2", IdleSince: t0.Add(-time.Hour), LastSeen: t0}, lookup); !c.IdleSince.Equal(t0.Add(-time.Hour)) {
		t.Fatalf("idle since %v", c.IdleSince)
	}

	tests := []struct {
		name  string
		since time.Time
		load  int
		want  time.Time
	}{
		{"busy", t0.Add(-time.Hour), 2, time.Time{}},
		{"just emptied", time.Time{}, 0, t0},
		{"still idle", t0.Add(-time.Hour), 0, t0.Add(-time.Hour)},
	}
	for _, tt := range tests {
		if got := Idle(tt.since, tt.load, t0); !got.Equal(tt.want) {
			t.Errorf("%s: Idle = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestNeeds(t *testing.T) {
	c := mustCore(t)
	booked := mustStep(t, c, mustBooked(t, order.Policy{}), Booked{}, Input{Now: t0}).State
	round := offered(t, c, mustBooked(t, order.Policy{}))
	declined := mustStep(t, c, round.State, Answered{Courier: "near"}, Input{Now: t0.Add(time.Second)}).State
	k1 := map[string]bool{"k1": true}
	tests := []struct {
		name string
		st   State
		ev   Event
		want Needs
	}{
		{"new round", booked, Dispatch{Exclude: k1}, Needs{Reachable: true}},
		{"decided", booked, Decided{Courier: "k1"}, Needs{Reachable: true}},
		{"round goes on", declined, Dispatch{}, Needs{Reachable: true}},
		{"continue only", booked, Dispatch{Continue: true}, Needs{Reachable: true}},
		{"failure", booked, FailureReport{Courier: "k1"}, Needs{Policy: true}},
		{"execute", booked, Execute{Courier: "k1"}, Needs{Departs: "k1", Position: "k1"}},
		{"answer", round.State, Answered{Courier: "near", Accept: true}, Needs{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := c.Needs(tt.st, tt.ev)
			if got.Reachable != tt.want.Reachable ||
				got.Policy != tt.want.Policy || got.Departs != tt.want.Departs || got.Position != tt.want.Position {
				t.Errorf("Needs = %+v, want %+v", got, tt.want)
			}
		})
	}
}
