package core

import (
	"slices"
	"time"

	"github.com/tawsil/tawsil/backend/internal/geo"
)

// CourierState is the courier side of the core: what fairness and
// dispatch keep of a courier between its orders' steps. It changes only
// through CourierStep; the server's delivery shell and the simulator each
// hold one per courier.
type CourierState struct {
	ID string
	// Orders are the orders assigned to it and not finished (its load).
	Orders []string
	// Day is the merchant day AssignedToday counts for (MerchantDay).
	Day           int
	AssignedToday int
	// IdleAt is when its last order left its hands (zero while it carries
	// orders, or before its first order ended).
	IdleAt time.Time
	// OnShift is whether a shift of its is open; ShiftFrom, that shift's
	// start (zero: none known).
	OnShift   bool
	ShiftFrom time.Time
	// LastSeen is its last fix's time, At and HasFix its place.
	LastSeen time.Time
	At       geo.Point
	HasFix   bool
}

// Load is how many orders it carries or is to pick up.
func (c CourierState) Load() int { return len(c.Orders) }

// IdleSince is when an idle courier became idle: its last order's end or
// its shift's start, the later (zero when neither is known).
func (c CourierState) IdleSince() time.Time {
	if c.IdleAt.After(c.ShiftFrom) {
		return c.IdleAt
	}
	return c.ShiftFrom
}

// AssignedOn is its fairness count for a merchant day: none on a day its
// count is not for (a new day starts at zero).
func (c CourierState) AssignedOn(day int) int {
	if day != c.Day {
		return 0
	}
	return c.AssignedToday
}

// MerchantDay is the merchant day t falls on: its date on the city's clock
// (the core's Zone), as yyyymmdd.
func (c *Core) MerchantDay(t time.Time) int {
	y, m, d := c.local(t).Date()
	return y*10000 + int(m)*100 + d
}

// DayStart is the first instant of the merchant day t falls on.
func (c *Core) DayStart(t time.Time) time.Time {
	y, m, d := c.local(t).Date()
	return time.Date(y, m, d, 0, 0, 0, 0, c.local(t).Location())
}

// CourierEvent is what changes a CourierState: one of the types below, or
// the order side's ShiftEnded.
type CourierEvent interface{ courierEvent() }

// Seen: a position summary (a fix's time and place).
type Seen struct {
	At   geo.Point
	Time time.Time
}

// OrderAssigned: an order was assigned to it (the order step's Assigned).
type OrderAssigned struct{ Order string }

// OrderReleased: an order left its hands: unassigned, or finished while
// assigned (delivered, returned, relayed, cancelled): the order step's
// Released.
type OrderReleased struct{ Order string }

// Holding: the shell's count of the orders it holds, from the store or its
// cache (a restart, or orders another replica changed).
type Holding struct{ Orders []string }

// Recounted: today's fairness count and open shift, from the store (a
// restart; replicas' assignments).
type Recounted struct {
	AssignedToday int
	ShiftFrom     time.Time // zero: no open shift
}

// ShiftStarted: a shift of its opened at the step's time.
type ShiftStarted struct{}

func (Seen) courierEvent()          {}
func (OrderAssigned) courierEvent() {}
func (OrderReleased) courierEvent() {}
func (Holding) courierEvent()       {}
func (Recounted) courierEvent()     {}
func (ShiftStarted) courierEvent()  {}
func (ShiftEnded) courierEvent()    {}

// BecameIdle: the courier's last order just left its hands.
type BecameIdle struct {
	Courier string
	At      time.Time
}

// CourierStep applies ev at now to a courier's state: the new state and
// its effects (BecameIdle). Every step first rolls the fairness count over
// to now's merchant day. No I/O, no clock but now.
func (c *Core) CourierStep(st CourierState, ev CourierEvent, now time.Time) (CourierState, []Effect) {
	if day := c.MerchantDay(now); day != st.Day {
		st.Day, st.AssignedToday = day, 0
	}
	wasIdle := !st.IdleAt.IsZero()
	switch ev := ev.(type) {
	case Seen:
		if !ev.Time.Before(st.LastSeen) {
			st.LastSeen, st.At, st.HasFix = ev.Time, ev.At, true
		}
		return st, nil
	case OrderAssigned:
		st.AssignedToday++
		if !slices.Contains(st.Orders, ev.Order) {
			st.Orders = append(slices.Clip(st.Orders), ev.Order)
		}
	case OrderReleased:
		st.Orders = slices.DeleteFunc(slices.Clone(st.Orders), func(id string) bool { return id == ev.Order })
	case Holding:
		st.Orders = slices.Clone(ev.Orders)
	case Recounted:
		st.AssignedToday = ev.AssignedToday
		st.OnShift, st.ShiftFrom = !ev.ShiftFrom.IsZero(), ev.ShiftFrom
		return st, nil
	case ShiftStarted:
		st.OnShift, st.ShiftFrom = true, now
		return st, nil
	case ShiftEnded:
		st.OnShift, st.ShiftFrom = false, time.Time{}
		return st, nil
	}
	st.IdleAt = Idle(st.IdleAt, st.Load(), now)
	if !wasIdle && !st.IdleAt.IsZero() {
		return st, []Effect{BecameIdle{Courier: st.ID, At: st.IdleAt}}
	}
	return st, nil
}

func (BecameIdle) effect() {}

// CandidateOf is a courier state as core.Courier for Candidate, at now's
// merchant day: its load, fairness count and idle time (near: where it is
// and how far from the pick-up, from the shell's index or world; its
// LastSeen counts when later than the state's).
func (c *Core) CandidateOf(st CourierState, near Courier, now time.Time) Courier {
	near.ID, near.Load, near.AssignedToday = st.ID, st.Load(), st.AssignedOn(c.MerchantDay(now))
	near.IdleSince = st.IdleSince()
	if st.LastSeen.After(near.LastSeen) {
		near.LastSeen = st.LastSeen
	}
	return near
}
