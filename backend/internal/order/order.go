// Package order is the delivery order domain: the Order type, its lifecycle
// as a data-driven transition table (see Transitions and Apply), the handover
// code, and the privacy helpers used by the API and the retention job.
//
// The package does no I/O. Persisting an order is the store's job: every
// successful Apply increments Order.Version, and the store claims that
// version by inserting the event under a unique index (order, version), so
// two backend replicas can never apply conflicting transitions to one order.
//
// Lifecycle decisions (documented here once):
//
//   - "reassigned" is an action, not a resting state. The reassign action
//     takes a failed attempt back to booked with the courier cleared, so the
//     order goes through dispatch again (offer → assigned) for another
//     courier. The event records Action=reassign, From=failed_attempt,
//     To=booked; Order.Reassignments counts them. The parcel is still with
//     the previous courier: the failure rules put the handover point in the
//     order's pickup before dispatch runs.
//   - reattempt_scheduled means "the parcel is on board and its drop-off is
//     back in the courier's route". From there the courier delivers or fails
//     again; there is no second pick-up because the parcel never left them.
//   - Delivery to a relay point (a partner shop holding the parcel for the
//     customer) is the deliver_relay action: it ends in delivered with
//     Order.Relay set, so on-time and delivered counts stay one query.
//   - Lateness against the promise is the AtRisk flag with a prediction,
//     never a state.
package order

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// Errors callers branch on. Apply wraps them with the order id and action.
var (
	// ErrInvalidTransition: the action is not allowed from the order's status.
	ErrInvalidTransition = errors.New("invalid transition")
	// ErrForbidden: the actor's role may not take the action, or the actor
	// is not the order's merchant or courier.
	ErrForbidden = errors.New("forbidden")
	// ErrInvalidAction: the action lacks what it needs (time, courier id, reason...).
	ErrInvalidAction = errors.New("invalid action")
	// ErrHandoverCode: delivery needs the customer's handover code and the
	// code given does not match.
	ErrHandoverCode = errors.New("handover code does not match")
	// ErrInvalidOrder: a booking is not well formed.
	ErrInvalidOrder = errors.New("invalid order")
	// ErrNotFound is for stores: no order with that id.
	ErrNotFound = errors.New("order not found")
	// ErrConflict is for stores: the order changed since it was read
	// (version mismatch on compare-and-set).
	ErrConflict = errors.New("order changed concurrently")
)

// Status is where an order is in its lifecycle.
type Status string

// Statuses. Delivered, Returned and Cancelled are terminal.
const (
	StatusBooked             Status = "booked"
	StatusOffered            Status = "offered"
	StatusAssigned           Status = "assigned"
	StatusPickedUp           Status = "picked_up"
	StatusDelivered          Status = "delivered"
	StatusFailedAttempt      Status = "failed_attempt"
	StatusReattemptScheduled Status = "reattempt_scheduled"
	StatusReturning          Status = "returning"
	StatusReturned           Status = "returned"
	StatusCancelled          Status = "cancelled"
)

// Statuses lists every status, in lifecycle order.
func Statuses() []Status {
	return []Status{
		StatusBooked, StatusOffered, StatusAssigned, StatusPickedUp, StatusDelivered,
		StatusFailedAttempt, StatusReattemptScheduled, StatusReturning, StatusReturned,
		StatusCancelled,
	}
}

// Terminal reports whether no action can move an order out of s.
func (s Status) Terminal() bool {
	return s == StatusDelivered || s == StatusReturned || s == StatusCancelled
}

// Size is the parcel size class.
type Size string

// Parcel sizes.
const (
	SizeS Size = "S"
	SizeM Size = "M"
	SizeL Size = "L"
)

// Valid reports whether s is a known size.
func (s Size) Valid() bool { return s == SizeS || s == SizeM || s == SizeL }

// Place is a point with its address text.
type Place struct {
	Lat     float64 `json:"lat"`
	Lng     float64 `json:"lng"`
	Address string  `json:"address,omitempty"`
	// Landmark is how to find an informal address ("near the mosque,
	// third floor, green door"): couriers see it on their task.
	Landmark string `json:"landmark,omitempty"`
}

// Pin statuses.
const (
	PinUnconfirmed = "unconfirmed" // the drop-off point is provisional: no dispatch yet
	PinConfirmed   = "confirmed"
)

// Pin is the state of a drop-off point the customer is asked to drop or
// confirm (informal addresses): booked without coordinates, or with
// approximate ones, the order waits for the customer's pin (through the
// tracking link) before it is dispatched; past ConfirmBy it goes to a
// dispatcher.
type Pin struct {
	Status      string    `json:"status"`
	Approximate bool      `json:"approximate"` // booked with approximate coordinates (else none: the pick-up stood in)
	ConfirmBy   time.Time `json:"confirm_by"`
	ConfirmedAt time.Time `json:"confirmed_at,omitzero"`
	ConfirmedBy string    `json:"confirmed_by,omitempty"` // customer, merchant, dispatcher, admin
}

// PinPending reports whether the order waits for its drop-off pin.
func (o *Order) PinPending() bool { return o.Pin != nil && o.Pin.Status == PinUnconfirmed }

func (p Place) check(name string) error {
	switch {
	case math.IsNaN(p.Lat) || math.IsNaN(p.Lng) || math.IsInf(p.Lat, 0) || math.IsInf(p.Lng, 0):
		return fmt.Errorf("%w: %s coordinate is not a number", ErrInvalidOrder, name)
	case p.Lat < -90 || p.Lat > 90 || p.Lng < -180 || p.Lng > 180:
		return fmt.Errorf("%w: %s (%v,%v) out of range", ErrInvalidOrder, name, p.Lat, p.Lng)
	case p.Lat == 0 && p.Lng == 0:
		return fmt.Errorf("%w: %s is (0,0)", ErrInvalidOrder, name)
	}
	return nil
}

// Policy is the merchant's delivery policy, copied onto each order at
// booking so later policy changes do not rewrite past orders.
type Policy struct {
	RequireHandoverCode bool `json:"require_handover_code"` // deliver needs the customer's code
	AllowRelay          bool `json:"allow_relay"`           // drop at a relay point is acceptable
	MaxAttempts         int  `json:"max_attempts"`          // the failure rules read it; 0 means the rules' default
}

// Attempt is one failed delivery attempt and what was decided about it.
type Attempt struct {
	N        int       `json:"n"`
	Reason   string    `json:"reason"`             // failure reason code
	Verified bool      `json:"verified"`           // evidence checked (photo, call log, geofence)
	At       time.Time `json:"at"`                 //
	Decision string    `json:"decision,omitempty"` // the action that followed: reattempt, reassign, return, cancel
	Note     string    `json:"note,omitempty"`
}

// Milestones are the times an order reached each step; zero when it did not.
type Milestones struct {
	OfferedAt   time.Time `json:"offered_at,omitzero"`
	AssignedAt  time.Time `json:"assigned_at,omitzero"`
	PickedUpAt  time.Time `json:"picked_up_at,omitzero"`
	DeliveredAt time.Time `json:"delivered_at,omitzero"`
	FailedAt    time.Time `json:"failed_at,omitzero"` // last failed attempt
	ReturnedAt  time.Time `json:"returned_at,omitzero"`
	CancelledAt time.Time `json:"cancelled_at,omitzero"`
}

// Flags are operational markers that are not states.
type Flags struct {
	NeedsDispatcher bool      `json:"needs_dispatcher"` // dispatch gave up (no candidate) or a rule asked for a human
	AtRisk          bool      `json:"at_risk"`          // predicted delivery misses the promise (minus margin)
	PredictedAt     time.Time `json:"predicted_at,omitzero"`
}

// Order is one delivery.
type Order struct {
	ID            string     `json:"id"`
	MerchantID    string     `json:"merchant_id"`
	Pickup        Place      `json:"pickup"`
	Dropoff       Place      `json:"dropoff"`
	Size          Size       `json:"parcel_size"`
	CODAmountMAD  float64    `json:"cod_amount_mad"`
	CustomerName  string     `json:"customer_name"`
	CustomerPhone string     `json:"customer_phone"`
	Notes         string     `json:"notes,omitempty"`
	Status        Status     `json:"status"`
	Version       int        `json:"version"`
	CourierID     string     `json:"courier_id,omitempty"` // assigned courier
	OfferedTo     string     `json:"offered_to,omitempty"` // courier holding the current offer
	BookedAt      time.Time  `json:"booked_at"`
	PromiseBy     time.Time  `json:"promise_by"`
	ReadyAt       time.Time  `json:"ready_at,omitzero"` // the merchant's parcel is ready (prepared) at this time; zero: at booking
	TrackingToken string     `json:"-"`                 // secret: only the store and the public track link see it
	HandoverCode  string     `json:"-"`                 // secret: only the customer sees it
	Attempts      []Attempt  `json:"attempts,omitempty"`
	Reassignments int        `json:"reassignments,omitempty"`
	PriceMAD      float64    `json:"price_mad"`
	CashCollected float64    `json:"cash_collected_mad"`
	Relay         bool       `json:"relay,omitempty"` // delivered to a relay point
	Milestones    Milestones `json:"milestones"`
	Flags         Flags      `json:"flags"`
	Policy        Policy     `json:"policy"`
	Redacted      bool       `json:"redacted,omitempty"`
	Pin           *Pin       `json:"pin,omitempty"` // informal address: the customer's pin
}

// Booking is what a merchant gives to create an order.
type Booking struct {
	ID            string
	MerchantID    string
	Pickup        Place
	Dropoff       Place
	Size          Size
	CODAmountMAD  float64
	CustomerName  string
	CustomerPhone string
	Notes         string
	PriceMAD      float64
	Policy        Policy
	ReadyAt       time.Time // zero: ready at booking
}

// Promise is the delivery promise to the end customer.
const Promise = time.Hour

// Book validates b and returns a new booked order promised within the hour
// of now, with a fresh tracking token and handover code.
func Book(b Booking, now time.Time) (*Order, error) {
	if err := b.check(now); err != nil {
		return nil, err
	}
	code, err := NewHandoverCode()
	if err != nil {
		return nil, fmt.Errorf("book order %s: %w", b.ID, err)
	}
	tok := NewTrackingToken()
	return &Order{
		ID: b.ID, MerchantID: b.MerchantID,
		Pickup: b.Pickup, Dropoff: b.Dropoff, Size: b.Size,
		CODAmountMAD: b.CODAmountMAD, CustomerName: b.CustomerName,
		CustomerPhone: b.CustomerPhone, Notes: b.Notes,
		Status: StatusBooked, Version: 1,
		BookedAt: now, PromiseBy: now.Add(Promise),
		TrackingToken: tok, HandoverCode: code,
		PriceMAD: b.PriceMAD, Policy: b.Policy, ReadyAt: b.ReadyAt,
	}, nil
}

func (b Booking) check(now time.Time) error {
	switch {
	case strings.TrimSpace(b.ID) == "":
		return fmt.Errorf("%w: missing id", ErrInvalidOrder)
	case strings.TrimSpace(b.MerchantID) == "":
		return fmt.Errorf("%w: missing merchant id", ErrInvalidOrder)
	case !b.Size.Valid():
		return fmt.Errorf("%w: parcel size %q (want S, M or L)", ErrInvalidOrder, b.Size)
	case math.IsNaN(b.CODAmountMAD) || b.CODAmountMAD < 0 || b.CODAmountMAD > 100_000:
		return fmt.Errorf("%w: cod amount %v MAD", ErrInvalidOrder, b.CODAmountMAD)
	case math.IsNaN(b.PriceMAD) || b.PriceMAD < 0:
		return fmt.Errorf("%w: price %v MAD", ErrInvalidOrder, b.PriceMAD)
	case strings.TrimSpace(b.CustomerPhone) == "":
		return fmt.Errorf("%w: missing customer phone", ErrInvalidOrder)
	case !b.ReadyAt.IsZero() && b.ReadyAt.Before(now):
		return fmt.Errorf("%w: ready at %v, before the booking", ErrInvalidOrder, b.ReadyAt)
	case b.Policy.MaxAttempts < 0:
		return fmt.Errorf("%w: max attempts %d", ErrInvalidOrder, b.Policy.MaxAttempts)
	}
	if err := b.Pickup.check("pickup"); err != nil {
		return err
	}
	return b.Dropoff.check("dropoff")
}

// Clone returns a deep copy of o.
func (o *Order) Clone() *Order {
	c := *o
	c.Attempts = append([]Attempt(nil), o.Attempts...)
	if o.Pin != nil {
		p := *o.Pin
		c.Pin = &p
	}
	return &c
}

// Redact blanks the customer's personal data (name, phone, address texts,
// notes, secrets) and coarsens the drop-off point to about 100 m, keeping
// amounts, times, statuses and attempt reason codes for statistics. It is
// what the retention job applies to old orders.
func (o *Order) Redact() {
	o.CustomerName = ""
	o.CustomerPhone = ""
	o.Notes = ""
	o.Dropoff.Address = ""
	o.Dropoff.Landmark = ""
	o.Dropoff.Lat = math.Round(o.Dropoff.Lat*1000) / 1000
	o.Dropoff.Lng = math.Round(o.Dropoff.Lng*1000) / 1000
	o.TrackingToken = ""
	o.HandoverCode = ""
	for i := range o.Attempts {
		o.Attempts[i].Note = ""
	}
	o.Redacted = true
}

// MaskPhone masks a phone number for display to people who need to know a
// customer exists but not how to reach them: the country code, the first
// national digit and the last two digits stay, the rest become "•".
//
//	MaskPhone("+212612345678") == "+212 6•• ••• •78"
//	MaskPhone("0612345678")    == "06•• ••• •78"
func MaskPhone(phone string) string {
	var digits []byte
	plus := false
	for i := 0; i < len(phone); i++ {
		c := phone[i]
		switch {
		case c >= '0' && c <= '9':
			digits = append(digits, c)
		case c == '+' && len(digits) == 0:
			plus = true
		}
	}
	if len(digits) < 4 {
		return strings.Repeat("•", len(digits))
	}
	var b strings.Builder
	national := digits
	if plus {
		cc := 3 // Morocco and most of Africa use 3-digit codes
		if len(digits) <= 9 {
			cc = 1
		}
		b.WriteByte('+')
		b.Write(digits[:cc])
		b.WriteByte(' ')
		national = digits[cc:]
	} else if digits[0] == '0' {
		b.WriteByte('0')
		national = digits[1:]
	}
	last := len(national) - 2
	for i, c := range national {
		if i > 0 && i%3 == 0 {
			b.WriteByte(' ')
		}
		if i == 0 || i >= last {
			b.WriteByte(c)
		} else {
			b.WriteString("•")
		}
	}
	return b.String()
}
