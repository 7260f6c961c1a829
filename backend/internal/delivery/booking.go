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
	"github.com/tawsil/tawsil/backend/internal/dispatch"
	"github.com/tawsil/tawsil/backend/internal/livemap"
	"github.com/tawsil/tawsil/backend/internal/mongostore"
	"github.com/tawsil/tawsil/backend/internal/order"
	"github.com/tawsil/tawsil/backend/internal/textsafe"
	"github.com/tawsil/tawsil/shared/wire"
)

// QuoteRequest is what a merchant asks about.
type QuoteRequest struct {
	Pickup     order.Place
	Dropoff    order.Place
	Size       order.Size
	CODAmount  float64
	AllowLater bool
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
	s.rollDay()
	out := make([]dispatch.Candidate, 0, len(hits))
	for _, h := range hits {
		c := dispatch.Candidate{CourierID: h.ID, Lat: h.Fix.Lat, Lng: h.Fix.Lng, DistanceM: h.DistanceM, Load: h.Load,
			Capacity: h.Capacity, Vehicle: h.Vehicle, AssignedToday: s.today[h.ID]}
		if h.Load == 0 {
			// Idle since its last order ended or its shift began; the
			// last fix only when neither is known (idle ≈ 0).
			if c.IdleSince = s.idleSince(h.ID); c.IdleSince.IsZero() {
				c.IdleSince = h.LastSeen
			}
		}
		if r := s.routes[h.ID]; r != nil {
			for _, v := range r.Visits {
				st := dispatch.Stop{OrderID: v.OrderID, At: dispatch.Point{Lat: v.Loc.Lat, Lng: v.Loc.Lng}}
				if o := s.active[v.OrderID]; o != nil {
					st.Origin = dispatch.Point{Lat: o.Pickup.Lat, Lng: o.Pickup.Lng}
					if v.Kind != "pickup" {
						st.PromiseBy = o.PromiseBy
					}
				}
				st.Kind = dispatch.StopDropoff
				if v.Kind == "pickup" {
					st.Kind = dispatch.StopPickup
				}
				c.Route = append(c.Route, st)
			}
		}
		out = append(out, c)
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

func (s *Service) rollDay() {
	if d := s.now().YearDay(); d != s.todayDay {
		s.todayDay = d
		clear(s.today)
	}
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
	cands := s.capCash(s.candidates(r.Pickup.Lat, r.Pickup.Lng, nil), r.CODAmount)
	f := s.d.Dispatch.Feasibility(dispatch.Point{Lat: r.Pickup.Lat, Lng: r.Pickup.Lng}, dispatch.Point{Lat: r.Dropoff.Lat, Lng: r.Dropoff.Lng},
		cands, s.queuedAt(r.Pickup.Lat, r.Pickup.Lng), now, r.AllowLater)
	under := s.d.Density.UnderSupplied(r.Pickup.Lat, r.Pickup.Lng, s.cfg.UnderSupplyRat, now)
	km := haversineKm(r.Pickup, r.Dropoff) * s.d.ETA.Config().DetourFactor
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
	booked, err := order.Book(order.Booking{ID: claim.OrderID, MerchantID: merchantID, Pickup: r.Pickup, Dropoff: r.Dropoff, Size: r.Size,
		CODAmountMAD: r.CODAmount, CustomerName: name, CustomerPhone: phone, Notes: r.Notes, PriceMAD: q.PriceMAD,
		Policy: order.Policy{RequireHandoverCode: deliverMode != "proof", AllowRelay: policyName == "relay_ok"}}, now)
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
		if err := s.d.Store.ArmTimer(ctx, mongostore.Timer{ID: pinTimerID(booked.ID), Kind: timerPin, OrderID: booked.ID, Due: booked.Pin.ConfirmBy}); err != nil {
			return nil, false, err
		}
	}
	so := &mongostore.StoredOrder{Order: booked}
	if err := s.d.Store.InsertOrder(ctx, *so); errors.Is(err, order.ErrConflict) {
		prev, err := s.d.Store.Order(ctx, claim.OrderID)
		if err != nil {
			return nil, false, err
		}
		return &prev, false, nil
	} else if err != nil {
		return nil, false, err
	}
	ev := order.Event{OrderID: so.ID, To: order.StatusBooked, Action: "book", Actor: order.Actor{Role: order.RoleMerchant, ID: merchantID}, At: now, Version: so.Version}
	if err := s.d.Store.Commit(ctx, *so, ev); err != nil {
		return nil, false, fmt.Errorf("book order %s: %w", so.ID, err)
	}
	s.remember(so)
	s.d.Log.Info("order event", "event", "order.booked", "order_id", so.ID, "action", ev.Action, "to", ev.To,
		"actor_role", ev.Actor.Role, "version", ev.Version)
	s.observe("order.booked", ev.Action)
	s.hub.Publish("order.booked", map[string]any{"order_id": so.ID, "promise_by": so.PromiseBy, "merchant_id": merchantID})
	if s.webhooks != nil {
		payload := webhookOrder(so, ev)
		payload["handover_code"] = so.HandoverCode // the merchant passes it to the customer
		payload["tracking_token"] = so.TrackingToken
		s.webhooks.Enqueue(ctx, merchantID, "order.booked", payload)
	}
	if !so.PinPending() {
		s.goDispatch(so.ID, nil)
	}
	return so, true, nil
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

func haversineKm(a, b order.Place) float64 {
	return geo.DistanceLatLngM(a.Lat, a.Lng, b.Lat, b.Lng) / 1000
}

var systemActor = order.Actor{Role: order.RoleSystem, ID: "dispatch"}

// goDispatch starts (or restarts) the offer round of an order in the background.
func (s *Service) goDispatch(orderID string, exclude map[string]struct{}) {
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := s.dispatchOrder(ctx, orderID, exclude); err != nil {
			s.d.Log.Warn("dispatch", "order_id", orderID, "err", err)
		}
	}()
}

// dispatchOrder offers a booked order to the next courier of its round, or
// starts a round (ranks candidates) when it has none.
func (s *Service) dispatchOrder(ctx context.Context, orderID string, exclude map[string]struct{}) error {
	o, err := s.load(ctx, orderID, true)
	if err != nil {
		return err
	}
	if o.Status != order.StatusBooked {
		return nil
	}
	var fresh *dispatch.RoundState
	if o.Round == nil || o.Round.Done {
		cands := s.capCash(s.candidates(o.Pickup.Lat, o.Pickup.Lng, exclude), o.CODAmountMAD)
		ranked, _ := s.d.Dispatch.Score(dispatch.JobFor(o.Order), cands, s.now())
		st := dispatch.NewOfferRound(orderID, ranked, s.cfg.OfferTimeout).State()
		fresh = &st
	}
	return s.offerNext(ctx, orderID, fresh)
}

// offerNext sends the next offer of the order's round, or flags the order
// for dispatchers when nobody is left. The offer's deadline is a timer in
// the store, armed before the offer is committed (a crash between the two
// leaves a timer that finds nothing to do, never an offer without one).
func (s *Service) offerNext(ctx context.Context, orderID string, fresh *dispatch.RoundState) error {
	for try := 0; try < 3; try++ {
		cur, err := s.load(ctx, orderID, true)
		if err != nil {
			return err
		}
		base := cur.Round
		if base == nil || base.Done {
			base = fresh // a new round starts with its first offer
		}
		if cur.Status != order.StatusBooked || base == nil {
			return nil // assigned, cancelled or offered meanwhile
		}
		prevLen := 0
		if cur.Round != nil && !cur.Round.Done {
			prevLen = len(cur.Round.Log)
		}
		r := dispatch.RestoreOfferRound(*base)
		off, err := r.Next(s.now())
		for err == nil && !s.reachable(off.CourierID) { // left (disabled, erased) since the round was ranked
			_ = r.Decline(off.CourierID, s.now())
			off, err = r.Next(s.now())
		}
		if errors.Is(err, dispatch.ErrNoCandidate) {
			return s.flagForDispatchers(ctx, orderID, "no courier accepted or none available")
		}
		if err != nil {
			return err
		}
		st := r.State()
		n := len(st.Log)
		tid := offerTimerID(orderID, n, off.CourierID)
		if err := s.d.Store.ArmTimer(ctx, mongostore.Timer{ID: tid, Kind: timerOffer, OrderID: orderID, Courier: off.CourierID, Ref: n, Due: off.ExpiresAt.UTC()}); err != nil {
			return err
		}
		o, _, err := s.change(ctx, orderID, order.Action{Kind: order.ActOffer, At: s.now().UTC(), CourierID: off.CourierID}, systemActor,
			func(next *mongostore.StoredOrder) error {
				k := 0
				if next.Round != nil && !next.Round.Done {
					k = len(next.Round.Log)
				}
				if k != prevLen {
					return order.ErrConflict // the round moved on: start again from the store
				}
				next.Round = &st
				return nil
			})
		if errors.Is(err, order.ErrConflict) {
			s.cancelTimer(ctx, tid)
			continue
		}
		if errors.Is(err, order.ErrInvalidTransition) {
			s.cancelTimer(ctx, tid)
			return nil // assigned or cancelled meanwhile
		}
		if err != nil {
			s.cancelTimer(ctx, tid)
			return err
		}
		exp := off.ExpiresAt.UTC()
		s.publish(off.CourierID, wire.Task{Type: wire.TaskOffer, OrderID: orderID, ExpiresAt: &exp, Order: taskOrder(o)}, false)
		s.d.Log.Info("order offered", "order_id", orderID, "courier_id", off.CourierID)
		return nil
	}
	return order.ErrConflict
}

func (s *Service) flagForDispatchers(ctx context.Context, orderID, why string) error {
	_, err := s.update(ctx, orderID, "needs_dispatcher", systemActor, why, func(n *mongostore.StoredOrder) error {
		if n.Flags.NeedsDispatcher && n.Round == nil {
			return ErrUnchanged
		}
		n.Flags.NeedsDispatcher = true
		n.Round = nil
		return nil
	})
	if errors.Is(err, ErrUnchanged) {
		return nil
	}
	if err != nil {
		return err
	}
	s.hub.Publish("order.needs_dispatcher", map[string]any{"order_id": orderID, "reason": why})
	s.d.Log.Info("order needs a dispatcher", "order_id", orderID, "reason", why)
	s.observe("order.needs_dispatcher", "needs_dispatcher")
	return nil
}
