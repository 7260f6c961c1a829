package delivery

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/tawsil/tawsil/backend/internal/geo"
	"math"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/tawsil/tawsil/backend/internal/cash"
	"github.com/tawsil/tawsil/backend/internal/core"
	"github.com/tawsil/tawsil/backend/internal/dispatch"
	"github.com/tawsil/tawsil/backend/internal/livemap"
	"github.com/tawsil/tawsil/backend/internal/mongostore"
	"github.com/tawsil/tawsil/backend/internal/order"
	"github.com/tawsil/tawsil/backend/internal/textsafe"
)

// QuoteRequest is what a merchant asks about.
type QuoteRequest struct {
	Pickup     order.Place
	Dropoff    order.Place
	Size       order.Size
	CODAmount  float64
	AllowLater bool
	// ReadyIn is the merchant's preparation time: the parcel is ready this
	// long after booking (zero: now). The quote counts the wait for it, and
	// dispatch holds the order while its best courier would be early
	// (dispatch.Config.CommitLead).
	ReadyIn time.Duration
}

// Quote answers "can this be delivered within the hour, by when, for how much".
type Quote struct {
	Feasible      bool      `json:"feasible"`
	ETAMinutes    float64   `json:"eta_minutes"`
	PromiseBy     time.Time `json:"promise_by,omitzero"`
	PriceMAD      float64   `json:"price_mad"`
	Reason        string    `json:"reason,omitempty"`
	City          string    `json:"city"`
	DistanceKm    float64   `json:"distance_km"`
	Later         bool      `json:"later,omitempty"`
	UnderSupplied bool      `json:"under_supplied,omitempty"`
	Breakdown     any       `json:"price_breakdown"`
}

func (r QuoteRequest) check() error {
	for name, p := range map[string]order.Place{"pickup": r.Pickup, "dropoff": r.Dropoff} {
		if math.IsNaN(p.Lat) || math.IsNaN(p.Lng) || math.IsInf(p.Lat, 0) || math.IsInf(p.Lng, 0) || p.Lat < -90 || p.Lat > 90 || p.Lng < -180 || p.Lng > 180 {
			return fmt.Errorf("%w: %s coordinates out of range", ErrInput, name)
		}
		if utf8.RuneCountInString(p.Address) > 300 {
			return fmt.Errorf("%w: %s address longer than 300 characters", ErrInput, name)
		}
	}
	if _, err := ReadyIn(int(r.ReadyIn / time.Minute)); err != nil || r.ReadyIn%time.Minute != 0 {
		return fmt.Errorf("%w: ready_in_min must be between 0 and 45", ErrInput)
	}
	if r.Size == "" {
		return fmt.Errorf("%w: parcel.size is required (S, M or L)", ErrInput)
	}
	if !r.Size.Valid() {
		return fmt.Errorf("%w: parcel.size must be S, M or L", ErrInput)
	}
	if r.CODAmount < 0 || r.CODAmount > 50_000 || math.IsNaN(r.CODAmount) {
		return fmt.Errorf("%w: cod_amount_mad must be between 0 and 50000", ErrInput)
	}
	return nil
}

// hitBufs are the live index's answers reused across dispatch decisions
// (25 hits are ~6 kB: one decision's largest allocation, and GC pressure).
var hitBufs = sync.Pool{New: func() any { return new([]livemap.Hit) }}

// candidateStatuses are the statuses a dispatch candidate may have.
var candidateStatuses = []livemap.Status{livemap.StatusAvailable, livemap.StatusBusy}

// candidates adapts the live index to dispatch: available or batchable
// couriers near a point, with their current routes and fairness figures.
func (s *Service) candidates(lat, lng float64, exclude map[string]struct{}) []dispatch.Candidate {
	hp := hitBufs.Get().(*[]livemap.Hit)
	defer hitBufs.Put(hp)
	hits := s.d.Index.NearestAppend((*hp)[:0], lat, lng, livemap.Filter{Statuses: candidateStatuses,
		OnShift: true, Online: true, MinSpare: 1, Exclude: exclude}, s.cfg.Candidates, s.cfg.SearchRadiusM)
	*hp = hits[:0]
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	out := make([]dispatch.Candidate, 0, len(hits))
	lookup := func(id string) *core.State { return s.active[id] }
	for _, h := range hits {
		at := geo.Point{Lat: h.Fix.Lat, Lng: h.Fix.Lng}
		st, known := s.couriers[h.ID] // read only: a courier with no state yet has nothing (no insert per hit)
		if !known {
			st.ID = h.ID
		}
		// The last fix is the live index's (fed at the ingest rate, not
		// through this lock).
		c := s.core.CandidateOf(st, core.Courier{At: at, DistanceM: h.DistanceM, Capacity: h.Capacity, Vehicle: h.Vehicle, LastSeen: h.LastSeen}, now)
		// The load is the index's: every replica's assignments (cluster
		// status), ahead of this replica's cache of the orders.
		c.Load = h.Load
		if r := s.routes[h.ID]; r != nil {
			c.Visits = r.Visits
		}
		out = append(out, core.Candidate(c, lookup))
	}
	return out
}

// capCash marks the candidates a cash-on-delivery amount would take over
// their cash-in-hand cap.
func (s *Service) capCash(cands []dispatch.Candidate, codMAD float64) []dispatch.Candidate {
	if s.d.Cash == nil || codMAD <= 0 {
		return cands
	}
	due, err := cash.FromMAD(codMAD)
	if err != nil {
		return cands
	}
	for i := range cands {
		cands[i].CashCapped = s.d.Cash.Blocks(cands[i].CourierID, due)
	}
	return cands
}

// queuedAt lists the orders waiting for a courier (booked or offered)
// whose pick-up is within 500 m of the point, oldest first: the queue a new
// booking joins.
func (s *Service) queuedAt(lat, lng float64) []dispatch.Job {
	type waiting struct {
		at  time.Time
		job dispatch.Job
	}
	var ws []waiting
	s.mu.Lock()
	for _, o := range s.active {
		if o.CourierID == "" && (o.Status == order.StatusBooked || o.Status == order.StatusOffered) &&
			geo.DistanceLatLngM(lat, lng, o.Pickup.Lat, o.Pickup.Lng) <= 500 {
			ws = append(ws, waiting{o.BookedAt, dispatch.JobFor(o.Order)})
		}
	}
	s.mu.Unlock()
	slices.SortFunc(ws, func(a, b waiting) int { return a.at.Compare(b.at) })
	jobs := make([]dispatch.Job, len(ws))
	for i, w := range ws {
		jobs[i] = w.job
	}
	return jobs
}

// Quote computes feasibility, ETA and price.
func (s *Service) Quote(_ context.Context, r QuoteRequest) (Quote, error) {
	if err := r.check(); err != nil {
		return Quote{}, err
	}
	city, err := s.d.Areas.Check(r.Pickup.Lat, r.Pickup.Lng)
	if err != nil {
		return Quote{}, fmt.Errorf("%w: pickup: %v", ErrOutsideArea, err)
	}
	if dcity, err := s.d.Areas.Check(r.Dropoff.Lat, r.Dropoff.Lng); err != nil || dcity != city {
		return Quote{}, fmt.Errorf("%w: dropoff must be in %s's service area", ErrOutsideArea, city)
	}
	now := s.now()
	var ready time.Time
	if r.ReadyIn > 0 {
		ready = now.Add(r.ReadyIn)
	}
	cands := s.capCash(s.candidates(r.Pickup.Lat, r.Pickup.Lng, nil), r.CODAmount)
	f := s.d.Dispatch.Feasibility(dispatch.Point{Lat: r.Pickup.Lat, Lng: r.Pickup.Lng}, dispatch.Point{Lat: r.Dropoff.Lat, Lng: r.Dropoff.Lng}, ready,
		cands, s.queuedAt(r.Pickup.Lat, r.Pickup.Lng), now, r.AllowLater)
	under := s.d.Density.UnderSupplied(r.Pickup.Lat, r.Pickup.Lng, s.cfg.UnderSupplyRat, now)
	km := geo.DistanceLatLngM(r.Pickup.Lat, r.Pickup.Lng, r.Dropoff.Lat, r.Dropoff.Lng) / 1000 * s.d.ETA.Config().DetourFactor
	price, err := s.d.Pricer.Quote(km, r.Size, r.CODAmount > 0, under)
	if err != nil {
		return Quote{}, fmt.Errorf("%w: %v", ErrInput, err)
	}
	return Quote{Feasible: f.Feasible, ETAMinutes: math.Round(f.ETAMinutes*10) / 10, PromiseBy: f.PromiseBy, PriceMAD: price.TotalMAD,
		Reason: f.Reason, City: city, DistanceKm: math.Round(km*100) / 100, Later: f.Later, UnderSupplied: under, Breakdown: price.Breakdown}, nil
}

// BookRequest is a booking: a quote request plus the customer.
type BookRequest struct {
	QuoteRequest
	CustomerName  string
	CustomerPhone string
	Notes         string
	// Pin: the drop-off is an informal address the customer confirms
	// through the tracking link before dispatch. Located tells whether
	// Dropoff has (approximate) coordinates; without, the pick-up stands in
	// for quoting until the pin. ConfirmWithin is how long the customer has
	// before a dispatcher takes over (default 20 min).
	Pin           bool
	Located       bool
	ConfirmWithin time.Duration
}

// MaxReadyIn is the longest preparation time a booking may give: a parcel
// ready later cannot make the hour.
const MaxReadyIn = 45 * time.Minute

// ReadyIn reads a booking's ready_in_min (0: ready now).
func ReadyIn(minutes int) (time.Duration, error) {
	if minutes < 0 || time.Duration(minutes)*time.Minute > MaxReadyIn {
		return 0, fmt.Errorf("%w: ready_in_min must be between 0 and 45", ErrInput)
	}
	return time.Duration(minutes) * time.Minute, nil
}

// Book creates an order for merchant under an idempotency key. The same key
// and body return the same order (created=false); another body is ErrIdemReuse.
func (s *Service) Book(ctx context.Context, merchantID, key string, body []byte, r BookRequest) (o *mongostore.StoredOrder, created bool, err error) {
	if err := r.check(); err != nil {
		return nil, false, err
	}
	name, phone := textsafe.Name(r.CustomerName), strings.TrimSpace(r.CustomerPhone)
	r.Notes = textsafe.Name(r.Notes)
	if name == "" || utf8.RuneCountInString(name) > 120 {
		return nil, false, fmt.Errorf("%w: customer.name is required (at most 120 characters)", ErrInput)
	}
	if !validPhone(phone) {
		return nil, false, fmt.Errorf("%w: customer.phone must be an international number such as +212612345678", ErrInput)
	}
	if utf8.RuneCountInString(r.Notes) > 500 {
		return nil, false, fmt.Errorf("%w: notes longer than 500 characters", ErrInput)
	}
	sum := sha256.Sum256(body)
	claim, existing, err := s.d.Store.ClaimIdempotencyKey(ctx, mongostore.IdemKey{Scope: merchantID, Key: key,
		BodyHash: hex.EncodeToString(sum[:]), OrderID: mongostore.NewOrderID(), At: s.now().UTC()})
	if err != nil {
		return nil, false, err
	}
	if existing {
		if claim.BodyHash != hex.EncodeToString(sum[:]) {
			return nil, false, ErrIdemReuse
		}
		prev, err := s.d.Store.Order(ctx, claim.OrderID)
		if err == nil {
			return &prev, false, nil
		}
		if !errors.Is(err, order.ErrNotFound) {
			return nil, false, err
		}
		// The first request claimed the key but did not finish: finish it now.
	}
	if r.Pin && !r.Located {
		r.Dropoff.Lat, r.Dropoff.Lng = r.Pickup.Lat, r.Pickup.Lng // provisional, until the customer's pin
	}
	q, err := s.Quote(ctx, r.QuoteRequest)
	if err != nil {
		return nil, false, err
	}
	if !q.Feasible && !(r.AllowLater && q.Later) {
		return nil, false, fmt.Errorf("%w: %s", ErrInfeasible, q.Reason)
	}
	policyName, deliverMode, err := s.d.Merchant(ctx, merchantID)
	if err != nil {
		return nil, false, err
	}
	now := s.now().UTC()
	var ready time.Time
	if r.ReadyIn > 0 {
		ready = now.Add(r.ReadyIn)
	}
	booked, err := order.Book(order.Booking{ID: claim.OrderID, MerchantID: merchantID, Pickup: r.Pickup, Dropoff: r.Dropoff, Size: r.Size,
		CODAmountMAD: r.CODAmount, CustomerName: name, CustomerPhone: phone, Notes: r.Notes, PriceMAD: q.PriceMAD,
		Policy: order.Policy{RequireHandoverCode: deliverMode != "proof", AllowRelay: policyName == "relay_ok"}, ReadyAt: ready}, now)
	if err != nil {
		return nil, false, fmt.Errorf("%w: %v", ErrInput, err)
	}
	if q.Later && !q.PromiseBy.IsZero() {
		booked.PromiseBy = q.PromiseBy.UTC()
	}
	if r.Pin {
		within := r.ConfirmWithin
		if within <= 0 {
			within = 20 * time.Minute
		}
		booked.Pin = &order.Pin{Status: order.PinUnconfirmed, Approximate: r.Located, ConfirmBy: now.Add(within)}
	}
	res, err := s.core.Step(core.State{Order: booked}, core.Booked{}, core.Input{Now: now})
	if err != nil {
		return nil, false, fmt.Errorf("book order %s: %w", booked.ID, err)
	}
	if err := s.claim(ctx, res.State, res.Effects); errors.Is(err, order.ErrConflict) {
		prev, err := s.d.Store.Order(ctx, claim.OrderID)
		if err != nil {
			return nil, false, err
		}
		return &prev, false, nil
	} else if err != nil {
		return nil, false, fmt.Errorf("book order %s: %w", booked.ID, err)
	}
	so := res.State
	s.remember(&so)
	s.carry(ctx, &so, res.Effects, true)
	return &so, true, nil
}

func validPhone(p string) bool {
	if len(p) < 8 || len(p) > 16 || p[0] != '+' {
		return false
	}
	for _, c := range p[1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
