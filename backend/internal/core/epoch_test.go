package core

import (
	"testing"
	"time"

	"github.com/tawsil/tawsil/backend/internal/dispatch"
	"github.com/tawsil/tawsil/backend/internal/order"
	"github.com/tawsil/tawsil/shared/wire"
)

// bookedReady is a booking at t0 whose parcel is ready after readyIn.
func bookedReady(tb testing.TB, c *Core, id string, readyIn time.Duration) State {
	tb.Helper()
	o, err := order.Book(order.Booking{ID: id, MerchantID: "m1", Pickup: shop, Dropoff: door, Size: order.SizeS,
		CustomerName: "Amina Alaoui", CustomerPhone: "+212612345678", PriceMAD: 25, ReadyAt: t0.Add(readyIn)}, t0)
	if err != nil {
		tb.Fatal(err)
	}
	return mustStep(tb, c, State{Order: o}, Booked{}, Input{Now: t0}).State
}

// An order ready in 30 minutes, with a courier at the shop, is held by the
// epochs until its courier would be at most CommitLead (10 min) early:
// offered by the epoch of t0+20 min, not one minute before.
func TestEpochHoldsUntilNearReady(t *testing.T) {
	c := mustCore(t)
	st := bookedReady(t, c, "o1", 30*time.Minute)
	atShop := dispatch.Candidate{CourierID: "k1", Lat: shop.Lat, Lng: shop.Lng, Capacity: 3, IdleSince: t0}
	lead := c.Dispatch.Config().CommitLead
	offeredAt := time.Time{}
	for now := t0; now.Before(t0.Add(40 * time.Minute)); now = now.Add(time.Minute) {
		decided, unplaced := c.Decide([]State{st}, []dispatch.Candidate{atShop}, now, nil)
		if len(unplaced) != 0 {
			t.Fatalf("%v: unplaced %v", now, unplaced)
		}
		if len(decided) == 0 {
			continue
		}
		r := mustStep(t, c, st, Decided{Courier: decided[0].Courier}, Input{Now: now})
		if p := one[Publish](t, r); p.Courier != "k1" || p.Task.Type != wire.TaskOffer || p.Task.Order.ReadyAt == nil || !p.Task.Order.ReadyAt.Equal(st.ReadyAt) {
			t.Fatalf("offer %+v (the task tells the courier when the parcel is ready)", p)
		}
		offeredAt = now
		break
	}
	if want := st.ReadyAt.Add(-lead); !offeredAt.Equal(want) {
		t.Fatalf("offered at %v, want %v (ready %v less the commit lead %v)", offeredAt, want, st.ReadyAt, lead)
	}
}

// Two orders of one shop, ready together, go to one courier in one epoch
// (the second slipped into the first's route: one pick-up visit), not one
// to each of two couriers (both just became idle, the second 2 km
// farther).
func TestEpochBundlesOneShop(t *testing.T) {
	c := mustCore(t)
	a, b := bookedReady(t, c, "o1", 15*time.Minute), bookedReady(t, c, "o2", 15*time.Minute)
	cands := []dispatch.Candidate{near("k1", 0.01), near("k2", 0.03)}
	for i := range cands {
		cands[i].IdleSince = t0.Add(9 * time.Minute)
	}
	decided, _ := c.Decide([]State{a, b}, cands, t0.Add(10*time.Minute), nil)
	if len(decided) != 2 || decided[0].Courier != decided[1].Courier {
		t.Fatalf("decided %+v, want both to one courier", decided)
	}
	second := decided[1].Commit.Ranked
	if !second.Breakdown.Batched || len(second.Plan) != 4 {
		t.Fatalf("second decision not bundled: batched %v, plan %+v", second.Breakdown.Batched, second.Plan)
	}
	pickups := 0
	for _, s := range second.Plan[:2] {
		if s.Kind == dispatch.StopPickup {
			pickups++
		}
	}
	if pickups != 2 {
		t.Fatalf("plan %+v: want both pick-ups first", second.Plan)
	}
	for i, st := range []State{a, b} {
		if r := mustStep(t, c, st, Decided{Courier: decided[i].Courier}, Input{Now: t0.Add(10 * time.Minute)}); r.State.OfferedTo != decided[0].Courier {
			t.Fatalf("%s offered to %q", st.ID, r.State.OfferedTo)
		}
	}
}

// An order no courier is left for (everyone offered it already) goes to
// dispatchers; one whose round still runs is not an epoch's to decide.
func TestEpochUnplacedAndRunning(t *testing.T) {
	c := mustCore(t)
	r := offered(t, c, mustBooked(t, order.Policy{}))
	if d, u := c.Decide([]State{r.State}, []dispatch.Candidate{near("far", 0.01)}, t0, nil); len(d)+len(u) != 0 {
		t.Fatalf("an offered order decided again: %+v %v", d, u)
	}
	declined := mustStep(t, c, r.State, Answered{Courier: "near"}, Input{Now: t0.Add(time.Second)}).State
	_, u := c.Decide([]State{declined}, []dispatch.Candidate{near("near", 0.001)}, t0.Add(time.Minute), nil)
	if len(u) != 1 {
		t.Fatalf("unplaced %v, want o1 (its only courier declined)", u)
	}
	f := mustStep(t, c, declined, Unplaced{}, Input{Now: t0.Add(time.Minute)})
	if !f.State.Flags.NeedsDispatcher || Awaiting(f.State) {
		t.Fatalf("unplaced: %+v", f.State.Flags)
	}
	one[FlagDispatcher](t, f)
}
