package delivery

import (
	"context"
	"github.com/tawsil/tawsil/backend/internal/core"
	"math"
	"slices"
	"sort"
	"time"

	"github.com/tawsil/tawsil/backend/internal/mongostore"
	"github.com/tawsil/tawsil/backend/internal/order"
)

// refresh reloads the active orders and the fairness counters from the
// store, so this process follows what other replicas changed.
func (s *Service) refresh(ctx context.Context) {
	orders, err := s.d.Store.ActiveOrders(ctx)
	if err != nil {
		s.d.Log.Warn("refresh active orders", "err", err)
		return
	}
	seen := make(map[string]bool, len(orders))
	for i := range orders {
		o := orders[i]
		seen[o.ID] = true
		s.remember(&o)
	}
	var gone []string
	s.mu.Lock()
	for id := range s.active {
		if !seen[id] {
			gone = append(gone, id)
		}
	}
	s.mu.Unlock()
	for _, id := range gone { // finished elsewhere
		if o, err := s.d.Store.Order(ctx, id); err == nil {
			s.remember(&o)
		}
	}
	if err := s.recountToday(ctx); err != nil {
		s.d.Log.Warn("refresh fairness counters", "err", err)
	}
}

// atRiskLoop re-estimates every active order's delivery every few seconds
// from the couriers' live positions and planned routes, and raises orders
// predicted to miss their promise before they are late.
func (s *Service) atRiskLoop() {
	defer s.bg.Done()
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			s.refresh(ctx)
			s.checkAtRisk(ctx)
			cancel()
		}
	}
}

// AtRiskOrder is an order predicted to miss its promise.
type AtRiskOrder struct {
	OrderID     string    `json:"order_id"`
	CourierID   string    `json:"courier_id,omitempty"`
	Status      string    `json:"status"`
	PromiseBy   time.Time `json:"promise_by"`
	PredictedAt time.Time `json:"predicted_at"`
	LateByMin   float64   `json:"late_by_min"`
}

func (s *Service) checkAtRisk(ctx context.Context) {
	now := s.now()
	couriers := map[string]bool{}
	s.mu.Lock()
	for _, o := range s.active {
		if o.CourierID != "" {
			couriers[o.CourierID] = true
		}
	}
	s.mu.Unlock()
	// Re-plan from live positions so ETAs follow the couriers.
	pred := map[string]time.Time{}
	for c := range couriers {
		s.mu.Lock()
		r := s.routes[c]
		s.mu.Unlock()
		if r == nil {
			continue
		}
		if lc, ok := s.d.Index.Get(c); ok && lc.HasFix {
			at := now
			pos := lc.Fix
			for _, v := range r.Visits {
				at = at.Add(s.d.ETA.Travel(pos.Lat, pos.Lng, v.Loc.Lat, v.Loc.Lng, at))
				if at.Before(v.Earliest) {
					at = v.Earliest
				}
				if v.Kind != "pickup" {
					pred[v.OrderID] = at
				}
				at = at.Add(v.Service)
				pos.Lat, pos.Lng = v.Loc.Lat, v.Loc.Lng
			}
		}
	}
	s.mu.Lock()
	var raised []AtRiskOrder
	flip := map[string]bool{}
	for _, o := range s.active {
		p, ok := pred[o.ID]
		if !ok {
			if o.CourierID == "" && now.Add(20*time.Minute).After(o.PromiseBy) {
				p, ok = now.Add(20*time.Minute), true // nobody has it and 20 minutes is the least a delivery takes
			} else {
				continue
			}
		}
		risk := p.After(o.PromiseBy.Add(-s.cfg.AtRiskMargin))
		if risk && !o.Flags.AtRisk {
			raised = append(raised, AtRiskOrder{OrderID: o.ID, CourierID: o.CourierID, Status: string(o.Status), PromiseBy: o.PromiseBy,
				PredictedAt: p, LateByMin: math.Round(p.Sub(o.PromiseBy).Minutes()*10) / 10})
		}
		if risk != o.Flags.AtRisk {
			flip[o.ID] = risk
		}
		// The prediction changes every few seconds and stays in memory; the
		// flag is stored (below) when it changes.
		cp := *o
		cp.Order = o.Order.Clone()
		cp.Flags.PredictedAt = p
		s.active[o.ID] = &cp
	}
	s.mu.Unlock()
	for id, risk := range flip {
		if _, _, err := s.run(ctx, id, core.AtRisk{Risk: risk}, false); err != nil {
			s.d.Log.Warn("at-risk flag not stored", "order_id", id, "err", err)
		}
	}
	for _, a := range raised {
		s.hub.Publish("order.at_risk", map[string]any{"order_id": a.OrderID, "courier_id": a.CourierID, "promise_by": a.PromiseBy,
			"predicted_at": a.PredictedAt, "late_by_min": a.LateByMin})
	}
}

// AtRisk lists active orders predicted to miss their promise, worst first.
func (s *Service) AtRisk() []AtRiskOrder {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []AtRiskOrder{}
	for _, o := range s.active {
		if o.Flags.AtRisk {
			out = append(out, AtRiskOrder{OrderID: o.ID, CourierID: o.CourierID, Status: string(o.Status), PromiseBy: o.PromiseBy,
				PredictedAt: o.Flags.PredictedAt, LateByMin: math.Round(o.Flags.PredictedAt.Sub(o.PromiseBy).Minutes()*10) / 10})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].LateByMin > out[j].LateByMin })
	return out
}

// Order returns an order as stored (with live flags when active), from
// this replica's cache when active (it follows other replicas' writes every
// few seconds).
func (s *Service) Order(ctx context.Context, id string) (*mongostore.StoredOrder, error) {
	return s.load(ctx, id, false)
}

// FreshOrder is Order read from the store (and the cache updated).
func (s *Service) FreshOrder(ctx context.Context, id string) (*mongostore.StoredOrder, error) {
	return s.load(ctx, id, true)
}

// Orders lists orders.
func (s *Service) Orders(ctx context.Context, f mongostore.OrderFilter) ([]mongostore.StoredOrder, error) {
	return s.d.Store.Orders(ctx, f)
}

// Events lists an order's events.
func (s *Service) Events(ctx context.Context, id string) ([]order.Event, error) {
	return s.d.Store.Events(ctx, id)
}

// CourierTask is one order as its courier sees it.
type CourierTask struct {
	OrderID      string       `json:"order_id"`
	Status       string       `json:"status"`
	Offer        bool         `json:"offer"`
	OfferExpires *time.Time   `json:"offer_expires_at,omitempty"`
	Pickup       order.Place  `json:"pickup"`
	Dropoff      order.Place  `json:"dropoff"`
	PromiseBy    time.Time    `json:"promise_by"`
	ParcelSize   string       `json:"parcel_size"`
	CODAmountMAD float64      `json:"cod_amount_mad"`
	Customer     CustomerView `json:"customer"`
	Notes        string       `json:"notes,omitempty"`
}

// CustomerView is what a courier may know of the customer, and only while
// the order is active: first name, and the phone masked (calls go through
// the platform).
type CustomerView struct {
	FirstName string `json:"first_name"`
	Phone     string `json:"phone_masked"`
}

// Tasks returns a courier's offers, active orders and route.
func (s *Service) Tasks(courier string) (tasks []CourierTask, version uint64, stops []RouteStop) {
	s.mu.Lock()
	var mine []*mongostore.StoredOrder
	for _, o := range s.active {
		if o.CourierID == courier || o.OfferedTo == courier {
			mine = append(mine, o)
		}
	}
	s.mu.Unlock()
	slices.SortFunc(mine, func(a, b *mongostore.StoredOrder) int { return a.PromiseBy.Compare(b.PromiseBy) })
	tasks = []CourierTask{}
	for _, o := range mine {
		t := CourierTask{OrderID: o.ID, Status: string(o.Status), Offer: o.OfferedTo == courier, Pickup: o.Pickup, Dropoff: o.Dropoff,
			PromiseBy: o.PromiseBy, ParcelSize: string(o.Size), CODAmountMAD: o.CODAmountMAD, Notes: o.Notes,
			Customer: CustomerView{FirstName: core.TaskOrder(*o).CustomerFirst, Phone: order.MaskPhone(o.CustomerPhone)}}
		if t.Offer && o.Round != nil && len(o.Round.Log) > 0 {
			exp := o.Round.Log[len(o.Round.Log)-1].ExpiresAt.UTC()
			t.OfferExpires = &exp
		}
		tasks = append(tasks, t)
	}
	version, stops = s.Route(courier)
	return tasks, version, stops
}

// PublicTrack is what the tracking link shows: no personal data.
type PublicTrack struct {
	Status      string     `json:"status"`
	BookedAt    time.Time  `json:"booked_at"`
	AssignedAt  *time.Time `json:"assigned_at,omitempty"`
	PickedUpAt  *time.Time `json:"picked_up_at,omitempty"`
	PromiseBy   time.Time  `json:"promise_by"`
	ETA         *time.Time `json:"eta,omitempty"`
	CourierNear *struct {
		Lat float64 `json:"lat"`
		Lng float64 `json:"lng"`
	} `json:"courier_position,omitempty"` // coarse (~100 m) while out for delivery
	DeliveredAt *time.Time `json:"delivered_at,omitempty"`
	// Pin asks the customer to drop or confirm the drop-off point (informal
	// addresses), until it is set.
	Pin *TrackPin `json:"pin,omitempty"`
}

// TrackPin is what the tracking page needs to ask for a drop-off pin: no
// address text, and a starting point rounded to about 100 m.
type TrackPin struct {
	Status    string    `json:"status"`
	ConfirmBy time.Time `json:"confirm_by"`
	Near      *struct {
		Lat float64 `json:"lat"`
		Lng float64 `json:"lng"`
	} `json:"near,omitempty"` // the approximate point booked, or the store's area
}

// TrackPin sets the drop-off pin of the order behind a public tracking
// token (the customer) and answers the new tracking view.
func (s *Service) TrackPin(ctx context.Context, token string, lat, lng float64) (PublicTrack, error) {
	o, err := s.d.Store.OrderByToken(ctx, token)
	if err != nil {
		return PublicTrack{}, err
	}
	if _, err := s.ConfirmPin(ctx, order.Actor{Role: order.RoleCustomer}, o.ID, lat, lng); err != nil {
		return PublicTrack{}, err
	}
	return s.Track(ctx, token)
}

// Track answers a public tracking token.
func (s *Service) Track(ctx context.Context, token string) (PublicTrack, error) {
	o, err := s.d.Store.OrderByToken(ctx, token)
	if err != nil {
		return PublicTrack{}, err
	}
	if cur, err := s.load(ctx, o.ID, false); err == nil {
		o = *cur
	}
	pt := PublicTrack{Status: string(o.Status), BookedAt: o.BookedAt, PromiseBy: o.PromiseBy}
	if t := o.Milestones.AssignedAt; !t.IsZero() {
		pt.AssignedAt = &t
	}
	if t := o.Milestones.PickedUpAt; !t.IsZero() {
		pt.PickedUpAt = &t
	}
	if !o.Milestones.DeliveredAt.IsZero() {
		d := o.Milestones.DeliveredAt
		pt.DeliveredAt = &d
	}
	if !o.Flags.PredictedAt.IsZero() && !o.Status.Terminal() {
		e := o.Flags.PredictedAt.UTC()
		pt.ETA = &e
	}
	if o.Pin != nil {
		pt.Pin = &TrackPin{Status: o.Pin.Status, ConfirmBy: o.Pin.ConfirmBy}
		if o.PinPending() {
			pt.Pin.Near = &struct {
				Lat float64 `json:"lat"`
				Lng float64 `json:"lng"`
			}{math.Round(o.Dropoff.Lat*1000) / 1000, math.Round(o.Dropoff.Lng*1000) / 1000}
		}
	}
	if o.Status == order.StatusPickedUp || o.Status == order.StatusReattemptScheduled {
		if lc, ok := s.d.Index.Get(o.CourierID); ok && lc.HasFix {
			pt.CourierNear = &struct {
				Lat float64 `json:"lat"`
				Lng float64 `json:"lng"`
			}{math.Round(lc.Fix.Lat*1000) / 1000, math.Round(lc.Fix.Lng*1000) / 1000}
		}
	}
	return pt, nil
}
