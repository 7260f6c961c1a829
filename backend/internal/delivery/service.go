// Package delivery runs the order side of Tawsil: quotes, bookings, dispatch
// offers, the courier task flow, failed-delivery decisions and re-routing.
// It orchestrates the domain packages (order, dispatch, routing, failure,
// eta, area, pricing) over the store, the live index and the broker.
//
// The store holds the truth and everything a restart must keep: every
// change of an order is claimed by inserting its event (order, version)
// under a unique index, and the order carries its offer round, retry
// not-before and contact window; timers are documents any replica fires
// (exactly once, by a claim); route plans, task sequence numbers and the
// fairness counters are in the store too. This process caches the active
// orders and courier routes in memory for speed, and rebuilds the cache from
// the store at start.
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
	"github.com/tawsil/tawsil/backend/internal/cash"
	"github.com/tawsil/tawsil/backend/internal/core"
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
	UnderSupplyRat float64       // a pickup cell is under-supplied above this demand/supply ratio
	TimerPoll      time.Duration // how often due timers are looked for
	// DispatchEvery is the time between dispatch epochs: orders waiting
	// for a courier are decided together once per epoch (RunEpoch).
	DispatchEvery time.Duration
}

// DefaultConfig returns production defaults.
func DefaultConfig() Config {
	return Config{Prefix: topic.DefaultPrefix, OfferTimeout: 30 * time.Second, SearchRadiusM: 8000, Candidates: 25,
		ArriveRadiusM: 250, AtRiskMargin: 5 * time.Minute, Verify: failure.DefaultVerifyConfig(), UnderSupplyRat: 2,
		TimerPoll: 250 * time.Millisecond, DispatchEvery: DefaultDispatchEvery}
}

// DefaultDispatchEvery is the time between dispatch epochs unless
// configured: short beside the hour, long enough that orders booked
// together are decided together (the simulator's step).
const DefaultDispatchEvery = 30 * time.Second

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
	Cash     CashBook // nil: no cash ledger (no caps, nothing recorded)
	Log      *slog.Logger
	// Observe, if set, learns of every business event: its stream/webhook
	// name and the action (metrics).
	Observe func(event string, action order.Kind)
}

// CashBook is what the service needs of the courier cash ledger;
// *ledger.Book satisfies it.
type CashBook interface {
	// Blocks reports whether the courier may not take a cash-on-delivery
	// order of due centimes (its cash in hand would pass its cap).
	Blocks(courierID string, due cash.Centimes) bool
	// Collect records a cash-on-delivery handover, once per order.
	Collect(ctx context.Context, h cash.Handover) error
	// SettledDays returns the merchants' settled days (keys "merchant day")
	// between two times; Zone is the time zone of those days.
	SettledDays(ctx context.Context, from, to time.Time) (map[string]bool, error)
	Zone() *time.Location
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
	cfg  Config
	d    Deps
	now  func() time.Time
	core *core.Core // the order rules: every change of an order is one of its steps

	mu     sync.Mutex
	active map[string]*mongostore.StoredOrder // non-terminal orders (a cache of the store)
	routes map[string]*courierRoute           // by courier (a cache of the store's route plans)
	seq    map[string]uint64                  // last task seq seen by courier (a hint; the store issues them)
	// couriers are the couriers' fairness state (load, orders assigned
	// today, idle since, open shift), changed only by the core's
	// CourierStep (stepCourier); the counts are recounted from the store.
	couriers map[string]core.CourierState
	codes    codeThrottle // wrong handover codes per courier (per replica)

	hub       *Hub
	webhooks  *Webhooks
	bg        sync.WaitGroup
	stop      chan struct{}
	closeOnce sync.Once
}

type courierRoute struct {
	Version uint64          `json:"version"`
	Stops   []routing.Stop  `json:"stops"`
	Visits  []routing.Visit `json:"visits"`
	Planned time.Time       `json:"planned"`
}

// New builds the service; call Start to rebuild state and run its loops.
func New(cfg Config, d Deps, hub *Hub, wh *Webhooks) *Service {
	if cfg.TimerPoll <= 0 {
		cfg.TimerPoll = 250 * time.Millisecond
	}
	if cfg.DispatchEvery <= 0 {
		cfg.DispatchEvery = DefaultDispatchEvery
	}
	rules := &core.Core{Dispatch: d.Dispatch, OfferTimeout: cfg.OfferTimeout, Rules: d.Rules, Verify: cfg.Verify, Relays: cfg.Relays,
		Zone: eta.Casablanca()} // every served city keeps Morocco's clock
	return &Service{cfg: cfg, d: d, now: time.Now, core: rules, active: map[string]*mongostore.StoredOrder{},
		routes: map[string]*courierRoute{}, seq: map[string]uint64{},
		couriers: map[string]core.CourierState{}, hub: hub, webhooks: wh, stop: make(chan struct{})}
}

// Start loads the active orders, the couriers' route plans and the fairness
// counters from the store, continues the dispatch of orders no offer is
// out for, and starts the loops. Open offers and contact windows need
// nothing: their deadlines are timers in the store.
func (s *Service) Start(ctx context.Context) error {
	n, couriers, err := s.restore(ctx)
	if err != nil {
		return err
	}
	s.bg.Add(3)
	go s.atRiskLoop()
	go s.timerLoop()
	go s.epochLoop()
	s.d.Log.Info("delivery state restored", "active_orders", n, "couriers_with_routes", couriers)
	return nil
}

// restore is Start without the loops.
func (s *Service) restore(ctx context.Context) (orderCount, courierCount int, err error) {
	orders, err := s.d.Store.ActiveOrders(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("load active orders: %w", err)
	}
	couriers := map[string]bool{}
	for i := range orders {
		o := orders[i]
		s.remember(&o)
		if o.CourierID != "" {
			couriers[o.CourierID] = true
		}
	}
	for c := range couriers {
		if err := s.loadRoute(ctx, c); err != nil {
			return 0, 0, err
		}
		s.syncLoad(c)
	}
	if err := s.recountToday(ctx); err != nil {
		return 0, 0, err
	}
	for _, o := range orders {
		if o.Status == order.StatusBooked && !o.Flags.NeedsDispatcher && !o.PinPending() {
			s.goRun(o.ID, core.Dispatch{Continue: true}) // continues its round, if it had one; else the next epoch places it
		}
	}
	return len(orders), len(couriers), nil
}

// Close stops the loops and waits for every background task (timer
// handlers included) to finish.
func (s *Service) Close() {
	s.closeOnce.Do(func() { close(s.stop) })
	s.bg.Wait()
}

// recountToday rebuilds the fairness counters from the store.
func (s *Service) recountToday(ctx context.Context) error {
	now := s.now()
	counts, err := s.d.Store.AssignedSince(ctx, s.core.DayStart(now).UTC())
	if err != nil {
		return err
	}
	shifts, err := s.d.Store.Shifts(ctx, now.Add(-24*time.Hour), now.Add(time.Minute))
	if err != nil {
		return err
	}
	open := map[string]time.Time{}
	for _, sh := range shifts {
		if sh.To.IsZero() {
			open[sh.CourierID] = sh.From
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := map[string]bool{}
	for id := range counts {
		ids[id] = true
	}
	for id := range open {
		ids[id] = true
	}
	for id := range s.couriers {
		ids[id] = true
	}
	for id := range ids {
		s.stepCourier(id, core.Recounted{AssignedToday: counts[id], ShiftFrom: open[id]}, now)
	}
	return nil
}

// stepCourier applies a courier event to its state (the core's
// CourierStep). Call with s.mu held.
func (s *Service) stepCourier(courier string, ev core.CourierEvent, now time.Time) core.CourierState {
	st, ok := s.couriers[courier]
	if !ok {
		st.ID = courier
	}
	st, _ = s.core.CourierStep(st, ev, now)
	s.couriers[courier] = st
	return st
}

// nextSeq returns the next task sequence number of a courier, issued by the
// store: above every number any replica issued before, across restarts.
// The first number of a courier is the clock in ms, above the numbers older
// versions used.
func (s *Service) nextSeq(ctx context.Context, courier string) (uint64, error) {
	s.mu.Lock()
	hint := s.seq[courier]
	s.mu.Unlock()
	n, err := s.d.Store.NextSeq(ctx, "task/"+courier, uint64(s.now().UnixMilli()), hint)
	if err != nil {
		return 0, err
	}
	s.mu.Lock()
	if n > s.seq[courier] {
		s.seq[courier] = n
	}
	s.mu.Unlock()
	return n, nil
}

// publish sends a task to a courier's device (best effort: GET /v1/me/tasks
// is the source of truth a device catches up from).
func (s *Service) publish(courier string, t wire.Task, retained bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	seq, err := s.nextSeq(ctx, courier)
	if err != nil {
		s.d.Log.Warn("task not published: no sequence number", "courier_id", courier, "type", t.Type, "err", err)
		return
	}
	t.V, t.Seq, t.At = wire.MessageVersion, seq, s.now().UTC()
	payload, err := json.Marshal(t)
	if err != nil {
		s.d.Log.Error("task encode", "err", err)
		return
	}
	if err := s.d.Bus.Publish(ctx, topic.Courier(s.cfg.Prefix, courier, topic.Tasks), payload, 1, retained); err != nil {
		s.d.Log.Warn("task not published", "courier_id", courier, "type", t.Type, "err", err)
	}
}

// syncLoad tells the live index how many orders a courier carries.
func (s *Service) syncLoad(courier string) {
	s.mu.Lock()
	var held []string
	for _, o := range s.active {
		if o.CourierID == courier {
			held = append(held, o.ID)
		}
	}
	load := s.stepCourier(courier, core.Holding{Orders: held}, s.now()).Load()
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
