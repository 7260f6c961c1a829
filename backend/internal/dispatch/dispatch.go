// Package dispatch decides which courier gets an order: candidate scoring
// with route insertion and batching, the one-hour feasibility check behind
// quotes, the offer loop as a pure state machine, and at-risk prediction.
//
// The package does no I/O and keeps no clock: callers pass "now". Couriers
// come from a CandidateSource (the live H3 index, adapted by the
// integrator); travel times from an ETA (the eta package's Model).
//
// # Scoring
//
// For each candidate, the new pick-up and drop-off are inserted into the
// courier's remaining stops:
//
//   - an idle courier goes straight to the pick-up;
//   - a busy courier normally takes the new job after its current stops
//     (unrelated pick-ups are not slipped in front of parcels on board);
//   - batching: a courier whose current orders come from the same pick-up
//     area (within Config.BatchRadiusM of the new pick-up) may take the new
//     pick-up and drop-off anywhere in its route, cheapest insertion first.
//
// A promise "holds" when the predicted handover is at least Config.Margin,
// plus Config.MarginPerStop for every stop before it, ahead of the promise:
// prediction errors add up along a route. A candidate is excluded when it
// is full, or when no insertion keeps every promise (the new order's and,
// for orders it carries, every promise that held before; an order already
// late may not get later).
//
// Survivors are ranked by a weighted sum of minutes (Weights; lower is
// better): time to the pick-up, minutes added to the route, time to the new
// handover, delay imposed on carried orders, shortfall of slack under
// Config.SlackTarget, orders carried, and a fairness term (orders done
// today, minus a bonus for idle time: work goes to couriers with less). Ties are broken by courier id. The
// same cost picks the insertion, and each Ranked carries its breakdown,
// shown to dispatchers as is.
//
// # Decision epochs
//
// Score decides one order against its candidates. Epoch decides many at
// once, at one decision time: each waiting order (new, or taken back from
// a courier that has not started on it) is scored, the cheapest commit is
// made first and the orders it affects are scored again, and an order with
// a ready time whose best courier would arrive more than
// Config.CommitLead early is held for a later epoch (Hold), as is one
// whose best courier would reach the pick-up only after
// Config.CommitHorizon (busy until then). The server
// (core.Core.Decide, run by the delivery shell's epoch loop), the
// simulator and cmd/mdrp all decide this way, with this Config.
//
// The weights were checked with cmd/sim (a simulated Casablanca day against
// a nearest-idle-courier baseline); CommitHorizon and the fairness weights
// were chosen on one public MDRP instance (cmd/mdrp, README).
package dispatch

import (
	"github.com/tawsil/tawsil/backend/internal/geo"

	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/tawsil/tawsil/backend/internal/order"
)

// Errors.
var (
	// ErrNoCandidate: the offer round has nobody left to offer the order to;
	// the order needs a dispatcher.
	ErrNoCandidate = errors.New("no candidate courier left")
	// ErrOfferPending: an offer is outstanding and has not expired.
	ErrOfferPending = errors.New("an offer is pending")
	// ErrNotOffered: the courier does not hold the current offer.
	ErrNotOffered = errors.New("courier does not hold the offer")
	// ErrOfferExpired: the courier answered after the offer expired.
	ErrOfferExpired = errors.New("offer expired")
	// ErrConfig: a configuration value is out of range.
	ErrConfig = errors.New("invalid dispatch config")
)

// Point is a WGS84 position in degrees (the one geo.Point).
type Point = geo.Point

// StopKind is what happens at a stop.
type StopKind string

// Stop kinds.
const (
	StopPickup  StopKind = "pickup"
	StopDropoff StopKind = "dropoff"
)

// Stop is one remaining visit in a courier's route.
type Stop struct {
	OrderID   string    `json:"order_id"`
	Kind      StopKind  `json:"kind"`
	At        Point     `json:"at"`
	PromiseBy time.Time `json:"promise_by,omitzero"` // drop-offs: the order's promise
	Origin    Point     `json:"origin"`              // the order's pick-up point (batching looks at it)
	ReadyAt   time.Time `json:"ready_at,omitzero"`   // pick-ups: the parcel is not handed over before this (merchant preparation)
}

// Candidate is a courier that could take an order, as the live index sees it.
type Candidate struct {
	CourierID     string
	Lat, Lng      float64
	DistanceM     float64   // great-circle distance to the pick-up, from the index (informative: scoring uses the ETA model)
	Load          int       // orders assigned and not yet delivered
	Capacity      int       // orders it can carry at once; <= 0 means Config.DefaultCapacity
	Vehicle       string    // informative, shown to dispatchers; the ETA model has one speed profile
	Route         []Stop    // remaining stops, in order
	AssignedToday int       // for fairness
	IdleSince     time.Time // zero when busy
	// CashCapped: the job is cash on delivery and collecting it would take
	// the courier's cash in hand over its cap (set by the integrator from
	// the cash ledger); the courier is excluded until it hands cash in.
	CashCapped bool
	// FreeAt is when the courier, at Lat/Lng, is done with what it is doing
	// (a handover, a leg it cannot leave) and starts on Route; zero or
	// before now means now.
	FreeAt time.Time
}

// CandidateSource finds couriers near a point. The integrator adapts the
// live index to it. Candidates returns at most k available or batchable
// couriers within radiusM, nearest first; errors are the source's own
// (context cancellation among them).
type CandidateSource interface {
	Candidates(ctx context.Context, lat, lng, radiusM float64, k int) ([]Candidate, error)
}

// ETA is the travel-time model dispatch needs; *eta.Model satisfies it.
// Pace is seconds per great-circle metre when leaving a point at a time,
// road detour included, so one lookup prices every leg from that point.
type ETA interface {
	Pace(lat, lng float64, at time.Time) float64
}

// Job is the order to place.
type Job struct {
	OrderID   string
	Pickup    Point
	Dropoff   Point
	PromiseBy time.Time
	ReadyAt   time.Time // zero: ready now
}

// JobFor returns the Job for an order.
func JobFor(o *order.Order) Job {
	return Job{
		OrderID:   o.ID,
		Pickup:    Point{Lat: o.Pickup.Lat, Lng: o.Pickup.Lng},
		Dropoff:   Point{Lat: o.Dropoff.Lat, Lng: o.Dropoff.Lng},
		PromiseBy: o.PromiseBy,
		ReadyAt:   o.ReadyAt,
	}
}

// Weights turn a candidate's figures into a cost in "minutes"; lower wins.
type Weights struct {
	PickupMin     float64 `json:"pickup_min" yaml:"pickup_min"`           // per minute until the courier reaches the pick-up
	DetourMin     float64 `json:"detour_min" yaml:"detour_min"`           // per minute the job adds to the courier's route
	DeliveryMin   float64 `json:"delivery_min" yaml:"delivery_min"`       // per minute until the new order is handed over
	DelayMin      float64 `json:"delay_min" yaml:"delay_min"`             // per minute the job delays orders already carried (summed)
	SlackShortMin float64 `json:"slack_short_min" yaml:"slack_short_min"` // per minute the tightest promise is under SlackTarget
	Load          float64 `json:"load" yaml:"load"`                       // per order already carried
	AssignedToday float64 `json:"assigned_today" yaml:"assigned_today"`   // per order done today (fairness)
	IdleMin       float64 `json:"idle_min" yaml:"idle_min"`               // bonus per idle minute, up to IdleCap (fairness)
	WaitMin       float64 `json:"wait_min" yaml:"wait_min"`               // Epoch: priority per minute an order has waited since placed
}

// Config tunes dispatch.
type Config struct {
	PickupService   time.Duration `json:"pickup_service" yaml:"pickup_service"`     // time spent at a pick-up
	DropoffService  time.Duration `json:"dropoff_service" yaml:"dropoff_service"`   // time spent at a drop-off (handover)
	Margin          time.Duration `json:"margin" yaml:"margin"`                     // a promise "holds" if delivery is this early...
	MarginPerStop   time.Duration `json:"margin_per_stop" yaml:"margin_per_stop"`   // ...plus this per stop before it (prediction error adds up)
	SlackTarget     time.Duration `json:"slack_target" yaml:"slack_target"`         // slack below this costs SlackShortMin per minute
	BatchRadiusM    float64       `json:"batch_radius_m" yaml:"batch_radius_m"`     // same pick-up area
	DefaultCapacity int           `json:"default_capacity" yaml:"default_capacity"` // for candidates without one
	IdleCap         time.Duration `json:"idle_cap" yaml:"idle_cap"`
	Promise         time.Duration `json:"promise" yaml:"promise"`             // the customer promise (one hour)
	OfferTimeout    time.Duration `json:"offer_timeout" yaml:"offer_timeout"` // how long a courier has to accept
	// CommitLead: a job with a ready time is held (Hold) while its best
	// courier would reach the pick-up more than this before it is ready;
	// zero commits every job at once.
	CommitLead time.Duration `json:"commit_lead" yaml:"commit_lead"`
	// CommitHorizon: an epoch also holds a job whose best courier would
	// reach the pick-up more than this after the decision (busy until
	// then): a later epoch may find a better one, as the courier's other
	// work is done. Zero: never.
	CommitHorizon time.Duration `json:"commit_horizon" yaml:"commit_horizon"`
	// EpochCandidates is how many couriers an epoch scores per order (the
	// soonest at its pick-up, plus those going there already).
	EpochCandidates int `json:"epoch_candidates" yaml:"epoch_candidates"`
	// Latest: when no courier keeps an order's promise, an epoch tries to
	// hand it over within this of its booking (zero: no second tier).
	Latest time.Duration `json:"latest" yaml:"latest"`
	// LateAfter: an order still waiting this long after it is ready (or
	// booked) goes, late, to whoever hands it over soonest.
	LateAfter time.Duration `json:"late_after" yaml:"late_after"`
	Weights   Weights       `json:"weights" yaml:"weights"`
}

// Default returns the configuration used unless overridden.
func Default() Config {
	return Config{
		PickupService:   3 * time.Minute,
		DropoffService:  3 * time.Minute,
		Margin:          4 * time.Minute,
		MarginPerStop:   2 * time.Minute,
		SlackTarget:     10 * time.Minute,
		BatchRadiusM:    500,
		DefaultCapacity: 3,
		IdleCap:         60 * time.Minute,
		Promise:         time.Hour,
		OfferTimeout:    30 * time.Second,
		CommitLead:      10 * time.Minute,
		CommitHorizon:   25 * time.Minute,
		EpochCandidates: 16,
		Latest:          90 * time.Minute,
		LateAfter:       30 * time.Minute,
		Weights: Weights{
			PickupMin:     1,
			DetourMin:     1,
			DeliveryMin:   1,
			DelayMin:      1,
			SlackShortMin: 0.5,
			Load:          2,
			AssignedToday: 6,
			IdleMin:       0.5,
			WaitMin:       0.3,
		},
	}
}

// Validate reports the first out-of-range value.
func (c Config) Validate() error {
	w := c.Weights
	for name, v := range map[string]float64{
		"weights.pickup_min": w.PickupMin, "weights.detour_min": w.DetourMin,
		"weights.delivery_min": w.DeliveryMin, "weights.delay_min": w.DelayMin,
		"weights.slack_short_min": w.SlackShortMin, "weights.load": w.Load,
		"weights.assigned_today": w.AssignedToday, "weights.idle_min": w.IdleMin, "weights.wait_min": w.WaitMin,
		"batch_radius_m": c.BatchRadiusM,
	} {
		if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
			return fmt.Errorf("%w: %s = %v", ErrConfig, name, v)
		}
	}
	switch {
	case c.PickupService < 0 || c.DropoffService < 0 || c.Margin < 0 || c.MarginPerStop < 0 || c.SlackTarget < 0 || c.IdleCap < 0 || c.CommitLead < 0 || c.CommitHorizon < 0 || c.Latest < 0 || c.LateAfter < 0:
		return fmt.Errorf("%w: negative duration", ErrConfig)
	case c.Promise <= 0:
		return fmt.Errorf("%w: promise %v", ErrConfig, c.Promise)
	case c.OfferTimeout <= 0:
		return fmt.Errorf("%w: offer_timeout %v", ErrConfig, c.OfferTimeout)
	case c.EpochCandidates < 1:
		return fmt.Errorf("%w: epoch_candidates %d", ErrConfig, c.EpochCandidates)
	case c.DefaultCapacity < 1:
		return fmt.Errorf("%w: default_capacity %d", ErrConfig, c.DefaultCapacity)
	}
	return nil
}

// Dispatcher scores candidates with one configuration and travel model.
// It holds no mutable state and is safe for concurrent use.
type Dispatcher struct {
	cfg Config
	eta ETA
}

// New returns a Dispatcher.
func New(cfg Config, eta ETA) (*Dispatcher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if eta == nil {
		return nil, fmt.Errorf("%w: nil ETA", ErrConfig)
	}
	return &Dispatcher{cfg: cfg, eta: eta}, nil
}

// Config returns the dispatcher's configuration.
func (d *Dispatcher) Config() Config { return d.cfg }

// Breakdown is why a candidate ranks where it does.
type Breakdown struct {
	PickupMin     float64 `json:"pickup_min"`     // minutes until it reaches the pick-up
	DetourMin     float64 `json:"detour_min"`     // minutes the job adds to its route
	DeliveryMin   float64 `json:"delivery_min"`   // minutes until the new order is handed over
	DelayMin      float64 `json:"delay_min"`      // minutes of delay to orders already carried, summed
	SlackMin      float64 `json:"slack_min"`      // tightest promise slack after insertion
	Load          int     `json:"load"`           // orders already carried
	AssignedToday int     `json:"assigned_today"` //
	IdleMin       float64 `json:"idle_min"`       // minutes idle (capped)
	Batched       bool    `json:"batched"`        // joins orders from the same pick-up area
	Terms         Terms   `json:"terms"`          // the weighted terms; Cost is their sum
}

// Terms are the weighted parts of a cost.
type Terms struct {
	Pickup   float64 `json:"pickup"`
	Detour   float64 `json:"detour"`
	Delivery float64 `json:"delivery"`
	Delay    float64 `json:"delay"`
	Slack    float64 `json:"slack"`
	Load     float64 `json:"load"`
	Fairness float64 `json:"fairness"` // assigned-today penalty minus idle bonus
}

func (t Terms) sum() float64 {
	return t.Pickup + t.Detour + t.Delivery + t.Delay + t.Slack + t.Load + t.Fairness
}

// Ranked is a feasible candidate with its cost and planned route.
type Ranked struct {
	CourierID  string    `json:"courier_id"`
	Cost       float64   `json:"cost"`
	PickupAt   time.Time `json:"pickup_at"`   // predicted arrival at the pick-up
	DeliveryAt time.Time `json:"delivery_at"` // predicted handover of the new order
	Breakdown  Breakdown `json:"breakdown"`
	Plan       []Stop    `json:"plan"` // the route with the job inserted
}

// Exclusion reasons.
const (
	ReasonFull          = "capacity_full"
	ReasonPromiseBreaks = "promise_breaks"
	ReasonBadPosition   = "bad_position"
	ReasonCashCap       = "cash_cap"
)

// Excluded is a candidate that cannot take the job, and why.
type Excluded struct {
	CourierID string `json:"courier_id"`
	Reason    string `json:"reason"`
}

// Score ranks candidates for a job at time now: best first, with those
// excluded and why. It does not modify cands.
func (d *Dispatcher) Score(job Job, cands []Candidate, now time.Time) ([]Ranked, []Excluded) {
	ranked := make([]Ranked, 0, len(cands))
	var excluded []Excluded
	jp := d.jobPaces(job, now)
	for i := range cands {
		c := &cands[i]
		r, reason := d.score(job, jp, c, now)
		if reason != "" {
			excluded = append(excluded, Excluded{CourierID: c.CourierID, Reason: reason})
			continue
		}
		ranked = append(ranked, r)
	}
	slices.SortFunc(ranked, func(a, b Ranked) int {
		if a.Cost != b.Cost {
			if a.Cost < b.Cost {
				return -1
			}
			return 1
		}
		return strings.Compare(a.CourierID, b.CourierID)
	})
	return ranked, excluded
}

func (d *Dispatcher) score(job Job, jp jobPaces, c *Candidate, now time.Time) (Ranked, string) {
	r, ins, reason := d.scoreOnly(job, jp, c, now)
	if reason == "" {
		r.Plan = plan(job, c, ins)
	}
	return r, reason
}

// scoreOnly is score without building the plan: the insertion it is built
// from (plan(job, c, ins)) is returned instead.
func (d *Dispatcher) scoreOnly(job Job, jp jobPaces, c *Candidate, now time.Time) (Ranked, insertion, string) {
	if !validPoint(Point{Lat: c.Lat, Lng: c.Lng}) {
		return Ranked{}, insertion{}, ReasonBadPosition
	}
	capacity := c.Capacity
	if capacity <= 0 {
		capacity = d.cfg.DefaultCapacity
	}
	if c.Load >= capacity {
		return Ranked{}, insertion{}, ReasonFull
	}
	if c.CashCapped {
		return Ranked{}, insertion{}, ReasonCashCap
	}
	batched := d.batchable(job, c)
	ins, ok := d.insert(job, jp, c, now, batched, true)
	if !ok {
		return Ranked{}, insertion{}, ReasonPromiseBreaks
	}
	w := d.cfg.Weights
	b := Breakdown{
		PickupMin:     minutes(ins.pickupAt.Sub(now)),
		DetourMin:     minutes(ins.added),
		DeliveryMin:   minutes(ins.deliveryAt.Sub(now)),
		DelayMin:      minutes(ins.delay),
		SlackMin:      minutes(ins.slack),
		Load:          c.Load,
		AssignedToday: c.AssignedToday,
		Batched:       batched && len(c.Route) > 0,
	}
	if !c.IdleSince.IsZero() && c.Load == 0 {
		b.IdleMin = minutes(min(max(now.Sub(c.IdleSince), 0), d.cfg.IdleCap))
	}
	b.Terms = ins.terms
	b.Terms.Load = w.Load * float64(c.Load)
	b.Terms.Fairness = w.AssignedToday*float64(c.AssignedToday) - w.IdleMin*b.IdleMin
	return Ranked{
		CourierID:  c.CourierID,
		Cost:       b.Terms.sum(),
		PickupAt:   ins.pickupAt,
		DeliveryAt: ins.deliveryAt,
		Breakdown:  b,
	}, ins, ""
}

// batchable reports whether c's current orders come from the job's pick-up area.
func (d *Dispatcher) batchable(job Job, c *Candidate) bool {
	for _, s := range c.Route {
		o := s.Origin
		if s.Kind == StopPickup {
			o = s.At
		}
		if geo.DistanceM(o, job.Pickup) <= d.cfg.BatchRadiusM {
			return true
		}
	}
	return false
}

func minutes(d time.Duration) float64 { return d.Minutes() }

func validPoint(p Point) bool {
	return !math.IsNaN(p.Lat) && !math.IsNaN(p.Lng) && p.Lat >= -90 && p.Lat <= 90 &&
		p.Lng >= -180 && p.Lng <= 180 && !(p.Lat == 0 && p.Lng == 0)
}
