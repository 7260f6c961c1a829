package delivery

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/tawsil/tawsil/backend/internal/core"
	"time"

	"github.com/tawsil/tawsil/backend/internal/mongostore"
	"github.com/tawsil/tawsil/backend/internal/routing"
	"github.com/tawsil/tawsil/shared/wire"
)

// replan re-orders a courier's remaining stops and sends the plan to its
// device. Stops keep their previous order as the planner's input, so a new
// plan is never worse than the old one on lateness.
func (s *Service) replan(ctx context.Context, courier, why string) *courierRoute {
	if courier == "" {
		return nil
	}
	s.mu.Lock()
	prev := s.routes[courier]
	var mine []core.State
	for _, o := range s.active {
		if o.CourierID == courier {
			mine = append(mine, *o)
		}
	}
	s.mu.Unlock()
	now := s.now()
	var before []routing.Stop
	if prev != nil {
		before = prev.Stops
	}
	stops := core.PlanInput(mine, before)
	route := &courierRoute{Planned: now}
	if len(stops) > 0 {
		start := stops[0].Loc // no live position: plan from the first stop
		if lc, ok := s.d.Index.Get(courier); ok && lc.HasFix {
			start = routing.Point{Lat: lc.Fix.Lat, Lng: lc.Fix.Lng}
		}
		pctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		sol, err := s.d.Planner.Plan(pctx, routing.Problem{Start: start, StartTime: now, Stops: stops, Travel: etaTravel{s}})
		cancel()
		if err != nil {
			s.d.Log.Warn("route plan failed; keeping the input order", "courier_id", courier, "err", err)
			sol, err = routing.Evaluate(routing.Problem{Start: start, StartTime: now, Stops: stops, Travel: etaTravel{s}}, stops)
			if err != nil {
				return nil
			}
		}
		route.Stops, route.Visits = sol.Stops(), sol.Visits
	}
	if len(route.Stops) == 0 && prev == nil {
		return route
	}
	// The version comes from the store (above every version any replica
	// gave this courier), and the plan is kept there for restarts. A
	// courier's first version is the clock in ms, as task numbers are: a
	// device keeps the version of its plan in force across its restarts,
	// so plans from a store started afresh must still be newer.
	var hint uint64
	if prev != nil {
		hint = prev.Version
	}
	v, err := s.d.Store.NextSeq(ctx, "route/"+courier, uint64(max(now.UnixMilli(), 1)), hint)
	if err != nil {
		s.d.Log.Warn("route plan not versioned; not sent", "courier_id", courier, "err", err)
		return nil
	}
	route.Version = v
	if b, err := json.Marshal(route); err != nil {
		s.d.Log.Error("route plan encode", "courier_id", courier, "err", err)
	} else if err := s.d.Store.SaveRoutePlan(ctx, mongostore.RoutePlan{CourierID: courier, Version: v, Planned: now.UTC(), Reason: why, Plan: b}); err != nil {
		s.d.Log.Warn("route plan not stored", "courier_id", courier, "err", err)
	}
	s.mu.Lock()
	if cur := s.routes[courier]; cur == nil || cur.Version < v {
		s.routes[courier] = route
	}
	s.mu.Unlock()
	s.publish(courier, wire.Task{Type: wire.TaskRoutePlan, Reason: why, Route: wireRoute(route, s.activeSnapshot())}, true)
	s.hub.Publish("route.planned", map[string]any{"courier_id": courier, "version": route.Version, "reason": why, "stops": routeStops(route)})
	return route
}

// loadRoute puts a courier's newest stored plan in the cache.
func (s *Service) loadRoute(ctx context.Context, courier string) error {
	p, ok, err := s.d.Store.LatestRoutePlan(ctx, courier)
	if err != nil || !ok {
		return err
	}
	var r courierRoute
	if err := json.Unmarshal(p.Plan, &r); err != nil {
		return fmt.Errorf("route plan of %s: %w", courier, err)
	}
	r.Version = p.Version
	s.mu.Lock()
	if cur := s.routes[courier]; cur == nil || cur.Version < r.Version {
		s.routes[courier] = &r
	}
	s.mu.Unlock()
	return nil
}

func (s *Service) activeSnapshot() map[string]*mongostore.StoredOrder {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[string]*mongostore.StoredOrder, len(s.active))
	for k, v := range s.active {
		m[k] = v
	}
	return m
}

func wireRoute(r *courierRoute, active map[string]*mongostore.StoredOrder) *wire.Route {
	out := &wire.Route{Version: r.Version, Stops: []wire.Stop{}}
	for _, v := range r.Visits {
		st := wire.Stop{OrderID: v.OrderID, Kind: string(v.Kind), Lat: v.Loc.Lat, Lng: v.Loc.Lng, ETA: v.Arrival.UTC()}
		if o := active[v.OrderID]; o != nil {
			switch v.Kind {
			case routing.Pickup, routing.Return:
				st.Address = o.Pickup.Address
			default:
				st.Address = o.Dropoff.Address
			}
		}
		if !v.Latest.IsZero() {
			due := v.Latest.UTC()
			st.Due = &due
		}
		out.Stops = append(out.Stops, st)
	}
	return out
}

// RouteStop is a stop as the API shows it.
type RouteStop struct {
	OrderID string    `json:"order_id"`
	Kind    string    `json:"kind"`
	Lat     float64   `json:"lat"`
	Lng     float64   `json:"lng"`
	ETA     time.Time `json:"eta"`
	Due     time.Time `json:"due,omitzero"`
	Late    bool      `json:"late"`
}

func routeStops(r *courierRoute) []RouteStop {
	out := []RouteStop{}
	if r == nil {
		return out
	}
	for _, v := range r.Visits {
		out = append(out, RouteStop{OrderID: v.OrderID, Kind: string(v.Kind), Lat: v.Loc.Lat, Lng: v.Loc.Lng, ETA: v.Arrival.UTC(),
			Due: v.Latest.UTC(), Late: v.Lateness > 0})
	}
	return out
}

// etaTravel prices legs with the learned ETA model.
type etaTravel struct{ s *Service }

func (t etaTravel) Travel(from, to routing.Point, at time.Time) time.Duration {
	return t.s.d.ETA.Travel(from.Lat, from.Lng, to.Lat, to.Lng, at)
}

// Route returns a courier's current route.
func (s *Service) Route(courier string) (version uint64, stops []RouteStop) {
	s.mu.Lock()
	r := s.routes[courier]
	s.mu.Unlock()
	if r == nil {
		return 0, []RouteStop{}
	}
	return r.Version, routeStops(r)
}
