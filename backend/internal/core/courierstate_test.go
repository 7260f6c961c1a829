package core

import (
	"testing"
	"time"

	"github.com/tawsil/tawsil/backend/internal/eta"
	"github.com/tawsil/tawsil/backend/internal/geo"
)

func casaCore() *Core { return &Core{Zone: eta.Casablanca()} }

func cstep(t *testing.T, c *Core, st CourierState, ev CourierEvent, now time.Time) (CourierState, []Effect) {
	t.Helper()
	before := st.Orders
	snapshot := append([]string(nil), before...)
	out, eff := c.CourierStep(st, ev, now)
	for i := range snapshot {
		if before[i] != snapshot[i] {
			t.Fatalf("the step changed its input's orders: %v, was %v", before, snapshot)
		}
	}
	return out, eff
}

// Orders assigned and released: the load, the day's count and idle-since as
// core.Idle says (none while carrying, the moment the last order left,
// unchanged otherwise), and one BecameIdle when it empties.
func TestCourierStepOrders(t *testing.T) {
	c := casaCore()
	at := time.Date(2026, 5, 6, 9, 0, 0, 0, c.Zone)
	st, eff := cstep(t, c, CourierState{ID: "k1"}, ShiftStarted{}, at)
	if !st.OnShift || !st.ShiftFrom.Equal(at) || !st.IdleSince().Equal(at) || len(eff) != 0 {
		t.Fatalf("shift start: %+v %v", st, eff)
	}
	st, eff = cstep(t, c, st, OrderAssigned{Order: "o1"}, at.Add(time.Minute))
	st, _ = cstep(t, c, st, OrderAssigned{Order: "o2"}, at.Add(2*time.Minute))
	if st.Load() != 2 || st.AssignedToday != 2 || !st.IdleAt.IsZero() || len(eff) != 0 {
		t.Fatalf("assigned: %+v %v", st, eff)
	}
	if st, _ = cstep(t, c, st, OrderAssigned{Order: "o2"}, at.Add(2*time.Minute)); st.Load() != 2 {
		t.Fatalf("the same order twice: load %d", st.Load())
	}
	st, eff = cstep(t, c, st, OrderReleased{Order: "o1"}, at.Add(10*time.Minute))
	if st.Load() != 1 || !st.IdleAt.IsZero() || len(eff) != 0 {
		t.Fatalf("one released: %+v %v", st, eff)
	}
	done := at.Add(20 * time.Minute)
	st, eff = cstep(t, c, st, OrderReleased{Order: "o2"}, done)
	if st.Load() != 0 || !st.IdleAt.Equal(done) || !st.IdleSince().Equal(done) {
		t.Fatalf("emptied: %+v", st)
	}
	if len(eff) != 1 || eff[0] != (BecameIdle{Courier: "k1", At: done}) {
		t.Fatalf("effects %v", eff)
	}
	// Idle already: an unknown order's release changes nothing.
	if st2, eff := cstep(t, c, st, OrderReleased{Order: "o9"}, done.Add(time.Hour)); !st2.IdleAt.Equal(done) || len(eff) != 0 {
		t.Fatalf("idle since moved: %+v %v", st2, eff)
	}
	// Same as core.Idle at every step.
	if want := Idle(Idle(Idle(at, 1, at), 0, done), 0, done.Add(time.Hour)); !want.Equal(done) {
		t.Fatalf("core.Idle says %v", want)
	}
}

// The day's count starts again at Casablanca's midnight, not UTC's; the
// count read for another day is zero.
func TestCourierStepDayRollover(t *testing.T) {
	c := casaCore()
	// 2026-05-06 is outside Ramadan: Casablanca is UTC+1.
	before := time.Date(2026, 5, 6, 22, 59, 0, 0, time.UTC) // 23:59 in Casablanca
	after := before.Add(2 * time.Minute)                    // 00:01 on the 7th
	if c.MerchantDay(before) != 20260506 || c.MerchantDay(after) != 20260507 {
		t.Fatalf("days %d %d", c.MerchantDay(before), c.MerchantDay(after))
	}
	if got := c.DayStart(after); !got.Equal(time.Date(2026, 5, 6, 23, 0, 0, 0, time.UTC)) {
		t.Fatalf("day start %v", got)
	}
	st, _ := cstep(t, c, CourierState{ID: "k1"}, OrderAssigned{Order: "o1"}, before)
	st, _ = cstep(t, c, st, OrderReleased{Order: "o1"}, before.Add(30*time.Second))
	if st.AssignedToday != 1 || st.AssignedOn(c.MerchantDay(before)) != 1 || st.AssignedOn(c.MerchantDay(after)) != 0 {
		t.Fatalf("before midnight: %+v", st)
	}
	st, _ = cstep(t, c, st, OrderAssigned{Order: "o2"}, after)
	if st.Day != 20260507 || st.AssignedToday != 1 {
		t.Fatalf("after midnight: %+v", st)
	}
	// UTC's midnight is no new day in Casablanca.
	utcMidnight := time.Date(2026, 5, 7, 0, 0, 0, 0, time.UTC)
	st, _ = cstep(t, c, st, OrderAssigned{Order: "o3"}, utcMidnight)
	if st.AssignedToday != 2 {
		t.Fatalf("UTC midnight rolled the count: %+v", st)
	}
	// Any event rolls the day, even one that changes nothing else.
	st, _ = cstep(t, c, st, Seen{Time: utcMidnight}, time.Date(2026, 5, 7, 23, 30, 0, 0, time.UTC))
	if st.Day != 20260508 || st.AssignedToday != 0 {
		t.Fatalf("next day: %+v", st)
	}
}

// A position summary keeps the latest fix; a store recount sets the count
// and the open shift; a shift's end clears it; Holding sets the load.
func TestCourierStepSeenRecountShift(t *testing.T) {
	c := casaCore()
	now := time.Date(2026, 5, 6, 12, 0, 0, 0, c.Zone)
	p := geo.Point{Lat: 33.58, Lng: -7.6}
	st, eff := cstep(t, c, CourierState{ID: "k1"}, Seen{At: p, Time: now}, now)
	if !st.HasFix || st.At != p || !st.LastSeen.Equal(now) || len(eff) != 0 {
		t.Fatalf("seen: %+v", st)
	}
	if st2, _ := cstep(t, c, st, Seen{At: geo.Point{}, Time: now.Add(-time.Second)}, now); st2.At != p || !st2.LastSeen.Equal(now) {
		t.Fatalf("an older fix won: %+v", st2)
	}
	from := now.Add(-3 * time.Hour)
	st, _ = cstep(t, c, st, Recounted{AssignedToday: 7, ShiftFrom: from}, now)
	if st.AssignedToday != 7 || !st.OnShift || !st.IdleSince().Equal(from) {
		t.Fatalf("recounted: %+v", st)
	}
	st, eff = cstep(t, c, st, Holding{Orders: []string{"a", "b"}}, now)
	if st.Load() != 2 || !st.IdleAt.IsZero() || len(eff) != 0 {
		t.Fatalf("holding: %+v", st)
	}
	st, eff = cstep(t, c, st, Holding{}, now.Add(time.Minute))
	if st.Load() != 0 || !st.IdleSince().Equal(now.Add(time.Minute)) || len(eff) != 1 {
		t.Fatalf("holding none: %+v %v", st, eff)
	}
	st, _ = cstep(t, c, st, ShiftEnded{Courier: "k1"}, now.Add(2*time.Minute))
	if st.OnShift || !st.ShiftFrom.IsZero() || !st.IdleSince().Equal(now.Add(time.Minute)) {
		t.Fatalf("shift ended: %+v", st)
	}
	if st, _ = cstep(t, c, st, Recounted{}, now); st.OnShift || st.AssignedToday != 0 {
		t.Fatalf("recounted to none: %+v", st)
	}
}

// A courier state as a dispatch candidate: today's count, the idle time
// (shift start when no order ended yet, last fix when neither is known)
// only while empty.
func TestCandidateOf(t *testing.T) {
	c := casaCore()
	now := time.Date(2026, 5, 6, 12, 0, 0, 0, c.Zone)
	st, _ := cstep(t, c, CourierState{ID: "k1"}, Seen{Time: now.Add(-time.Minute)}, now)
	d := Candidate(c.CandidateOf(st, Courier{DistanceM: 100}, now), func(string) *State { return nil })
	if d.CourierID != "k1" || d.DistanceM != 100 || !d.IdleSince.Equal(now.Add(-time.Minute)) {
		t.Fatalf("only seen: %+v", d)
	}
	if d = Candidate(c.CandidateOf(st, Courier{LastSeen: now}, now), func(string) *State { return nil }); !d.IdleSince.Equal(now) {
		t.Fatalf("the shell's later fix: %+v", d)
	}
	st, _ = cstep(t, c, st, ShiftStarted{}, now.Add(-time.Hour))
	st, _ = cstep(t, c, st, OrderAssigned{Order: "o1"}, now)
	d = Candidate(c.CandidateOf(st, Courier{}, now), func(string) *State { return nil })
	if d.Load != 1 || d.AssignedToday != 1 || !d.IdleSince.IsZero() {
		t.Fatalf("loaded: %+v", d)
	}
	if d = Candidate(c.CandidateOf(st, Courier{}, now.Add(24*time.Hour)), func(string) *State { return nil }); d.AssignedToday != 0 {
		t.Fatalf("tomorrow's count: %+v", d)
	}
}
