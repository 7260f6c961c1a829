package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// MessageVersion is the "v" field of the JSON messages below.
const MessageVersion = 1

// MaxJSONPayload bounds the JSON messages of this package.
const MaxJSONPayload = 64 << 10

// State is the retained message on a courier's state topic, and its Last Will
// (Online false).
type State struct {
	V            int    `json:"v"`
	Online       bool   `json:"online"`
	Battery      *int   `json:"battery,omitempty"`       // percent
	OnShift      *bool  `json:"on_shift,omitempty"`      // as the device believes; the backend's shift record decides
	AgentVersion string `json:"agent_version,omitempty"` // build of the agent
	Profile      string `json:"profile,omitempty"`       // name of the device profile in force
	Lost         uint64 `json:"lost,omitempty"`          // fixes the device dropped unsent (outbox or disk full), over its outbox's life
	Damaged      uint64 `json:"damaged,omitempty"`       // damaged outbox files moved aside (their fixes are lost)
	T            int64  `json:"t"`                       // unix ms of the report (0 in a Last Will)
}

// DecodeState decodes and checks a state message.
func DecodeState(p []byte) (State, error) {
	var s State
	if len(p) > MaxJSONPayload {
		return s, ErrTooLarge
	}
	if err := json.Unmarshal(p, &s); err != nil {
		return s, fmt.Errorf("state json: %w", err)
	}
	if s.V != MessageVersion {
		return s, fmt.Errorf("%w: state v%d", ErrVersion, s.V)
	}
	if s.Battery != nil && (*s.Battery < 0 || *s.Battery > 100) {
		return s, fmt.Errorf("state battery %d: %w", *s.Battery, ErrField)
	}
	return s, nil
}

// Task message types on a courier's tasks topic.
const (
	TaskOffer        = "offer"        // an order offered to the courier until ExpiresAt
	TaskAssignment   = "assignment"   // the order is the courier's
	TaskRoutePlan    = "route_plan"   // the courier's whole remaining route, replacing any earlier plan
	TaskCancellation = "cancellation" // the order is no longer the courier's (cancelled, unassigned, reassigned)
	TaskOfferExpired = "offer_expired"
)

// Stop kinds in a route plan.
const (
	StopPickup  = "pickup"
	StopDropoff = "dropoff"
	StopReturn  = "return"
	StopRelay   = "relay"
)

// Task is one message on a courier's tasks topic. Seq increases per courier;
// a device ignores a message whose Seq is not above the last one it applied,
// except route plans, which replace the plan in force only when their
// Route.Version is higher (whatever their Seq).
type Task struct {
	V         int        `json:"v"`
	Seq       uint64     `json:"seq"`
	Type      string     `json:"type"`
	OrderID   string     `json:"order_id,omitempty"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"` // offers
	Reason    string     `json:"reason,omitempty"`     // cancellations, re-plans, an offer withdrawn at a shift's end
	Order     *TaskOrder `json:"order,omitempty"`      // offers and assignments
	Route     *Route     `json:"route,omitempty"`      // route plans
	At        time.Time  `json:"at"`
}

// TaskOrder is what a courier needs to know of an order: no customer phone,
// no handover code.
type TaskOrder struct {
	ID            string    `json:"id"`
	Pickup        Place     `json:"pickup"`
	Dropoff       Place     `json:"dropoff"`
	PromiseBy     time.Time `json:"promise_by"`
	ParcelSize    string    `json:"parcel_size,omitempty"`
	CODAmountMAD  float64   `json:"cod_amount_mad,omitempty"`
	CustomerFirst string    `json:"customer_first_name,omitempty"`
	// ReadyAt is when the merchant said the parcel is ready (absent: at
	// booking): a courier offered it early knows how long the counter wait is.
	ReadyAt *time.Time `json:"ready_at,omitempty"`
}

// Place is a point with an address text.
type Place struct {
	Lat      float64 `json:"lat"`
	Lng      float64 `json:"lng"`
	Address  string  `json:"address,omitempty"`
	Landmark string  `json:"landmark,omitempty"` // informal addresses: how to find the door
}

// Route is a courier's ordered remaining stops.
type Route struct {
	Version uint64 `json:"version"`
	Stops   []Stop `json:"stops"`
}

// Stop is one visit in a route.
type Stop struct {
	OrderID string     `json:"order_id"`
	Kind    string     `json:"kind"`
	Lat     float64    `json:"lat"`
	Lng     float64    `json:"lng"`
	Address string     `json:"address,omitempty"`
	ETA     time.Time  `json:"eta"`
	Due     *time.Time `json:"due,omitempty"` // latest arrival that keeps the promise
}

// ErrTask reports a task message that is not well formed.
var ErrTask = errors.New("invalid task message")

// DecodeTask decodes and checks a task message.
func DecodeTask(p []byte) (Task, error) {
	var t Task
	if len(p) > MaxJSONPayload {
		return t, ErrTooLarge
	}
	if err := json.Unmarshal(p, &t); err != nil {
		return t, fmt.Errorf("task json: %w", err)
	}
	if t.V != MessageVersion {
		return t, fmt.Errorf("%w: task v%d", ErrVersion, t.V)
	}
	if t.Seq == 0 {
		return t, fmt.Errorf("%w: seq 0", ErrTask)
	}
	switch t.Type {
	case TaskOffer, TaskAssignment, TaskCancellation, TaskOfferExpired:
		if t.OrderID == "" {
			return t, fmt.Errorf("%w: %s without order_id", ErrTask, t.Type)
		}
	case TaskRoutePlan:
		if t.Route == nil {
			return t, fmt.Errorf("%w: route_plan without route", ErrTask)
		}
	default:
		return t, fmt.Errorf("%w: type %q", ErrTask, t.Type)
	}
	return t, nil
}
