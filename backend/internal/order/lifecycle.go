package order

import (
	"github.com/tawsil/tawsil/backend/internal/geo"

	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// Role is who acts on an order.
type Role string

// Roles, as carried in the JWT role claim; System is the backend itself
// (offer loop timers, failure rules).
const (
	RoleMerchant   Role = "merchant"
	RoleDispatcher Role = "dispatcher"
	RoleCourier    Role = "courier"
	RoleAdmin      Role = "admin"
	RoleSystem     Role = "system"
	// RoleCustomer is the end customer acting through the tracking link
	// (confirming a drop-off pin); it has no token and no account.
	RoleCustomer Role = "customer"
)

// Actor is the role and id of whoever takes an action.
type Actor struct {
	Role Role   `json:"role"`
	ID   string `json:"id"`
}

// Kind names an action on an order.
type Kind string

// Actions. See Transitions for where each is legal and for whom.
const (
	ActOffer        Kind = "offer"         // dispatch offers the order to Action.CourierID
	ActDecline      Kind = "decline"       // the offered courier says no
	ActExpire       Kind = "expire"        // the offer timed out
	ActAccept       Kind = "accept"        // the offered courier takes it
	ActAssign       Kind = "assign"        // a dispatcher assigns Action.CourierID directly
	ActUnassign     Kind = "unassign"      // back to dispatch before pick-up
	ActPickup       Kind = "pickup"        // parcel collected
	ActDeliver      Kind = "deliver"       // handed to the customer
	ActDeliverRelay Kind = "deliver_relay" // left at a relay point for the customer
	ActFail         Kind = "fail"          // a delivery attempt failed (Action.Reason is the code)
	ActReattempt    Kind = "reattempt"     // rules: retry later in the same route
	ActReassign     Kind = "reassign"      // rules: hand to another courier (back to booked)
	ActReturn       Kind = "return"        // rules: bring it back to the merchant
	ActReturned     Kind = "returned"      // the merchant has it back
	ActCancel       Kind = "cancel"
)

// Kinds lists every action.
func Kinds() []Kind {
	return []Kind{
		ActOffer, ActDecline, ActExpire, ActAccept, ActAssign, ActUnassign, ActPickup,
		ActDeliver, ActDeliverRelay, ActFail, ActReattempt, ActReassign, ActReturn,
		ActReturned, ActCancel,
	}
}

// Transition is one row of the lifecycle table.
type Transition struct {
	From   Status
	Action Kind
	To     Status
	Roles  []Role
}

var (
	dispatchers   = []Role{RoleDispatcher, RoleAdmin}
	staff         = []Role{RoleDispatcher, RoleAdmin, RoleSystem}
	courier       = []Role{RoleCourier}
	courierOrOps  = []Role{RoleCourier, RoleDispatcher, RoleAdmin}
	merchantOrOps = []Role{RoleMerchant, RoleDispatcher, RoleAdmin}
)

// transitions is THE lifecycle: the only place that says which action
// moves an order from where to where, and who may take it.
//
// Cancellation: the merchant may cancel until pick-up; dispatchers and
// admins may cancel any non-terminal order; couriers never cancel (they
// decline, or fail an attempt); the system cancels only as a failure-rule
// decision.
var transitions = []Transition{
	{StatusBooked, ActOffer, StatusOffered, staff},
	{StatusBooked, ActAssign, StatusAssigned, dispatchers},
	{StatusBooked, ActCancel, StatusCancelled, merchantOrOps},

	{StatusOffered, ActAccept, StatusAssigned, courier},
	{StatusOffered, ActDecline, StatusBooked, courier},
	{StatusOffered, ActExpire, StatusBooked, []Role{RoleSystem}},
	{StatusOffered, ActAssign, StatusAssigned, dispatchers}, // a dispatcher overrides the offer loop
	{StatusOffered, ActCancel, StatusCancelled, merchantOrOps},

	{StatusAssigned, ActPickup, StatusPickedUp, courier},
	{StatusAssigned, ActUnassign, StatusBooked, staff},
	{StatusAssigned, ActCancel, StatusCancelled, merchantOrOps},

	{StatusPickedUp, ActDeliver, StatusDelivered, courier},
	{StatusPickedUp, ActDeliverRelay, StatusDelivered, courier},
	{StatusPickedUp, ActFail, StatusFailedAttempt, courier},
	{StatusPickedUp, ActCancel, StatusCancelled, dispatchers},

	{StatusFailedAttempt, ActReattempt, StatusReattemptScheduled, staff},
	{StatusFailedAttempt, ActReassign, StatusBooked, staff},
	{StatusFailedAttempt, ActReturn, StatusReturning, staff},
	{StatusFailedAttempt, ActCancel, StatusCancelled, staff},

	{StatusReattemptScheduled, ActDeliver, StatusDelivered, courier},
	{StatusReattemptScheduled, ActDeliverRelay, StatusDelivered, courier},
	{StatusReattemptScheduled, ActFail, StatusFailedAttempt, courier},
	{StatusReattemptScheduled, ActReturn, StatusReturning, staff}, // staff: a rule's "then" after the reply window
	{StatusReattemptScheduled, ActCancel, StatusCancelled, staff},

	{StatusReturning, ActReturned, StatusReturned, courierOrOps},
	{StatusReturning, ActCancel, StatusCancelled, dispatchers},
}

type tkey struct {
	from Status
	act  Kind
}

// table indexes transitions; built once from the data above.
var table = func() map[tkey]Transition {
	m := make(map[tkey]Transition, len(transitions))
	for _, t := range transitions {
		k := tkey{t.From, t.Action}
		if _, dup := m[k]; dup {
			panic(fmt.Sprintf("order: duplicate transition %s/%s", t.From, t.Action))
		}
		m[k] = t
	}
	return m
}()

// Transitions returns a copy of the lifecycle table.
func Transitions() []Transition {
	out := make([]Transition, len(transitions))
	for i, t := range transitions {
		t.Roles = slices.Clone(t.Roles)
		out[i] = t
	}
	return out
}

// Lookup returns the transition for action a from status s.
func Lookup(s Status, a Kind) (Transition, bool) {
	t, ok := table[tkey{s, a}]
	return t, ok
}

// Point is an optional place where an action happened (the one geo.Point).
type Point = geo.Point

// Action is one request to move an order.
type Action struct {
	Kind      Kind
	At        time.Time // required: the caller owns the clock
	Where     *Point    // optional: where it happened (courier position)
	Reason    string    // why: the failure reason code (required for fail), or the rule or note behind a staff action
	Note      string
	CourierID string  // offer and assign: the courier
	Code      string  // deliver: handover code from the customer, when the policy requires it
	CashMAD   float64 // deliver: cash collected on delivery
	Verified  bool    // fail: evidence was verified
}

// Event is the record of one transition, appended to order_events.
type Event struct {
	OrderID string    `json:"order_id"`
	From    Status    `json:"from"`
	To      Status    `json:"to"`
	Action  Kind      `json:"action"`
	Actor   Actor     `json:"actor"`
	At      time.Time `json:"at"`
	Lat     *float64  `json:"lat,omitempty"`
	Lng     *float64  `json:"lng,omitempty"`
	Reason  string    `json:"reason,omitempty"`
	Note    string    `json:"note,omitempty"`
	Version int       `json:"version"` // the order's version after the transition
}

// Apply moves o by action a taken by actor, and returns the event.
//
// Errors (wrapped; o is unchanged on any error):
// ErrInvalidTransition when a is not legal from o.Status;
// ErrForbidden when the actor's role may not take it, or a courier acts on
// an order that is not theirs, or a merchant on another merchant's order;
// ErrInvalidAction when a lacks what it needs; ErrHandoverCode when the
// policy requires the customer's code and it does not match.
func Apply(o *Order, a Action, actor Actor) (Event, error) {
	t, ok := Lookup(o.Status, a.Kind)
	if !ok {
		return Event{}, fmt.Errorf("order %s: %s from %s: %w", o.ID, a.Kind, o.Status, ErrInvalidTransition)
	}
	if err := authorize(o, t, actor); err != nil {
		return Event{}, fmt.Errorf("order %s: %s by %s %q: %w", o.ID, a.Kind, actor.Role, actor.ID, err)
	}
	if err := validate(o, a); err != nil {
		return Event{}, fmt.Errorf("order %s: %s: %w", o.ID, a.Kind, err)
	}

	from := o.Status
	effect(o, a)
	// A transition changes what a dispatcher was asked about (resolved,
	// delivered, returned, cancelled, re-dispatched): the flag goes, and
	// whoever still needs a human after it raises it again.
	o.Flags.NeedsDispatcher = false
	o.Status = t.To
	o.Version++

	ev := Event{
		OrderID: o.ID, From: from, To: t.To, Action: a.Kind, Actor: actor, At: a.At,
		Reason: a.Reason, Note: a.Note, Version: o.Version,
	}
	if a.Where != nil {
		lat, lng := a.Where.Lat, a.Where.Lng
		ev.Lat, ev.Lng = &lat, &lng
	}
	return ev, nil
}

func authorize(o *Order, t Transition, actor Actor) error {
	if !slices.Contains(t.Roles, actor.Role) {
		return ErrForbidden
	}
	switch actor.Role {
	case RoleCourier:
		owner := o.CourierID
		if t.From == StatusOffered {
			owner = o.OfferedTo
		}
		if actor.ID == "" || actor.ID != owner {
			return fmt.Errorf("%w: not this courier's order", ErrForbidden)
		}
	case RoleMerchant:
		if actor.ID == "" || actor.ID != o.MerchantID {
			return fmt.Errorf("%w: not this merchant's order", ErrForbidden)
		}
	}
	return nil
}

func validate(o *Order, a Action) error {
	if a.At.IsZero() {
		return fmt.Errorf("%w: missing time", ErrInvalidAction)
	}
	if w := a.Where; w != nil && (math.IsNaN(w.Lat) || math.IsNaN(w.Lng) ||
		w.Lat < -90 || w.Lat > 90 || w.Lng < -180 || w.Lng > 180) {
		return fmt.Errorf("%w: position (%v,%v)", ErrInvalidAction, w.Lat, w.Lng)
	}
	switch a.Kind {
	case ActOffer, ActAssign:
		if strings.TrimSpace(a.CourierID) == "" {
			return fmt.Errorf("%w: missing courier id", ErrInvalidAction)
		}
	case ActFail:
		if strings.TrimSpace(a.Reason) == "" {
			return fmt.Errorf("%w: missing failure reason", ErrInvalidAction)
		}
	case ActDeliverRelay:
		if !o.Policy.AllowRelay {
			return fmt.Errorf("%w: merchant policy does not allow relay points", ErrInvalidAction)
		}
	case ActDeliver:
		if math.IsNaN(a.CashMAD) || a.CashMAD < 0 {
			return fmt.Errorf("%w: cash %v MAD", ErrInvalidAction, a.CashMAD)
		}
		if o.Policy.RequireHandoverCode && !CheckHandoverCode(o.HandoverCode, a.Code) {
			return ErrHandoverCode
		}
	}
	return nil
}

// effect applies what an action does besides the status change. It runs
// only after every check passed.
func effect(o *Order, a Action) {
	m := &o.Milestones
	switch a.Kind {
	case ActOffer:
		o.OfferedTo = a.CourierID
		m.OfferedAt = a.At
	case ActDecline, ActExpire:
		o.OfferedTo = ""
	case ActAccept:
		o.CourierID = o.OfferedTo
		o.OfferedTo = ""
		m.AssignedAt = a.At
	case ActAssign:
		o.CourierID = a.CourierID
		o.OfferedTo = ""
		m.AssignedAt = a.At
	case ActUnassign:
		o.CourierID = ""
	case ActPickup:
		m.PickedUpAt = a.At
	case ActDeliver, ActDeliverRelay:
		m.DeliveredAt = a.At
		o.CashCollected = a.CashMAD
		o.Relay = a.Kind == ActDeliverRelay
		o.Flags.AtRisk = false
	case ActFail:
		m.FailedAt = a.At
		o.Attempts = append(o.Attempts, Attempt{
			N: len(o.Attempts) + 1, Reason: a.Reason, Verified: a.Verified, At: a.At, Note: a.Note,
		})
	case ActReattempt, ActReassign, ActReturn:
		decide(o, a.Kind)
		if a.Kind == ActReassign {
			o.CourierID = ""
			o.Reassignments++
		}
	case ActReturned:
		m.ReturnedAt = a.At
	case ActCancel:
		if o.Status == StatusFailedAttempt {
			decide(o, a.Kind)
		}
		o.OfferedTo = ""
		m.CancelledAt = a.At
	}
}

// decide records on the last attempt what was decided about it.
func decide(o *Order, k Kind) {
	if n := len(o.Attempts); n > 0 && o.Status == StatusFailedAttempt {
		o.Attempts[n-1].Decision = string(k)
	}
}
