package app

import (
	"context"
	_ "embed"
	"fmt"
	"github.com/tawsil/tawsil/backend/internal/core"
	"time"

	"github.com/tawsil/tawsil/backend/internal/area"
	"github.com/tawsil/tawsil/backend/internal/cash"
	"github.com/tawsil/tawsil/backend/internal/delivery"
	"github.com/tawsil/tawsil/backend/internal/density"
	"github.com/tawsil/tawsil/backend/internal/dispatch"
	"github.com/tawsil/tawsil/backend/internal/failure"
	"github.com/tawsil/tawsil/backend/internal/httpapi"
	"github.com/tawsil/tawsil/backend/internal/ledger"
	"github.com/tawsil/tawsil/backend/internal/metrics"
	"github.com/tawsil/tawsil/backend/internal/mongostore"
	"github.com/tawsil/tawsil/backend/internal/order"
	"github.com/tawsil/tawsil/backend/internal/pricing"
	"github.com/tawsil/tawsil/backend/internal/routing"
	"github.com/tawsil/tawsil/backend/internal/routing/vroom"
)

//go:embed relay_points.yaml
var defaultRelays []byte

// densityBridge lets the delivery service speak to the density map in points.
type densityBridge struct{ d *density.Map }

func (b densityBridge) OrderOpened(id string, lat, lng float64, at time.Time) {
	c, err := density.CellOf(lat, lng, 9)
	if err != nil {
		return
	}
	_ = b.d.OrderOpened(id, c)
	_ = b.d.Booked(c, at)
}
func (b densityBridge) OrderClosed(id string) { b.d.OrderClosed(id) }
func (b densityBridge) Failed(lat, lng float64, at time.Time) {
	if c, err := density.CellOf(lat, lng, 9); err == nil {
		_ = b.d.Failed(c, at)
	}
}
func (b densityBridge) UnderSupplied(lat, lng, ratio float64, at time.Time) bool {
	s, ok := b.d.Stats(lat, lng, density.Res, at)
	if !ok {
		return false
	}
	demand := s.OpenOrders + s.Booked15m
	return demand > 0 && float64(demand) > ratio*float64(s.AvailableCouriers)
}

// mountFeatures builds the order side (quotes, orders, dispatch, failed-
// delivery rules, routes, webhooks, KPIs) and registers its routes.
func (m *Main) mountFeatures(ctx context.Context) error {
	cfg := m.Config
	etaModel := m.ETA
	areas, err := area.New(area.Default())
	if err != nil {
		return fmt.Errorf("service areas: %w", err)
	}
	pricer, err := pricing.New(pricing.Default())
	if err != nil {
		return fmt.Errorf("tariff: %w", err)
	}
	disp, err := dispatch.New(dispatch.Default(), etaModel)
	if err != nil {
		return err
	}
	rules := failure.Default()
	if cfg.RulesFile != "" {
		if rules, err = failure.Load(cfg.RulesFile); err != nil {
			return fmt.Errorf("TAWSIL_RULES_FILE: %w", err)
		}
	}
	engine := failure.NewEngine(rules, m.Log)
	relays, err := failure.ParseRelayPoints(defaultRelays)
	if err != nil {
		return fmt.Errorf("relay points: %w", err)
	}
	var planner routing.Planner = routing.Builtin{}
	if cfg.VROOMURL != "" {
		planner = routing.WithFallback(&vroom.Client{URL: cfg.VROOMURL, Timeout: 2 * time.Second}, routing.Builtin{}, m.Log)
	}
	m.Hub = delivery.NewHub()
	m.Webhooks = delivery.NewWebhooks(m.Store, cfg.WebhookAllowPrivate, m.Log, func(outcome string) {
		m.Metrics.Webhooks.WithLabelValues(outcome).Inc()
	})
	book, err := m.cashBook(ctx)
	if err != nil {
		return err
	}
	dcfg := delivery.DefaultConfig()
	dcfg.Prefix, dcfg.OfferTimeout, dcfg.Relays, dcfg.DispatchEvery = cfg.TopicPrefix, cfg.OfferTimeout, relays, cfg.DispatchEvery
	m.Delivery = delivery.New(dcfg, delivery.Deps{Store: m.Store, Index: m.Index, Density: densityBridge{m.Density}, ETA: etaModel,
		Areas: areas, Pricer: pricer, Dispatch: disp, Rules: engine, Planner: planner, Bus: m.Bus, Log: m.Log, Cash: book, Observe: m.observeEvent,
		Merchant: func(ctx context.Context, id string) (string, string, error) {
			mer, err := m.Accounts.Merchant(ctx, id)
			if err != nil {
				return "", "", err
			}
			return mer.Policy, mer.Deliver, nil
		}}, m.Hub, m.Webhooks)
	if err := m.Delivery.Start(ctx); err != nil {
		return err
	}
	m.purgeHook = func(ctx context.Context) {
		cutoff := time.Now().Add(-time.Duration(cfg.CustomerDataDays) * 24 * time.Hour)
		n, err := m.Store.RedactOrders(ctx, cutoff, func(o *order.Order) { o.Redact(); o.Version++ })
		if err != nil {
			m.Log.Warn("customer data redaction failed", "err", err)
		} else if n > 0 {
			m.Log.Info("customer data redacted on finished orders", "orders", n, "older_than", cutoff)
		}
	}
	gauges := metrics.Gauges{
		OrdersByStatus: func() map[string]int {
			by, _ := m.Delivery.ActiveCounts()
			out := make(map[string]int, len(by))
			for st, n := range by {
				out[string(st)] = n
			}
			return out
		},
		NeedsDispatcher: func() int { _, n := m.Delivery.ActiveCounts(); return n },
		StreamClients:   m.Hub.Subscribers,
	}
	if m.Broker != nil {
		gauges.MQTTSessions = m.Broker.Sessions
	}
	m.Metrics.RegisterGauges(gauges)
	m.HTTP.MountOrders(httpapi.Orders{Svc: m.Delivery, Webhooks: m.Webhooks, Store: m.Store, Hub: m.Hub, ETA: etaModel,
		Rules: engine, RulesFile: cfg.RulesFile, Costs: core.DefaultCosts()})
	m.HTTP.MountCash(httpapi.Cash{Book: book, Loc: serviceZone})
	m.HTTP.OnCourierErased = func(ctx context.Context, courierID string) error {
		m.phones.Delete(courierID) // the dispatcher lists forget the erased courier's phone and name
		m.names.set(courierID, "")
		return book.Erase(ctx, courierID)
	}
	return nil
}

// serviceZone is where merchants' days begin and end.
var serviceZone = mustZone("Africa/Casablanca")

func mustZone(name string) *time.Location {
	loc, err := time.LoadLocation(name) // tzdata is embedded (internal/eta imports time/tzdata)
	if err != nil {
		return time.FixedZone("+01", 3600)
	}
	return loc
}

// cashBook builds the courier cash ledger: caps for dispatch, alerts on the
// staff stream, merchants' settlement webhooks, and the reconciliation of
// delivered cash-on-delivery orders the ledger lacks.
func (m *Main) cashBook(ctx context.Context) (*ledger.Book, error) {
	capMAD, err := cash.FromMAD(m.Config.CashCapMAD)
	if err != nil {
		return nil, fmt.Errorf("TAWSIL_CASH_CAP_MAD: %w", err)
	}
	book := ledger.New(m.Store, ledger.Config{DefaultCap: capMAD, Loc: serviceZone}, m.Log)
	book.OverCap = func(courierID string, inHand, limit cash.Centimes) {
		m.Hub.Publish("courier.cash_over_cap", map[string]any{"courier_id": courierID, "in_hand_mad": inHand.MAD(), "cap_mad": limit.MAD()})
		m.Log.Info("courier over its cash cap: no cash-on-delivery offers until cash is handed in", "courier_id", courierID)
	}
	book.SettlementClosed = func(ctx context.Context, d cash.MerchantDay, reference string) {
		m.Webhooks.Enqueue(ctx, d.MerchantID, "cod.settlement_closed", map[string]any{"merchant_id": d.MerchantID, "day": d.Day,
			"orders": d.Orders, "collected_mad": d.Collected.MAD(), "paid_out_mad": d.PaidOut.MAD(), "outstanding_mad": d.Outstanding.MAD(),
			"reference": reference})
	}
	book.Delivered = func(ctx context.Context, since time.Time) ([]cash.Handover, error) {
		os, err := m.Store.Orders(ctx, mongostore.OrderFilter{Statuses: []order.Status{order.StatusDelivered}, From: since.Add(-6 * time.Hour)})
		if err != nil {
			return nil, err
		}
		var out []cash.Handover
		for _, o := range os {
			if o.CODAmountMAD <= 0 || o.CourierID == "" || o.Milestones.DeliveredAt.Before(since) {
				continue
			}
			due, err := cash.FromMAD(o.CODAmountMAD)
			if err != nil {
				continue
			}
			out = append(out, cash.Handover{CourierID: o.CourierID, OrderID: o.ID, MerchantID: o.MerchantID, Due: due, Paid: due, At: o.Milestones.DeliveredAt})
		}
		return out, nil
	}
	if err := book.Load(ctx); err != nil {
		return nil, fmt.Errorf("cash ledger: %w", err)
	}
	m.Cash = book
	return book, nil
}

// shiftLog records shift intervals for courier-hour KPIs.
func (m *Main) shiftLog(ctx context.Context, courierID string, on bool) error {
	if on {
		return m.Store.OpenShift(ctx, courierID, time.Now().UTC())
	}
	return m.Store.CloseShift(ctx, courierID, time.Now().UTC())
}

// observeEvent counts business events: every event by name, offers by
// outcome, dispatch decisions.
func (m *Main) observeEvent(event string, action order.Kind) {
	m.Metrics.OrderEvents.WithLabelValues(event).Inc()
	switch action {
	case order.ActOffer:
		m.Metrics.Offers.WithLabelValues("made").Inc()
		m.Metrics.Dispatch.WithLabelValues("offered").Inc()
	case order.ActAccept:
		m.Metrics.Offers.WithLabelValues("accepted").Inc()
	case order.ActDecline:
		m.Metrics.Offers.WithLabelValues("declined").Inc()
	case order.ActExpire:
		m.Metrics.Offers.WithLabelValues("expired").Inc()
	case order.ActAssign:
		m.Metrics.Dispatch.WithLabelValues("assigned").Inc()
	case "needs_dispatcher":
		m.Metrics.Dispatch.WithLabelValues("needs_dispatcher").Inc()
	}
}
