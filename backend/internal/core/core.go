// Package core is the order side's one deterministic core: Step takes an
// order's state, an event (a booking, an offer's answer, a timer come due, a
// pick-up, a delivery, a failure report with its evidence, a customer's
// reply, a dispatcher's action, a courier gone, a shift ended) and what the shell knows of
// the world at that moment (the clock, candidate couriers, planned
// departures), and returns the new state and the effects to carry out
// (append the event, publish a task, arm or cancel a timer, enqueue a
// webhook, notify the stream, flag a dispatcher, re-plan a route, the
// order's next event). No store, no broker, no goroutines, no wall clock:
// the server's delivery shell persists and executes the effects, and the
// simulator (cmd/sim) drives the very same Step with a virtual clock, so a
// simulated day follows the rules the server runs. The failure decisions'
// effects (AfterFailure, CloseContact) are pure functions below.
//
// The courier side is CourierStep: a courier's load, orders assigned on
// the merchant day (Casablanca's clock), idle time, shift and last fix,
// changed by its orders' Assigned and Released effects, position
// summaries, shift changes and the store's recounts; both shells hold a
// CourierState per courier and build dispatch candidates from it.
package core

import (
	"time"

	"github.com/tawsil/tawsil/backend/internal/failure"
	"github.com/tawsil/tawsil/backend/internal/geo"
)

// FailureEffect is what a failure decision does to an order still on board.
type FailureEffect struct {
	// Action is the action carried out: the rules' action, except that a
	// relay point with no open relay, or not allowed by the merchant,
	// becomes a return to the merchant (Rule says so).
	Action failure.Action
	Rule   string
	// NotBefore: the retry's drop-off may not be attempted before this
	// (zero: at once). Set for retry_later and contact_customer.
	NotBefore time.Time
	// Window is the contact_customer reply window: until Until, a reply is
	// awaited; then Then applies (CloseContact).
	Window *Window
	// Relay is the relay point the parcel goes to (Action == relay_point).
	Relay *failure.Relay
}

// Window is an open contact_customer reply window.
type Window struct {
	Until time.Time
	Then  failure.Params
}

// Situation is what AfterFailure needs beside the decision.
type Situation struct {
	Now        time.Time
	Dropoff    geo.Point
	AllowRelay bool            // the merchant's policy allows relay points
	Relays     []failure.Relay // the city's relay points
	// Departs are the planned departures from the courier's next other
	// stops, in route order (for after_next_stops).
	Departs []time.Time
}

// AfterFailure turns a rules decision into its effect.
func AfterFailure(dec failure.Decision, s Situation) FailureEffect {
	e := FailureEffect{Action: dec.Action, Rule: dec.Rule}
	switch dec.Action {
	case failure.RetryLater:
		e.NotBefore = notBefore(s.Now, dec.Params.RetryAfterMinutes, dec.Params.AfterNextStops, s.Departs)
	case failure.ContactCustomer:
		// The parcel stays with the courier for the reply window.
		until := s.Now.Add(time.Duration(dec.Params.ReplyWindowMinutes) * time.Minute)
		e.NotBefore = until
		if !until.After(s.Now) {
			e.NotBefore = time.Time{}
		}
		e.Window = &Window{Until: until, Then: dec.Params}
	case failure.RelayPoint:
		relay, _, err := failure.NearestRelay(s.Relays, s.Dropoff.Lat, s.Dropoff.Lng, s.Now)
		if err != nil || !s.AllowRelay {
			return FailureEffect{Action: failure.ReturnToMerchant, Rule: dec.Rule + "/no-relay"}
		}
		e.Relay = &relay
	}
	return e
}

// notBefore is when a retry decided at now may be attempted: after a wait
// of minutes, and once the courier has left the n-th of its next other
// stops (after the last one when fewer remain). Zero means at once.
func notBefore(now time.Time, minutes, n int, departs []time.Time) time.Time {
	var nb time.Time
	if minutes > 0 {
		nb = now.Add(time.Duration(minutes) * time.Minute)
	}
	if n > 0 && len(departs) > 0 {
		if d := departs[min(n, len(departs))-1]; d.After(nb) {
			nb = d
		}
	}
	return nb
}

// Closing is what ends a contact window.
type Closing int

// How a contact window ends.
const (
	NoReply      Closing = iota // the window ran out
	NotReachable                // the merchant relayed: the customer cannot be reached
	Reachable                   // the merchant relayed: the customer is there
)

// ContactEffect is what closing a contact window does.
type ContactEffect struct {
	// Action: retry_later (NotBefore says when; zero is at once),
	// return_to_merchant, cancel, or dispatcher_review (relay or reassign
	// need a human with the parcel in hand).
	Action    failure.Action
	NotBefore time.Time
}

// CloseContact decides the end of a contact window: a reachable customer
// makes the retry due at once; otherwise the rule's then applies.
func CloseContact(w Window, how Closing, now time.Time, departs []time.Time) ContactEffect {
	if how == Reachable {
		return ContactEffect{Action: failure.RetryLater}
	}
	switch w.Then.Then {
	case failure.ReturnToMerchant, failure.Cancel:
		return ContactEffect{Action: w.Then.Then}
	case failure.RetryLater, "":
		return ContactEffect{Action: failure.RetryLater, NotBefore: notBefore(now, w.Then.RetryAfterMinutes, w.Then.AfterNextStops, departs)}
	}
	return ContactEffect{Action: failure.DispatcherReview}
}

// Costs price a courier fleet for the cost-per-order figures: the KPIs the
// server reports and the simulator's day use the same ones.
type Costs struct {
	PerHourMAD float64 `json:"per_hour_mad"`
	PerKmMAD   float64 `json:"per_km_mad"`
}

// DefaultCosts is a Casablanca courier: 25 MAD per shift hour, 0.8 MAD per km.
func DefaultCosts() Costs { return Costs{PerHourMAD: 25, PerKmMAD: 0.8} }
