// Package failure decides what happens after a failed delivery attempt.
//
// A courier reports a failure with a reason code. Verify checks the evidence
// (the courier's recent GPS fixes near the drop-off point, call attempts) for
// reasons that mean "I was at the door". A RuleSet, loaded from a YAML file
// with a built-in default, then maps the situation (reason, attempt, minutes
// left before the one-hour promise, merchant policy, cash on delivery, parcel
// size, verified or not) to an action: retry later in the same route, contact
// the customer first, reassign to another courier, leave at a relay point,
// return to the merchant or cancel. Unverified attempts go to a dispatcher.
// An Engine holds the current RuleSet and reloads it without a restart.
//
// The package is pure: no I/O besides reading the rules file.
package failure

import (
	"errors"
	"fmt"
	"strings"
)

// Reason is a failed-delivery reason code.
type Reason string

// Reason codes.
const (
	CustomerUnavailable Reason = "CUSTOMER_UNAVAILABLE" // nobody answers the door or the phone
	CustomerRefused     Reason = "CUSTOMER_REFUSED"     // the customer refuses the parcel
	AddressNotFound     Reason = "ADDRESS_NOT_FOUND"    // the address cannot be found on site
	AddressInaccessible Reason = "ADDRESS_INACCESSIBLE" // cannot be reached (closed gate, works, flooding)
	Damaged             Reason = "DAMAGED"              // the parcel is damaged
	CODNotAvailable     Reason = "COD_NOT_AVAILABLE"    // the customer cannot pay cash on delivery
	UnsafeLocation      Reason = "UNSAFE_LOCATION"      // the courier judges the place unsafe
	BusinessClosed      Reason = "BUSINESS_CLOSED"      // a business recipient is closed
	CourierIncident     Reason = "COURIER_INCIDENT"     // breakdown, accident, illness
)

// Reasons lists every reason code, in a fixed order.
func Reasons() []Reason {
	return []Reason{CustomerUnavailable, CustomerRefused, AddressNotFound, AddressInaccessible,
		Damaged, CODNotAvailable, UnsafeLocation, BusinessClosed, CourierIncident}
}

// ErrUnknownReason is returned by ParseReason.
var ErrUnknownReason = errors.New("unknown failure reason")

// ParseReason parses a reason code (exact, upper case). The error lists the
// valid codes.
func ParseReason(s string) (Reason, error) {
	for _, r := range Reasons() {
		if string(r) == s {
			return r, nil
		}
	}
	names := make([]string, 0, len(Reasons()))
	for _, r := range Reasons() {
		names = append(names, string(r))
	}
	return "", fmt.Errorf("%w %q: want one of %s", ErrUnknownReason, s, strings.Join(names, ", "))
}

// Presence is the GPS evidence a reason needs.
type Presence int

// Presence requirements.
const (
	// PresenceNone: the reason does not imply being at the door. DAMAGED is
	// proven by photos, COURIER_INCIDENT can happen anywhere, and a courier
	// must not be required to linger at an UNSAFE_LOCATION.
	PresenceNone Presence = iota
	// PresenceApproach: ADDRESS_INACCESSIBLE means the courier could not get
	// to the door, so only an approach (ApproachRadiusM) is required, no dwell.
	PresenceApproach
	// PresenceAtDoor: the courier says they were there: CUSTOMER_UNAVAILABLE,
	// CUSTOMER_REFUSED, ADDRESS_NOT_FOUND, BUSINESS_CLOSED, COD_NOT_AVAILABLE
	// need RadiusM and MinDwell (and, for CUSTOMER_UNAVAILABLE, call attempts).
	PresenceAtDoor
)

func (p Presence) String() string {
	switch p {
	case PresenceNone:
		return "none"
	case PresenceApproach:
		return "approach"
	case PresenceAtDoor:
		return "at-door"
	}
	return fmt.Sprintf("Presence(%d)", int(p))
}

// Presence returns the evidence r needs.
func (r Reason) Presence() Presence {
	switch r {
	case CustomerUnavailable, CustomerRefused, AddressNotFound, BusinessClosed, CODNotAvailable:
		return PresenceAtDoor
	case AddressInaccessible:
		return PresenceApproach
	}
	return PresenceNone
}
