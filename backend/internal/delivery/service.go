// Package delivery runs the order side of Tawsil: quotes, bookings, dispatch
// offers, the courier task flow, failed-delivery decisions and re-routing.
// It orchestrates the domain packages (order, dispatch, routing, failure,
// eta, area, pricing) over the store, the live index and the broker.
//
// MongoDB holds the truth: every transition is a compare-and-set on the
// order's version plus an order_events record. This process keeps the
// active orders, offer rounds and courier routes in memory for speed, and
// rebuilds them from the store at start.
package delivery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/tawsil/tawsil/backend/internal/area"
	"github.com/tawsil/tawsil/backend/internal/dispatch"
	"github.com/tawsil/tawsil/backend/internal/eta"
	"github.com/tawsil/tawsil/backend/internal/failure"
	"github.com/tawsil/tawsil/backend/internal/livemap"
	"github.com/tawsil/tawsil/backend/internal/mongostore"
	"github.com/tawsil/tawsil/backend/internal/order"
	"github.com/tawsil/tawsil/backend/internal/pricing"
	"github.com/tawsil/tawsil/backend/internal/routing"
	"github.com/tawsil/tawsil/shared/topic"
	"github.com/tawsil/tawsil/shared/wire"
)

// Errors the HTTP layer maps (besides the order package's sentinels).
var (
	ErrOutsideArea = errors.New("outside the service area")
	ErrInfeasible  = errors.New("cannot be delivered within the promise")
	ErrIdemReuse   = errors.New("idempotency key reused with a different body")
	ErrTooFar      = errors.New("courier is not at the place")
	ErrNoPosition  = errors.New("no recent courier position")
	ErrNoCourier   = errors.New("courier not available")
	ErrInput       = errors.New("invalid input")
)

// Publisher sends messages to devices.
type Publisher interface {
	Publish(ctx context.Context, topic string, payload []byte, qos byte, retained bool) error
}

// Config tunes the service.
type Config struct {
	Prefix         string
	OfferTimeout   time.Duration
	SearchRadiusM  float64
	Candidates     int
	ArriveRadiusM  float64 // pickup/deliver must be this close to the place
	AtRiskMargin   time.Duration
	Verify         failure.VerifyConfig
	Relays         []failure.Relay
	UnderSupplyRat float64 // a pickup cell is under-supplied above this demand/supply ratio
}

// DefaultConfig returns production defaults.
func DefaultConfig() Config {
	return Config{Prefix: topic.DefaultPrefix, OfferTimeout: 30 * time.Second, SearchRadiusM: 8000, Candidates: 25,
		ArriveRadiusM: 250, AtRiskMargin: 5 * time.Minute, Verify: failure.DefaultVerifyConfig(), UnderSupplyRat: 2}
}

// Deps are the collaborators.
type Deps struct {
	Store    *mongostore.Store
	Index    *livemap.Index
	Density  Density
	ETA      *eta.Model
	Areas    *area.Areas
	Pricer   *pricing.Pricer
	Dispatch *dispatch.Dispatcher
	Rules    *failure.Engine
	Planner  routing.Planner
	Bus      Publisher
	Merchant func(ctx context.Context, id string) (policy, deliver string, err error)
	Log      *slog.Logger
}

// Density is what the service tells the density map.
type Density interface {
	OrderOpened(id string, lat, lng float64, at time.Time)
	OrderClosed(id string)
	Failed(lat, lng float64, at time.Time)
	UnderSupplied(lat, lng float64, ratio float64, at time.Time) bool
}

// Service is the order side.
type Service struct {
	cfg Config
	d   Deps
	now func() time.Time

	mu       sync.Mutex
	active   map[string]*mongostore.StoredOrder // non-terminal orders
	rounds   map[string]*round                  // open offer rounds by order
	routes   map[string]*courierRoute           // by courier
	seq      map[string]uint64                  // last task seq by courier
	today    map[string]int                     // orders assigned today by courier (fairness)
	todayDay int
	retryAt  map[string]time.Time       // order → drop-off not before (retry_later, contact_customer)
	contacts map[string]*pendingContact // order → contact_customer window waiting for a reply

	orderLocks [256]sync.Mutex // see lockOrder

	hub      *Hub
	webhooks *Webhooks
	bg       sync.WaitGroup
	stop     chan struct{}
}

type round struct {
	r     *dispatch.OfferRound
	timer *time.Timer
	offer dispatch.Offer
}

type courierRoute struct {
	Version uint64
	Stops   []routing.Stop
	Visits  []routing.Visit
	Planned time.Time
}

// New builds the service; call Start to rebuild state and run its loops.
func New(cfg Config, d Deps, hub *Hub, wh *Webhooks) *Service {
	return &Service{cfg: cfg, d: d, now: time.Now, active: map[string]*mongostore.StoredOrder{}, rounds: map[string]*round{},
		routes: map[string]*courierRoute{}, seq: map[string]uint64{}, today: map[string]int{}, retryAt: map[string]time.Time{}, contacts: map[string]*pendingContact{}, hub: hub, webhooks: wh, stop: make(chan struct{})}
}

// Start loads the active orders, restores courier loads and routes, puts
// orders that were being offered back to dispatch, and starts the loops.
func (s *Service) Start(ctx context.Context) error {
	orders, err := s.d.Store.ActiveOrders(ctx)
	if err != nil {
		return fmt.Errorf("load active orders: %w", err)
	}
	s.mu.Lock()
	for i := range orders {
		o := orders[i]
		s.active[o.ID] = &o
		s.d.Density.OrderOpened(o.ID, o.Pickup.Lat, o.Pickup.Lng, o.BookedAt)
	}
	couriers := map[string]bool{}
	for _, o := range s.active {
		if o.CourierID != "" {
			couriers[o.CourierID] = true
		}
	}
	s.mu.Unlock()
	for c := range couriers {
		s.syncLoad(c)
		s.replan(ctx, c, "restart")
	}
	for _, o := range orders {
		if o.Status == order.StatusOffered || o.Status == order.StatusBooked {
			id := o.ID
			s.goDispatch(id, nil)
		}
	}
	s.bg.Add(1)
	go s.atRiskLoop()
	s.d.Log.Info("delivery state restored", "active_orders", len(orders), "couriers_with_routes", len(couriers))
	return nil
}

// Close stops timers and loops.
func (s *Service) Close() {
	select {
	case <-s.stop:
		return // already closed
	default:
	}
	close(s.stop)
	s.mu.Lock()
	for _, r := range s.rounds {
		if r.timer != nil {
			r.timer.Stop()
		}
	}
	for _, pc := range s.contacts {
		pc.timer.Stop()
	}
	s.mu.Unlock()
	s.bg.Wait()
}

// nextSeq returns the next task sequence number of a courier: above the last
// one and above the clock in ms, so it keeps rising across restarts.
func (s *Service) nextSeq(courier string) uint64 {
	n := uint64(s.now().UnixMilli())
	if last := s.seq[courier]; n <= last {
		n = last + 1
	}
	s.seq[courier] = n
	return n
}

// publish sends a task to a courier's device (best effort: GET /v1/me/tasks
// is the source of truth a device catches up from).
func (s *Service) publish(courier string, t wire.Task, retained bool) {
	s.mu.Lock()
	t.V, t.Seq, t.At = wire.MessageVersion, s.nextSeq(courier), s.now().UTC()
	s.mu.Unlock()
	payload, err := json.Marshal(t)
	if err != nil {
		s.d.Log.Error("task encode", "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.d.Bus.Publish(ctx, topic.Courier(s.cfg.Prefix, courier, topic.Tasks), payload, 1, retained); err != nil {
		s.d.Log.Warn("task not published", "courier_id", courier, "type", t.Type, "err", err)
	}
}

func taskOrder(o *mongostore.StoredOrder) *wire.TaskOrder {
	first := o.CustomerName
	for i, r := range first {
		if r == ' ' {
			first = first[:i]
			break
		}
	}
	return &wire.TaskOrder{ID: o.ID, Pickup: wire.Place(o.Pickup), Dropoff: wire.Place(o.Dropoff), PromiseBy: o.PromiseBy,
		ParcelSize: string(o.Size), CODAmountMAD: o.CODAmountMAD, CustomerFirst: first}
}

// syncLoad tells the live index how many orders a courier carries.
func (s *Service) syncLoad(courier string) {
	s.mu.Lock()
	load := 0
	for _, o := range s.active {
		if o.CourierID == courier {
			load++
		}
	}
	s.mu.Unlock()
	lc, ok := s.d.Index.Get(courier)
	if !ok {
		return
	}
	st := lc.Status
	switch {
	case !lc.OnShift:
		st = livemap.StatusOffline
	case load > 0:
		st = livemap.StatusBusy
	case st == livemap.StatusBusy:
		st = livemap.StatusAvailable
	}
	if err := s.d.Index.SetStatus(courier, st, load); err != nil {
		s.d.Log.Warn("set courier status", "courier_id", courier, "err", err)
	}
}
