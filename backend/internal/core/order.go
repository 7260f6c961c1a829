package core

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tawsil/tawsil/backend/internal/dispatch"
	"github.com/tawsil/tawsil/backend/internal/failure"
	"github.com/tawsil/tawsil/backend/internal/geo"
	"github.com/tawsil/tawsil/backend/internal/order"
	"github.com/tawsil/tawsil/shared/wire"
)

// State is an order as the core decides about it: the lifecycle order and
// its operational facts. Both change only through Step; the store persists
// State as it is (mongostore.StoredOrder is this type).
type State struct {
	*order.Order
	Ops
}

// Ops are the order's durable operational facts beside the lifecycle. The
// BSON names are the stored documents' (this was mongostore.Extra).
type Ops struct {
	RelayID    string       `bson:"relay_id,omitempty"`    // set when the drop-off was moved to a relay point
	OrigPickup *order.Place `bson:"orig_pickup,omitempty"` // the merchant's pick-up, when a hand-over moved Pickup
	// NotBefore: the drop-off may not be retried before this (retry_later,
	// contact_customer).
	NotBefore time.Time `bson:"not_before,omitempty"`
	// Contact is a contact_customer window waiting for the customer's reply.
	Contact *Contact `bson:"contact,omitempty"`
	// Round is the dispatch offer round while the order is being offered.
	Round *dispatch.RoundState `bson:"round,omitempty"`
}

// Contact is a pending contact_customer decision.
type Contact struct {
	ID      int            `bson:"id"` // the order version that opened it: timers name it
	Courier string         `bson:"courier"`
	Until   time.Time      `bson:"until"`
	Then    failure.Params `bson:"then"`
}

// Clone returns a deep copy.
func (s State) Clone() State {
	c := State{Order: s.Order.Clone(), Ops: s.Ops}
	if s.OrigPickup != nil {
		p := *s.OrigPickup
		c.OrigPickup = &p
	}
	if s.Contact != nil {
		k := *s.Contact
		c.Contact = &k
	}
	if s.Round != nil {
		r := s.Round.Clone()
		c.Round = &r
	}
	return c
}

// Timer kinds.
const (
	TimerOffer   = "offer"   // an offer's deadline
	TimerContact = "contact" // a contact_customer reply window's end
	TimerPin     = "pin"     // the customer's time to confirm a drop-off pin
)

// Timer is a deadline of an order: the shell keeps it (the server as a
// store document any replica fires once, the simulator in a heap) and
// feeds it back as TimerDue when Due has passed.
type Timer struct {
	ID      string    `bson:"_id"`               // names what it is for: arming the same id again replaces it
	Kind    string    `bson:"kind"`              // TimerOffer, TimerContact, TimerPin
	OrderID string    `bson:"order_id"`          //
	Courier string    `bson:"courier,omitempty"` // offer: the courier holding it; contact: the one carrying the parcel
	Ref     int       `bson:"ref"`               // offer number, contact id: a stale timer is a no-op
	Due     time.Time `bson:"due"`               //
}

// OfferTimerID names the timer of an order's n-th offer.
func OfferTimerID(orderID string, n int, courier string) string {
	return "offer/" + orderID + "/" + strconv.Itoa(n) + "/" + courier
}

// ContactTimerID names the timer of a contact window.
func ContactTimerID(orderID string, id int) string {
	return "contact/" + orderID + "/" + strconv.Itoa(id)
}

// PinTimerID names the timer of an order's pin confirmation.
func PinTimerID(orderID string) string { return "pin/" + orderID }

// Event is what happens to an order: one of the types below.
type Event interface{ event() }

// Booked: the order (State, version 1, made by order.Book) was just created.
type Booked struct{}

// Dispatch offers the order to the next courier of its round, if one is
// left; otherwise the order waits for the next dispatch epoch (Decide),
// which will not offer it to Exclude.
type Dispatch struct {
	Exclude  map[string]bool
	Continue bool
}

// Decided: a dispatch epoch (Decide) chose this courier for the order,
// which is waiting for one (Awaiting): it is offered the order.
type Decided struct{ Courier string }

// Unplaced: a dispatch epoch found no courier for an order that may go to
// anyone at any time (Decide's Unplaced): it goes to dispatchers.
type Unplaced struct{}

// Answered is the offered courier's answer.
type Answered struct {
	Courier string
	Accept  bool
	Reason  string // decline: why
}

// TimerDue: a timer the core armed has come due.
type TimerDue struct{ Timer Timer }

// PickedUp: the courier collected the parcel at Where.
type PickedUp struct {
	Courier string
	Where   *geo.Point
}

// Delivered: the courier handed the parcel over (to a relay point when the
// drop-off was moved to one).
type Delivered struct {
	Courier string
	Where   *geo.Point
	Code    string  // the customer's handover code, when the policy asks for it
	CashMAD float64 // cash collected, less change
	Note    string
}

// ReturnedBack: the parcel is back at the merchant.
type ReturnedBack struct {
	Actor order.Actor
	Where *geo.Point
}

// FailureReport is a courier's failed attempt with its evidence: the core
// verifies it, records it and decides it with the failure rules (the
// decision is executed by the Execute it returns as a follow-up).
type FailureReport struct {
	Courier  string
	Where    *geo.Point
	Reason   failure.Reason
	Note     string
	Evidence failure.Evidence // Reason, At and the drop-off are filled in by the core
}

// Execute carries out a failure decision on an order in failed_attempt
// (the rules' own, or a dispatcher's via Resolve).
type Execute struct {
	Decision failure.Decision
	Courier  string
}

// Resolve is a dispatcher's decision of an attempt left to a human.
type Resolve struct {
	Actor  order.Actor
	Action failure.Action
}

// CustomerReply is the customer's answer relayed by the merchant during a
// contact_customer window.
type CustomerReply struct{ Reachable bool }

// Assign is a dispatcher giving the order to a courier directly.
type Assign struct {
	Actor   order.Actor
	Courier string
}

// Unassign is a dispatcher taking the order back before pick-up.
type Unassign struct {
	Actor  order.Actor
	Reason string
}

// Cancel cancels the order (who may when is in the lifecycle table).
type Cancel struct {
	Actor  order.Actor
	Reason string
}

// PinConfirmed sets an informal address's drop-off point, with the price
// and promise the shell quoted for it.
type PinConfirmed struct {
	Actor    order.Actor
	Dropoff  order.Place
	PriceMAD float64
	Later    time.Time // a later honest promise when no courier makes the hour (zero: none)
}

// CourierGone: the courier left (account disabled or erased): its offer
// goes to the next candidate, an assignment not picked up goes back to
// dispatch without it, a parcel it carries goes to a dispatcher.
type CourierGone struct {
	Courier string
	By      order.Actor
	Why     string
}

// ShiftEnded: the courier ended its shift. Its open offer is withdrawn and
// the next candidate offered; an order assigned to it and not picked up is
// unassigned (reason ShiftEndedReason) and dispatched again without it; a
// parcel on board stays with it (a courier finishes what it carries).
type ShiftEnded struct{ Courier string }

// ShiftEndedReason is the reason of what a shift's end does to an order.
const ShiftEndedReason = "shift ended"

// AtRisk sets or clears the order's at-risk flag (the shell's ETA loop
// predicts; the flag is stored when it flips).
type AtRisk struct{ Risk bool }

// Note records an audit event on the order that changes nothing else
// (a wrong handover code, a lock and its release).
type Note struct {
	Kind  order.Kind
	Actor order.Actor
	Why   string
}

func (AtRisk) event()        {}
func (Note) event()          {}
func (Booked) event()        {}
func (Dispatch) event()      {}
func (Decided) event()       {}
func (Unplaced) event()      {}
func (Answered) event()      {}
func (TimerDue) event()      {}
func (PickedUp) event()      {}
func (Delivered) event()     {}
func (ReturnedBack) event()  {}
func (FailureReport) event() {}
func (Execute) event()       {}
func (Resolve) event()       {}
func (CustomerReply) event() {}
func (Assign) event()        {}
func (Unassign) event()      {}
func (Cancel) event()        {}
func (PinConfirmed) event()  {}
func (CourierGone) event()   {}
func (ShiftEnded) event()    {}

// Effect is what the shell carries out after a step: one of the types below.
type Effect interface{ effect() }

// Append records the step's event: the shell claims State's version with
// it (the server: insert under the unique (order, version) index, then
// the order document). At most one per step, always first.
type Append struct{ Event order.Event }

// Publish sends a task to a courier's device (the shell numbers it).
type Publish struct {
	Courier string
	Task    wire.Task
}

// ArmTimer keeps a timer. The shell arms it before committing the Append
// (a crash between leaves a timer that finds nothing to do, never a
// deadline without a timer).
type ArmTimer struct{ Timer Timer }

// CancelTimer drops a timer (one that fires anyway finds nothing to do).
type CancelTimer struct{ ID string }

// Webhook enqueues a merchant webhook.
type Webhook struct {
	Merchant string
	Name     string
	Payload  map[string]any
}

// Notify publishes on the dispatchers' event stream.
type Notify struct {
	Name string
	Data map[string]any
}

// FlagDispatcher: the order now waits for a dispatcher.
type FlagDispatcher struct{ Reason string }

// Assigned: the courier got the order (fairness counter, load, route).
type Assigned struct{ Courier string }

// Released: an order left the courier's hands (load, route); the shell has
// told the device already when it had to (a Publish).
type Released struct{ Courier string }

// Replan: the courier's stops changed (re-plan its route).
type Replan struct{ Courier, Why string }

// FollowUp is the next event of the same order, stepped by the shell after
// this step's effects: one claim per step.
type FollowUp struct{ Event Event }

func (Append) effect()         {}
func (Publish) effect()        {}
func (ArmTimer) effect()       {}
func (CancelTimer) effect()    {}
func (Webhook) effect()        {}
func (Notify) effect()         {}
func (FlagDispatcher) effect() {}
func (Assigned) effect()       {}
func (Released) effect()       {}
func (Replan) effect()         {}
func (FollowUp) effect()       {}

// Input is what the shell knows of the world at the step: the clock, and
// what only the live index, the route plans and the merchant's settings
// tell. The core asks nothing itself.
type Input struct {
	Now time.Time
	// Reachable reports whether a courier may still get an offer (in the
	// index, on shift); nil: everyone.
	Reachable func(courierID string) bool
	// Departs are the planned departures from the courier's stops other
	// than this order's, in route order (Execute, contact window ends).
	Departs []time.Time
	// Policy is the merchant's failure policy name (FailureReport).
	Policy string
	// Courier is where the order's courier stands (Execute: reassign), nil
	// when unknown.
	Courier *geo.Point
}

// Result is a step's outcome.
type Result struct {
	State   State    // the order after the step (the input state when nothing changed)
	Effects []Effect // in order; empty: nothing to do
	// FailureReport: the verification; FailureReport and Execute: the
	// decision (Execute: its Action is the one carried out, a relay that
	// cannot be becomes a return).
	Verification failure.Verification
	Decision     failure.Decision
}

// Changed reports whether the step appended an event.
func (r Result) Changed() bool {
	if len(r.Effects) == 0 {
		return false
	}
	_, ok := r.Effects[0].(Append)
	return ok
}

// Core holds the order rules' configuration: dispatch scoring, the offer
// timeout, the failure rules and their evidence checks, the relay points.
type Core struct {
	Dispatch     *dispatch.Dispatcher
	OfferTimeout time.Duration
	Rules        *failure.Engine
	Verify       failure.VerifyConfig
	Relays       []failure.Relay
	// Zone is the city's clock: relay points' opening hours are read on it
	// (nil: UTC).
	Zone *time.Location
	// MaxOffers is how many couriers an order is offered to, over all its
	// epochs, before it goes to dispatchers (0: DefaultMaxOffers).
	MaxOffers int
}

// local is t on the city's clock.
func (c *Core) local(t time.Time) time.Time {
	if c.Zone == nil {
		return t.UTC()
	}
	return t.In(c.Zone)
}

// ErrPinClosed: the order takes no pin (confirmed already, or dispatched),
// or is not dispatched before its pin.
var ErrPinClosed = errors.New("the drop-off point can no longer be set")

// Actors of the system's own decisions.
var (
	SystemActor = order.Actor{Role: order.RoleSystem, ID: "dispatch"}
	RulesActor  = order.Actor{Role: order.RoleSystem, ID: "failure-rules"}
)

// step is one step under way.
type step struct {
	c    *Core
	cur  State
	next State
	in   Input
	res  Result
}

func (s *step) add(e ...Effect) { s.res.Effects = append(s.res.Effects, e...) }

// apply takes a lifecycle action on next and records its event with the
// stream and webhook it raises.
func (s *step) apply(a order.Action, actor order.Actor) error {
	if a.At.IsZero() {
		a.At = s.in.Now.UTC()
	}
	ev, err := order.Apply(s.next.Order, a, actor)
	if err != nil {
		return err
	}
	s.emit(ev)
	return nil
}

func (s *step) emit(ev order.Event) {
	o := s.next
	name := EventName(ev)
	courier := o.CourierID
	if ev.Action == order.ActOffer || (courier == "" && o.Status == order.StatusOffered) {
		courier = o.OfferedTo // the courier holding the offer
	}
	s.add(Append{Event: ev},
		Notify{Name: name, Data: map[string]any{"order_id": o.ID, "from": ev.From, "to": ev.To, "action": ev.Action,
			"actor": ev.Actor, "courier_id": courier, "at": ev.At, "reason": ev.Reason}},
		Webhook{Merchant: o.MerchantID, Name: name, Payload: WebhookOrder(o, ev)})
}

// mark records a change of the operational state that is not a lifecycle
// transition: a version and an event with From == To, not sent to
// merchants.
func (s *step) mark(kind order.Kind, actor order.Actor, reason string) {
	s.next.Version++
	s.add(Append{Event: order.Event{OrderID: s.next.ID, From: s.next.Status, To: s.next.Status, Action: kind, Actor: actor,
		At: s.in.Now.UTC(), Reason: reason, Version: s.next.Version}})
}

// Step decides what event ev does to the order cur at in.Now: the new
// state and the effects, or an error when the event is refused (the
// order package's sentinels, ErrPinClosed). cur is not modified. A step
// that finds nothing to do (a stale timer, an answered window) returns cur
// and no effects.
func (c *Core) Step(cur State, ev Event, in Input) (Result, error) {
	s := &step{c: c, cur: cur, next: cur.Clone(), in: in}
	var err error
	switch e := ev.(type) {
	case Booked:
		err = s.booked()
	case Dispatch:
		err = s.dispatch(e)
	case Decided:
		err = s.decided(e)
	case Unplaced:
		if Awaiting(s.next) {
			err = s.flag("no courier can take it", SystemActor)
		}
	case Answered:
		err = s.answered(e)
	case TimerDue:
		err = s.timerDue(e.Timer)
	case PickedUp:
		err = s.pickedUp(e)
	case Delivered:
		err = s.delivered(e)
	case ReturnedBack:
		err = s.returned(e)
	case FailureReport:
		err = s.failed(e)
	case Execute:
		err = s.execute(e.Decision, e.Courier)
	case Resolve:
		err = s.resolve(e)
	case CustomerReply:
		err = s.reply(e)
	case Assign:
		err = s.assign(e)
	case Unassign:
		err = s.unassign(e)
	case Cancel:
		err = s.cancel(e)
	case PinConfirmed:
		err = s.pin(e)
	case CourierGone:
		err = s.gone(e)
	case ShiftEnded:
		err = s.shiftEnded(e)
	case AtRisk:
		if !s.next.Status.Terminal() && s.next.Flags.AtRisk != e.Risk {
			s.next.Flags.AtRisk = e.Risk
			s.mark("at_risk", SystemActor, fmt.Sprintf("at risk: %v", e.Risk))
		}
	case Note:
		s.mark(e.Kind, e.Actor, e.Why)
	default:
		err = fmt.Errorf("core: unknown event %T", ev)
	}
	if err != nil {
		return Result{State: cur}, err
	}
	if len(s.res.Effects) == 0 {
		s.res.State = cur
	} else {
		s.res.State = s.next
	}
	return s.res, nil
}

func (s *step) booked() error {
	o := s.next
	if o.Version != 1 || o.Status != order.StatusBooked {
		return fmt.Errorf("order %s: booked at version %d, %s: %w", o.ID, o.Version, o.Status, order.ErrInvalidTransition)
	}
	ev := order.Event{OrderID: o.ID, To: order.StatusBooked, Action: "book", Actor: order.Actor{Role: order.RoleMerchant, ID: o.MerchantID},
		At: o.BookedAt, Version: o.Version}
	payload := WebhookOrder(o, ev)
	payload["handover_code"] = o.HandoverCode // the merchant passes it to the customer
	payload["tracking_token"] = o.TrackingToken
	s.add(Append{Event: ev},
		Notify{Name: "order.booked", Data: map[string]any{"order_id": o.ID, "promise_by": o.PromiseBy, "merchant_id": o.MerchantID}},
		Webhook{Merchant: o.MerchantID, Name: "order.booked", Payload: payload})
	if o.PinPending() {
		s.add(ArmTimer{Timer{ID: PinTimerID(o.ID), Kind: TimerPin, OrderID: o.ID, Due: o.Pin.ConfirmBy}})
	}
	return nil // the next dispatch epoch places it (Decide)
}

// dispatch goes on with the order's offer round: the next courier of the
// round, if one is left. A new round is not started here: an order
// waiting for a courier is placed by the next dispatch epoch (Decide, then
// Decided), so the couriers to exclude (Exclude) are recorded in the
// round for the epochs to skip. When a round has offered MaxOffers
// couriers in all, the order goes to dispatchers.
func (s *step) dispatch(e Dispatch) error {
	n := &s.next
	if n.Status != order.StatusBooked || n.PinPending() {
		return nil // offered, assigned, cancelled meanwhile; or waiting for its pin
	}
	if !roundOpen(n.Round) {
		if e.Continue {
			if n.Round != nil && len(n.Round.Ranked) >= s.c.maxOffers() {
				return s.flag("no courier accepted or none available", SystemActor)
			}
			return nil // the next epoch places it
		}
		return s.exclude(e.Exclude)
	}
	return s.offerNext()
}

// roundOpen reports whether a booked order's offer round has a courier
// left to offer (no offer is out: the order would be offered).
func roundOpen(r *dispatch.RoundState) bool {
	return r != nil && !r.Done && r.Next < len(r.Ranked)
}

// exclude records couriers the epochs must not offer the order to (its
// round's offered couriers), for an order waiting for an epoch.
func (s *step) exclude(ex map[string]bool) error {
	n := &s.next
	var add []string
	for c := range ex {
		if n.Round == nil || !slices.Contains(n.Round.Ranked, c) {
			add = append(add, c)
		}
	}
	if len(add) == 0 {
		return nil
	}
	slices.Sort(add)
	st := dispatch.RoundState{OrderID: n.ID, Timeout: s.c.OfferTimeout}
	if n.Round != nil {
		st = n.Round.Clone()
	}
	st.Ranked = append(st.Ranked, add...)
	st.Next, st.Done = len(st.Ranked), false
	n.Round = &st
	s.mark("dispatch_excluded", SystemActor, "not to be offered again: "+strings.Join(add, ", "))
	return nil
}

// decided offers the order to the courier a dispatch epoch chose for it
// (the round goes on from the couriers offered before). An order no
// longer waiting (offered, assigned, flagged, cancelled meanwhile) or a
// courier no longer reachable finds nothing to do: the next epoch decides
// again.
func (s *step) decided(e Decided) error {
	n := &s.next
	if !Awaiting(*n) || s.in.Reachable != nil && !s.in.Reachable(e.Courier) {
		return nil
	}
	st := dispatch.RoundState{OrderID: n.ID, Timeout: s.c.OfferTimeout}
	if n.Round != nil {
		st = n.Round.Clone()
	}
	if slices.Contains(st.Ranked, e.Courier) {
		return nil // offered before (declined, let expire, or excluded)
	}
	for i := range st.Log {
		if st.Log[i].State == dispatch.OfferPending { // withdrawn or expired: the order is booked, no offer is out
			st.Log[i].State, st.Log[i].AnswerAt = dispatch.OfferExpired, s.in.Now
		}
	}
	st.Next, st.Done = len(st.Ranked), false
	st.Ranked = append(st.Ranked, e.Courier)
	n.Round = &st
	return s.offerNext()
}

// offerNext sends the next offer of the order's round; a courier that left
// since the round was ranked is skipped.
func (s *step) offerNext() error {
	n := &s.next
	now := s.in.Now
	r := dispatch.RestoreOfferRound(*n.Round)
	off, err := r.Next(now)
	for err == nil && s.in.Reachable != nil && !s.in.Reachable(off.CourierID) { // left since the round was ranked
		_ = r.Decline(off.CourierID, now)
		off, err = r.Next(now)
	}
	if errors.Is(err, dispatch.ErrNoCandidate) {
		if len(n.Round.Ranked) >= s.c.maxOffers() {
			return s.flag("no courier accepted or none available", SystemActor)
		}
		return nil // the next epoch places it
	}
	if errors.Is(err, dispatch.ErrOfferPending) {
		return nil // an offer runs: its answer or deadline goes on
	}
	if err != nil {
		return err
	}
	st := r.State()
	n.Round = &st
	if err := s.apply(order.Action{Kind: order.ActOffer, CourierID: off.CourierID}, SystemActor); err != nil {
		return err
	}
	k := len(st.Log)
	exp := off.ExpiresAt.UTC()
	s.add(ArmTimer{Timer{ID: OfferTimerID(n.ID, k, off.CourierID), Kind: TimerOffer, OrderID: n.ID, Courier: off.CourierID, Ref: k, Due: exp}},
		Publish{Courier: off.CourierID, Task: wire.Task{Type: wire.TaskOffer, OrderID: n.ID, ExpiresAt: &exp, Order: TaskOrder(*n)}})
	return nil
}

// flag hands the order to dispatchers (its round ends).
func (s *step) flag(why string, actor order.Actor) error {
	n := &s.next
	if n.Flags.NeedsDispatcher && n.Round == nil {
		return nil
	}
	n.Flags.NeedsDispatcher = true
	n.Round = nil
	s.mark("needs_dispatcher", actor, why)
	s.add(FlagDispatcher{Reason: why})
	return nil
}

// cancelOffer cancels the timer of the current state's offer.
func (s *step) cancelOffer() {
	if r := s.cur.Round; r != nil && len(r.Log) > 0 {
		last := r.Log[len(r.Log)-1]
		s.add(CancelTimer{OfferTimerID(s.cur.ID, len(r.Log), last.CourierID)})
	}
}

func (s *step) answered(e Answered) error {
	n := &s.next
	actor := order.Actor{Role: order.RoleCourier, ID: e.Courier}
	if e.Accept {
		if n.Round != nil {
			if err := dispatch.RestoreOfferRound(*n.Round).Accept(e.Courier, s.in.Now); err != nil {
				return fmt.Errorf("%w: %v", order.ErrInvalidTransition, err)
			}
		}
		n.Round = nil
		if err := s.apply(order.Action{Kind: order.ActAccept, CourierID: e.Courier}, actor); err != nil {
			return err
		}
		s.cancelOffer()
		s.assigned()
		return nil
	}
	if n.Round != nil {
		r := dispatch.RestoreOfferRound(*n.Round)
		if err := r.Decline(e.Courier, s.in.Now); err == nil {
			st := r.State()
			n.Round = &st
		}
	}
	if err := s.apply(order.Action{Kind: order.ActDecline, Reason: e.Reason}, actor); err != nil {
		return err
	}
	s.cancelOffer()
	if n.Round != nil {
		s.add(FollowUp{Dispatch{Continue: true}})
	}
	return nil
}

// assigned tells the courier and updates its load and route.
func (s *step) assigned() {
	n := s.next
	s.add(Publish{Courier: n.CourierID, Task: wire.Task{Type: wire.TaskAssignment, OrderID: n.ID, Order: TaskOrder(n)}},
		Assigned{Courier: n.CourierID}, Replan{Courier: n.CourierID, Why: "assigned " + n.ID})
}

// released tells a courier an order left its hands (when why is given)
// and updates its load and route.
func (s *step) released(courier, why string) {
	if courier == "" {
		return
	}
	if why != "" {
		s.add(Publish{Courier: courier, Task: wire.Task{Type: wire.TaskCancellation, OrderID: s.next.ID, Reason: why}})
	}
	s.add(Released{Courier: courier}, Replan{Courier: courier, Why: why})
}

func (s *step) timerDue(t Timer) error {
	n := &s.next
	switch t.Kind {
	case TimerOffer:
		if n.Status != order.StatusOffered || n.OfferedTo != t.Courier || n.Round == nil || len(n.Round.Log) != t.Ref {
			return nil // answered, withdrawn or superseded
		}
		if err := s.apply(order.Action{Kind: order.ActExpire, Reason: "offer timeout"}, SystemActor); err != nil {
			return err
		}
		s.add(Publish{Courier: t.Courier, Task: wire.Task{Type: wire.TaskOfferExpired, OrderID: n.ID}}, FollowUp{Dispatch{Continue: true}})
		return nil
	case TimerContact:
		return s.closeContact(t.Ref, NoReply, "no reply within the window")
	case TimerPin:
		if !n.PinPending() || n.Status != order.StatusBooked {
			return nil
		}
		return s.flag("the customer did not confirm the drop-off point in time", SystemActor)
	}
	return fmt.Errorf("core: unknown timer kind %q", t.Kind)
}

func (s *step) pickedUp(e PickedUp) error {
	if err := s.apply(order.Action{Kind: order.ActPickup, Where: e.Where}, order.Actor{Role: order.RoleCourier, ID: e.Courier}); err != nil {
		return err
	}
	s.add(Replan{Courier: e.Courier, Why: "picked up " + s.next.ID})
	return nil
}

func (s *step) delivered(e Delivered) error {
	kind := order.ActDeliver
	if s.next.RelayID != "" {
		kind = order.ActDeliverRelay
	}
	if err := s.apply(order.Action{Kind: kind, Where: e.Where, Code: e.Code, CashMAD: e.CashMAD, Note: e.Note},
		order.Actor{Role: order.RoleCourier, ID: e.Courier}); err != nil {
		return err
	}
	if c := s.cur.Contact; c != nil { // delivered while a reply was awaited
		s.add(CancelTimer{ContactTimerID(s.next.ID, c.ID)})
	}
	s.clearOps()
	s.released(e.Courier, "")
	return nil
}

func (s *step) returned(e ReturnedBack) error {
	courier := s.next.CourierID
	if err := s.apply(order.Action{Kind: order.ActReturned, Where: e.Where}, e.Actor); err != nil {
		return err
	}
	s.clearOps()
	s.released(courier, "")
	return nil
}

// clearOps drops the pending operational state (round, contact window,
// not-before) with a change that ends or restarts the order's delivery.
func (s *step) clearOps() {
	s.next.Round, s.next.Contact, s.next.NotBefore = nil, nil, time.Time{}
}

func (s *step) failed(e FailureReport) error {
	n := &s.next
	if n.CourierID != e.Courier {
		return order.ErrNotFound // not yours: as if it did not exist
	}
	now := s.in.Now.UTC()
	ev := e.Evidence
	ev.Reason, ev.At, ev.DropLat, ev.DropLng = e.Reason, now, n.Dropoff.Lat, n.Dropoff.Lng
	v := failure.Verify(s.c.Verify, ev)
	s.res.Verification = v
	prevContact := s.cur.Contact
	if err := s.apply(order.Action{Kind: order.ActFail, Where: e.Where, Reason: string(e.Reason), Note: e.Note, Verified: v.Verified},
		order.Actor{Role: order.RoleCourier, ID: e.Courier}); err != nil {
		return err
	}
	s.clearOps()
	if prevContact != nil {
		s.add(CancelTimer{ContactTimerID(n.ID, prevContact.ID)})
	}
	dec := s.c.Rules.Decide(failure.Situation{Reason: e.Reason, Attempt: len(n.Attempts), MinutesLeft: n.PromiseBy.Sub(now).Minutes(),
		MerchantPolicy: s.in.Policy, COD: n.CODAmountMAD > 0, ParcelSize: string(n.Size), Verified: v.Verified})
	s.res.Decision = dec
	s.add(FollowUp{Execute{Decision: dec, Courier: e.Courier}})
	return nil
}

// execute carries out a decision on an order in failed_attempt: its
// effect is AfterFailure's.
func (s *step) execute(dec failure.Decision, courier string) error {
	n := &s.next
	if n.Status != order.StatusFailedAttempt {
		return fmt.Errorf("%w: order is %s, not failed_attempt", order.ErrInvalidTransition, n.Status)
	}
	now := s.in.Now.UTC()
	eff := AfterFailure(dec, Situation{Now: s.c.local(now), Dropoff: geo.Point{Lat: n.Dropoff.Lat, Lng: n.Dropoff.Lng},
		AllowRelay: n.Policy.AllowRelay, Relays: s.c.Relays, Departs: s.in.Departs})
	s.res.Decision = dec
	s.res.Decision.Action = eff.Action
	why := fmt.Sprintf("rule %s: %s", eff.Rule, eff.Action)
	switch eff.Action {
	case failure.RetryLater, failure.ContactCustomer:
		// A contact window holds the parcel with the courier; the merchant
		// relays the customer's answer (CustomerReply), or the rule's then
		// applies when the window closes (its timer).
		n.NotBefore, n.Contact = eff.NotBefore, nil
		if err := s.apply(order.Action{Kind: order.ActReattempt, Reason: why}, RulesActor); err != nil {
			return err
		}
		if w := eff.Window; w != nil {
			c := Contact{ID: n.Version, Courier: courier, Until: w.Until, Then: w.Then} // named by the version that opens it
			n.Contact = &c
			s.add(ArmTimer{Timer{ID: ContactTimerID(n.ID, c.ID), Kind: TimerContact, OrderID: n.ID, Courier: courier, Ref: c.ID, Due: c.Until}},
				Webhook{Merchant: n.MerchantID, Name: "order.contact_customer", Payload: map[string]any{"order_id": n.ID,
					"reason": n.Attempts[len(n.Attempts)-1].Reason, "reply_window_minutes": dec.Params.ReplyWindowMinutes,
					"reply_by": w.Until, "at": now}})
		}
		s.add(Replan{Courier: courier, Why: why})
	case failure.RelayPoint:
		relay := eff.Relay
		n.RelayID = relay.ID
		n.Dropoff = order.Place{Lat: relay.Lat, Lng: relay.Lng, Address: "Relay point " + relay.Name}
		if err := s.apply(order.Action{Kind: order.ActReattempt, Reason: why + " " + relay.ID}, RulesActor); err != nil {
			return err
		}
		s.add(Replan{Courier: courier, Why: why})
	case failure.ReturnToMerchant:
		if err := s.apply(order.Action{Kind: order.ActReturn, Reason: why}, RulesActor); err != nil {
			return err
		}
		s.add(Replan{Courier: courier, Why: why})
	case failure.Reassign:
		// The parcel is on board: the next courier picks it up where this one is.
		handover := order.Place{Lat: n.Dropoff.Lat, Lng: n.Dropoff.Lng, Address: "hand-over from courier"}
		if p := s.in.Courier; p != nil {
			handover = order.Place{Lat: p.Lat, Lng: p.Lng, Address: "hand-over from courier"}
		}
		if n.OrigPickup == nil {
			p := n.Pickup
			n.OrigPickup = &p
		}
		n.Pickup = handover
		if err := s.apply(order.Action{Kind: order.ActReassign, Reason: why}, RulesActor); err != nil {
			return err
		}
		s.released(courier, "handed to another courier")
		s.add(FollowUp{Dispatch{Exclude: map[string]bool{courier: true}}})
	case failure.Cancel:
		if err := s.apply(order.Action{Kind: order.ActCancel, Reason: why}, RulesActor); err != nil {
			return err
		}
		s.released(courier, "")
	case failure.DispatcherReview:
		if err := s.flag("unverified failed attempt: "+dec.Rule, SystemActor); err != nil {
			return err
		}
		s.add(Replan{Courier: courier, Why: "awaiting dispatcher review of " + n.ID})
	default:
		return fmt.Errorf("unknown rule action %q", dec.Action)
	}
	return nil
}

func (s *step) resolve(e Resolve) error {
	n := &s.next
	if n.Status != order.StatusFailedAttempt {
		return fmt.Errorf("%w: order is %s, not failed_attempt", order.ErrInvalidTransition, n.Status)
	}
	switch e.Action {
	case failure.RetryLater, failure.Reassign, failure.ReturnToMerchant, failure.Cancel, failure.RelayPoint:
	default:
		return fmt.Errorf("%w: action must be retry_later, reassign, relay_point, return_to_merchant or cancel", order.ErrInvalidAction)
	}
	if e.Action == failure.RelayPoint {
		// The rules fall back to a return when a relay is not possible; a
		// dispatcher who asks for one is told why not instead.
		if !n.Policy.AllowRelay {
			return fmt.Errorf("%w: relay_point refused: the merchant's policy does not allow relay points", order.ErrInvalidTransition)
		}
		if _, _, err := failure.NearestRelay(s.c.Relays, n.Dropoff.Lat, n.Dropoff.Lng, s.c.local(s.in.Now)); err != nil {
			return fmt.Errorf("%w: relay_point refused: no open relay point near the drop-off", order.ErrInvalidTransition)
		}
	}
	return s.execute(failure.Decision{Action: e.Action, Rule: "dispatcher"}, n.CourierID)
}

// closeContact closes the contact window contact without a "reachable"
// reply, once: the window's end and a "not reachable" reply race through
// the same claimed version. What it does is CloseContact's.
func (s *step) closeContact(contact int, how Closing, why string) error {
	n := &s.next
	pc := n.Contact
	if pc == nil || pc.ID != contact || n.Status != order.StatusReattemptScheduled {
		return nil // answered, superseded, delivered, failed again or changed by a dispatcher
	}
	eff := CloseContact(Window{Until: pc.Until, Then: pc.Then}, how, s.in.Now, s.in.Departs)
	reason := "contact_customer then " + string(pc.Then.Then) + ": " + why
	n.Contact = nil
	switch eff.Action {
	case failure.ReturnToMerchant:
		if err := s.apply(order.Action{Kind: order.ActReturn, Reason: reason}, RulesActor); err != nil {
			return err
		}
	case failure.Cancel:
		if err := s.apply(order.Action{Kind: order.ActCancel, Reason: reason}, RulesActor); err != nil {
			return err
		}
		s.clearOps()
		s.released(pc.Courier, "")
		return nil
	case failure.RetryLater:
		n.NotBefore = eff.NotBefore
		s.mark("contact_closed", RulesActor, reason)
		s.add(Notify{Name: "order.contact_closed", Data: map[string]any{"order_id": n.ID, "then": "retry_later", "reason": why}})
	default: // relay, reassign: a dispatcher decides with the parcel in hand
		n.Flags.NeedsDispatcher = true
		s.mark("needs_dispatcher", RulesActor, reason)
		s.add(FlagDispatcher{Reason: reason})
	}
	s.add(Replan{Courier: pc.Courier, Why: reason})
	return nil
}

func (s *step) reply(e CustomerReply) error {
	n := &s.next
	pc := n.Contact
	if pc == nil || n.Status != order.StatusReattemptScheduled {
		return fmt.Errorf("%w: no customer contact is pending for this order", order.ErrInvalidTransition)
	}
	if !e.Reachable {
		if err := s.closeContact(pc.ID, NotReachable, "customer not reachable"); err != nil {
			return err
		}
		s.add(CancelTimer{ContactTimerID(n.ID, pc.ID)})
		return nil
	}
	n.Contact = nil
	n.NotBefore = CloseContact(Window{Until: pc.Until, Then: pc.Then}, Reachable, s.in.Now, nil).NotBefore
	s.mark("contact_reply", order.Actor{Role: order.RoleMerchant, ID: n.MerchantID}, "customer reachable")
	s.add(CancelTimer{ContactTimerID(n.ID, pc.ID)},
		Notify{Name: "order.contact_closed", Data: map[string]any{"order_id": n.ID, "then": "retry_now", "reason": "customer reachable"}},
		Replan{Courier: pc.Courier, Why: "customer reachable: retry"})
	return nil
}

func (s *step) assign(e Assign) error {
	n := &s.next
	if n.PinPending() {
		return fmt.Errorf("%w: the drop-off point is not confirmed yet (set it with POST /v1/orders/%s/pin)", ErrPinClosed, n.ID)
	}
	offered := n.OfferedTo
	n.Round = nil
	if err := s.apply(order.Action{Kind: order.ActAssign, CourierID: e.Courier}, e.Actor); err != nil {
		return err
	}
	s.cancelOffer()
	if offered != "" && offered != e.Courier {
		s.add(Publish{Courier: offered, Task: wire.Task{Type: wire.TaskCancellation, OrderID: n.ID, Reason: "assigned to another courier"}})
	}
	s.assigned()
	return nil
}

func (s *step) unassign(e Unassign) error {
	return s.unassignTelling(e, "unassigned by a dispatcher")
}

// unassignTelling unassigns the order, tells the courier why (tell), and
// dispatches it again without that courier.
func (s *step) unassignTelling(e Unassign, tell string) error {
	courier := s.next.CourierID
	if err := s.apply(order.Action{Kind: order.ActUnassign, Reason: e.Reason}, e.Actor); err != nil {
		return err
	}
	s.released(courier, tell)
	s.add(FollowUp{Dispatch{Exclude: map[string]bool{courier: true}}})
	return nil
}

func (s *step) cancel(e Cancel) error {
	n := &s.next
	courier, offered, contact := n.CourierID, n.OfferedTo, n.Contact
	if err := s.apply(order.Action{Kind: order.ActCancel, Reason: e.Reason}, e.Actor); err != nil {
		return err
	}
	s.clearOps()
	s.cancelOffer()
	if contact != nil {
		s.add(CancelTimer{ContactTimerID(n.ID, contact.ID)})
	}
	if n.PinPending() {
		s.add(CancelTimer{PinTimerID(n.ID)})
	}
	switch {
	case courier != "":
		s.released(courier, "order cancelled")
	case offered != "":
		s.add(Publish{Courier: offered, Task: wire.Task{Type: wire.TaskCancellation, OrderID: n.ID, Reason: "order cancelled"}})
	}
	return nil
}

func (s *step) pin(e PinConfirmed) error {
	n := &s.next
	if !n.PinPending() || n.Status != order.StatusBooked {
		return fmt.Errorf("%w: the order is %s", ErrPinClosed, n.Status)
	}
	now := s.in.Now.UTC()
	n.Dropoff = e.Dropoff
	n.Pin.Status, n.Pin.ConfirmedAt, n.Pin.ConfirmedBy = order.PinConfirmed, now, string(e.Actor.Role)
	n.PriceMAD = e.PriceMAD
	// The hour starts when the order can be dispatched; a later honest
	// promise when no courier can make the hour.
	n.PromiseBy = now.Add(order.Promise)
	if e.Later.After(n.PromiseBy) {
		n.PromiseBy = e.Later.UTC()
	}
	n.Flags.NeedsDispatcher = false
	s.mark("pin_confirmed", e.Actor, fmt.Sprintf("drop-off point set by the %s", e.Actor.Role))
	s.add(CancelTimer{PinTimerID(n.ID)},
		Notify{Name: "order.pin_confirmed", Data: map[string]any{"order_id": n.ID, "merchant_id": n.MerchantID, "by": string(e.Actor.Role)}})
	return nil
}

func (s *step) gone(e CourierGone) error {
	n := &s.next
	why := e.Why
	if why == "" {
		why = "courier account disabled"
	}
	switch {
	case n.Status == order.StatusOffered && n.OfferedTo == e.Courier:
		return s.withdraw(e.Courier, why)
	case n.CourierID == e.Courier && n.Status == order.StatusAssigned:
		return s.unassign(Unassign{Actor: e.By, Reason: why})
	case n.CourierID == e.Courier && !n.Status.Terminal():
		return s.flag(why+" while carrying the order", SystemActor)
	}
	return nil
}

func (s *step) shiftEnded(e ShiftEnded) error {
	n := &s.next
	switch {
	case n.Status == order.StatusOffered && n.OfferedTo == e.Courier:
		if err := s.withdraw(e.Courier, ShiftEndedReason); err != nil {
			return err
		}
		s.add(Publish{Courier: e.Courier, Task: wire.Task{Type: wire.TaskOfferExpired, OrderID: n.ID, Reason: ShiftEndedReason}})
	case n.Status == order.StatusAssigned && n.CourierID == e.Courier:
		return s.unassignTelling(Unassign{Actor: SystemActor, Reason: ShiftEndedReason}, ShiftEndedReason)
	}
	return nil // on board, or not the courier's: it finishes what it carries
}

// withdraw takes the open offer back from courier (an expiry for why) and
// offers the order to the next candidate of its round, or a new round
// without that courier.
func (s *step) withdraw(courier, why string) error {
	n := &s.next
	if n.Round != nil {
		r := dispatch.RestoreOfferRound(*n.Round)
		if err := r.Decline(courier, s.in.Now); err == nil {
			st := r.State()
			n.Round = &st
		}
	}
	if err := s.apply(order.Action{Kind: order.ActExpire, Reason: why}, SystemActor); err != nil {
		return err
	}
	s.cancelOffer()
	s.add(FollowUp{Dispatch{Exclude: map[string]bool{courier: true}}})
	return nil
}

// EventName is the stream and webhook name of a transition: one name per
// kind of happening (an expired offer or an unassign is not a booking).
func EventName(ev order.Event) string {
	switch ev.Action {
	case "book":
		return "order.booked"
	case order.ActOffer:
		return "order.offered"
	case order.ActDecline:
		return "order.offer_declined"
	case order.ActExpire:
		return "order.offer_expired"
	case order.ActAccept, order.ActAssign:
		return "order.assigned"
	case order.ActUnassign:
		return "order.unassigned"
	case order.ActReassign:
		return "order.reassigned"
	case order.ActDeliver, order.ActDeliverRelay:
		return "order.delivered"
	case order.ActReattempt:
		return "order.reattempt_scheduled"
	case order.ActReturn:
		return "order.returning"
	}
	return "order." + string(ev.To)
}

// WebhookOrder is a merchant's view of a transition: the reason only as a
// failed attempt's code (other reasons are free text: a dispatcher's note,
// a rule or staff name), failed attempts without their notes.
func WebhookOrder(o State, ev order.Event) map[string]any {
	m := map[string]any{"order_id": o.ID, "status": o.Status, "previous_status": ev.From, "action": ev.Action,
		"at": ev.At, "promise_by": o.PromiseBy, "courier_id": o.CourierID}
	if ev.Action == order.ActFail && ev.Reason != "" {
		m["reason"] = ev.Reason // a failure reason code; other reasons are internal text (notes, rule names)
	}
	if n := len(o.Attempts); n > 0 {
		attempts := make([]order.Attempt, n)
		for i, a := range o.Attempts {
			a.Note = ""
			attempts[i] = a
		}
		m["attempts"] = attempts
	}
	return m
}

// TaskOrder is what a courier's device is told of an order.
func TaskOrder(o State) *wire.TaskOrder {
	first := o.CustomerName
	for i, r := range first {
		if r == ' ' {
			first = first[:i]
			break
		}
	}
	t := &wire.TaskOrder{ID: o.ID, Pickup: wire.Place(o.Pickup), Dropoff: wire.Place(o.Dropoff), PromiseBy: o.PromiseBy,
		ParcelSize: string(o.Size), CODAmountMAD: o.CODAmountMAD, CustomerFirst: first}
	if !o.ReadyAt.IsZero() {
		ready := o.ReadyAt
		t.ReadyAt = &ready
	}
	return t
}

// Needs is what of the world Step needs for an event: the shell gathers
// only that into the Input (a candidate query is the costly part).
type Needs struct {
	Reachable bool   // who may still get an offer
	Policy    bool   // the merchant's failure policy
	Departs   string // the courier whose other planned departures count
	Position  string // the courier whose position counts (a reassign's hand-over)
}

// Needs says what Step(st, ev, ·) will read of its Input besides the clock.
func (c *Core) Needs(st State, ev Event) Needs {
	var n Needs
	switch e := ev.(type) {
	case Dispatch, Decided:
		n.Reachable = true
	case FailureReport:
		n.Policy = true
	case Execute:
		n.Departs, n.Position = e.Courier, e.Courier
	case Resolve:
		n.Departs, n.Position = st.CourierID, st.CourierID
	case TimerDue, CustomerReply:
		if st.Contact != nil {
			n.Departs = st.Contact.Courier
		}
	}
	return n
}
