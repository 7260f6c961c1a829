// Package app wires the backend together: store, broker, live index,
// ingest, HTTP API and background jobs. cmd/backend only calls it; the
// end-to-end tests start it on free ports.
package app

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/tawsil/tawsil/backend/internal/account"
	"github.com/tawsil/tawsil/backend/internal/auth"
	"github.com/tawsil/tawsil/backend/internal/config"
	"github.com/tawsil/tawsil/backend/internal/delivery"
	"github.com/tawsil/tawsil/backend/internal/density"
	"github.com/tawsil/tawsil/backend/internal/eta"
	"github.com/tawsil/tawsil/backend/internal/httpapi"
	"github.com/tawsil/tawsil/backend/internal/ingest"
	"github.com/tawsil/tawsil/backend/internal/ledger"
	"github.com/tawsil/tawsil/backend/internal/livemap"
	"github.com/tawsil/tawsil/backend/internal/metrics"
	"github.com/tawsil/tawsil/backend/internal/mongostore"
	"github.com/tawsil/tawsil/backend/internal/mqttack"
	"github.com/tawsil/tawsil/backend/internal/mqttbus"
	"github.com/tawsil/tawsil/backend/internal/tlsconf"
	"github.com/tawsil/tawsil/shared/topic"
	"github.com/tawsil/tawsil/shared/wire"
)

// Bus publishes to devices.
type Bus interface {
	Publish(ctx context.Context, topic string, payload []byte, qos byte, retained bool) error
	Connected() bool
	Close() error
}

// Main is a running backend.
type Main struct {
	Config   config.Config
	Log      *slog.Logger
	Store    *mongostore.Store
	Index    *livemap.Index
	Density  *density.Map
	Accounts *account.Service
	Metrics  *metrics.Metrics
	History  *History
	Ingest   *ingest.Pipeline
	Acks     *ingest.Acks
	Bus      Bus
	Broker   EmbeddedBroker // nil with an external broker
	HTTP     *httpapi.Server
	ETA      *eta.Model
	Delivery *delivery.Service
	Webhooks *delivery.Webhooks
	Hub      *delivery.Hub
	Cash     *ledger.Book

	// MQTTListener, if set before Start, is the embedded broker's listener
	// (tests open it on port 0); otherwise the broker listens on MQTTListen.
	MQTTListener net.Listener

	names courierNames

	// BcryptCost overrides the password hashing cost (tests use the minimum).
	BcryptCost int

	// fixHooks learn of every fix that moved a courier (ETA, at-risk).
	fixHooks []func(courierID string, prev wire.Fix, hadPrev bool, fix wire.Fix)
	// purgeHook runs with the hourly retention job (customer data redaction).
	purgeHook func(ctx context.Context)

	notes  notes     // newest courier note applied per courier (cluster.go)
	relays *relayOut // what this replica tells the others, while clustered (cluster.go)
	// phones holds each courier's phone for the dispatcher lists.
	phones sync.Map // courier id → phone

	closeDocs func()
	closeOnce sync.Once
	httpLn    net.Listener
	cancel    context.CancelFunc
	jobsDone  chan struct{}
	httpDone  chan error
}

// History is the ingest history writer.
type History = ingest.History

// presenceBridge forwards live-index presence changes to the density map.
type presenceBridge struct{ d *density.Map }

func (b presenceBridge) CourierChanged(id string, prev, next livemap.Presence) {
	b.d.CourierChanged(id, density.Presence{Cell8: prev.Cell8, Cell7: prev.Cell7, Supply: uint8(prev.Supply)},
		density.Presence{Cell8: next.Cell8, Cell7: next.Cell7, Supply: uint8(next.Supply)})
}

// New returns an unstarted backend for cfg.
func New(cfg config.Config, log *slog.Logger) *Main {
	return &Main{Config: cfg, Log: log}
}

// Start brings everything up; the HTTP server listens on ln if given,
// otherwise on Config.HTTPAddr.
func (m *Main) Start(ctx context.Context, ln net.Listener) (err error) {
	cfg := m.Config
	defer func() {
		if err != nil {
			m.Close(context.Background())
		}
	}()
	uri := cfg.MongoURI
	if uri == "" {
		// FerretDB logs whole documents (customer data) in its records: keep
		// only the messages of its warnings and errors.
		uri, m.closeDocs, err = startDocstore(ctx, cfg, slog.New(messageOnly{m.Log.With("component", "ferretdb").Handler()}))
		if err != nil {
			return err
		}
		m.Log.Info("embedded FerretDB started", "handler", cfg.FerretHandler, "data_dir", cfg.DataDir)
	}
	if m.Store, err = mongostore.Open(ctx, uri, cfg.MongoDatabase, m.Log); err != nil {
		return err
	}
	m.Store.EnsureTTL(ctx, time.Duration(cfg.PositionsRetentionDays)*24*time.Hour)

	m.Density = density.New()
	m.Index = livemap.New(livemap.WithObserver(presenceBridge{m.Density}))
	m.Metrics = metrics.New(func() float64 { return float64(m.Index.Len()) })

	keys := make([]auth.Key, len(cfg.JWTKeys))
	for i, k := range cfg.JWTKeys {
		keys[i] = auth.Key{KID: k.KID, Secret: k.Secret}
	}
	tokens, err := auth.NewTokens(keys, cfg.JWTActiveKID, cfg.JWTIssuer, cfg.JWTAudience, cfg.AccessTTL)
	if err != nil {
		return err
	}
	m.Accounts = account.NewService(m.Store, tokens, cfg.RefreshTTL, m.BcryptCost, m.Log)
	if cfg.AdminEmail != "" {
		if err := m.Accounts.EnsureAdmin(ctx, cfg.AdminEmail, cfg.AdminPassword); err != nil {
			return fmt.Errorf("bootstrap admin: %w", err)
		}
	}
	if err := m.restore(ctx); err != nil {
		return err
	}

	// Everything ingest calls into must exist before a transport starts: an
	// external broker delivers a persistent session's backlog at connect.
	if m.ETA, err = eta.New(eta.Default(), m.Log); err != nil {
		return err
	}
	if err := m.loadETA(ctx); err != nil {
		return err
	}
	m.fixHooks = append(m.fixHooks, func(courier string, prev wire.Fix, had bool, fix wire.Fix) {
		if had {
			m.ETA.Observe(courier, prev, fix)
		}
	})
	m.History = ingest.NewHistory(m.Store, cfg.HistoryFlushInterval, cfg.HistoryQueueMax, m.Log, m.Metrics)
	m.Ingest = ingest.New(cfg.TopicPrefix, ingest.Policy{MaxAge: cfg.MaxFixAge, MaxFuture: cfg.MaxFixFuture,
		MaxAccuracyM: cfg.MaxAccuracyM, MaxSpeedMPS: cfg.MaxSpeedMPS}, m.Index, m.History, m.onFix, m.Log, m.Metrics)
	// Storage acknowledgements go out on the path that stored the fixes
	// (the broker hook, or this replica's share of the shared subscription).
	m.Acks = ingest.NewAcks(cfg.TopicPrefix, cfg.AckInterval, func(ctx context.Context, t string, p []byte) error {
		if m.Bus == nil {
			return errors.New("no broker yet")
		}
		return m.Bus.Publish(ctx, t, p, 0, false)
	}, m.Log.With("component", "acks"), m.Metrics)
	m.Ingest.SetAcks(m.Acks)

	if cfg.MQTTURL == "" {
		var mqttTLS *tls.Config
		if cfg.MQTTTLSCert != "" {
			if mqttTLS, _, err = tlsconf.Server(cfg.MQTTTLSCert, cfg.MQTTTLSKey); err != nil {
				return fmt.Errorf("TAWSIL_MQTT_TLS_CERT: %w", err)
			}
		}
		m.Broker, err = startBroker(cfg, m.MQTTListener, mqttTLS, m.Accounts, m.Ingest, slog.New(oneLine{m.Log.With("component", "mqtt").Handler()}), m.Metrics)
		if err != nil {
			return err
		}
		m.Bus = m.Broker
		m.Accounts.OnDeviceRevoked = m.Broker.Disconnect
		m.Log.Info("embedded MQTT broker listening", "addr", m.Broker.Addr())
	} else {
		// With a share group: the shared subscription stores (and acknowledges)
		// this replica's share of positions, a plain one feeds its full live index.
		backend := cfg.TopicPrefix + "/backend/" // notes and relays (cluster.go)
		var h, live mqttack.Handler = noteMux{m, backend, m.Ingest, m.Ingest.LiveOnly()}, nil
		if cfg.MQTTGroup != "" {
			h, live = m.Ingest, noteMux{m, backend, m.Ingest.LiveOnly(), m.Ingest.LiveOnly()}
		}
		m.Bus, err = mqttbus.Connect(ctx, mqttbus.Options{URL: cfg.MQTTURL, Username: cfg.MQTTUsername, Password: cfg.MQTTPassword,
			ClientID: cfg.MQTTClientID, Group: cfg.MQTTGroup, Prefix: cfg.TopicPrefix, CAFile: cfg.MQTTCAFile, Handler: h,
			Live: live, LiveFilters: append([]string{notesFilter(cfg.TopicPrefix)}, relayFilters(cfg.TopicPrefix)...), Logger: m.Log.With("component", "mqtt")})
		if err != nil {
			return err
		}
		if m.clustered() {
			m.relays = newRelayOut()
		}
		m.Log.Info("connected to external MQTT broker", "url", cfg.MQTTURL)
	}

	m.HTTP = httpapi.New(httpapi.Options{BodyLimit: cfg.BodyLimit, TrustedProxies: cfg.TrustedProxies, NoAccessLog: cfg.NoAccessLog}, m.Accounts, m.ready, m.Metrics, m.Log)
	m.HTTP.Audit = func(ctx context.Context, actorID, actorRole, action, subject, detail string) error {
		return m.Store.AppendAudit(ctx, mongostore.AuditEntry{At: time.Now().UTC(), ActorID: actorID, ActorRole: actorRole,
			Action: action, Subject: subject, Detail: detail})
	}
	m.HTTP.OnCourierCreated = func(c account.Courier) {
		m.learnCourier(c)
		m.announceCourier(context.Background(), c, time.Now().UTC())
	}
	m.HTTP.PushProfile = m.pushProfile
	m.HTTP.Idem = m.Store
	m.HTTP.Bulk = m.Store
	if err := m.republishProfiles(ctx); err != nil {
		return err
	}
	m.HTTP.MountTracking(httpapi.Tracking{Index: m.Index, Density: m.Density, Store: m.Store, SetShift: m.setShiftHTTP,
		Name: m.names.get, Names: m.names.getAll, Phone: m.courierPhone})
	m.HTTP.MountDevices(httpapi.Devices{Ingest: relayIngest{m.Ingest, m}})
	if err := m.mountFeatures(ctx); err != nil {
		return err
	}
	if err := m.mountWeb(); err != nil {
		return err
	}
	m.wireRevocation()

	if cfg.Seed {
		if err := m.seed(ctx); err != nil {
			return fmt.Errorf("seed demo data: %w", err)
		}
	}

	if ln == nil {
		if ln, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
			return fmt.Errorf("http listen %s: %w", cfg.HTTPAddr, err)
		}
	}
	if cfg.HTTPTLSCert != "" {
		httpTLS, _, err := tlsconf.Server(cfg.HTTPTLSCert, cfg.HTTPTLSKey)
		if err != nil {
			_ = ln.Close()
			return fmt.Errorf("TAWSIL_HTTP_TLS_CERT: %w", err)
		}
		ln = tls.NewListener(ln, httpTLS)
	}
	m.httpLn = ln
	m.httpDone = make(chan error, 1)
	go func() { m.httpDone <- m.HTTP.App().Listener(ln) }()
	m.Log.Info("HTTP API listening", "addr", ln.Addr().String())

	jobCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	m.cancel = cancel
	m.jobsDone = make(chan struct{})
	go m.jobs(jobCtx)
	return nil
}

// HTTPAddr is the address the API listens on.
func (m *Main) HTTPAddr() string { return m.httpLn.Addr().String() }

// MQTTAddr is the embedded broker's address ("" with an external broker).
func (m *Main) MQTTAddr() string {
	if m.Broker == nil {
		return ""
	}
	return m.Broker.Addr()
}

func (m *Main) ready(ctx context.Context) error {
	if err := m.Store.Ping(ctx); err != nil {
		return errors.New("store unreachable")
	}
	if !m.Bus.Connected() {
		return errors.New("broker unreachable")
	}
	return m.History.Ready()
}

// restore rebuilds the live index from couriers and courier_state.
func (m *Main) restore(ctx context.Context) error {
	cs, err := m.Accounts.Couriers(ctx)
	if err != nil {
		return fmt.Errorf("restore couriers: %w", err)
	}
	for _, c := range cs {
		if ok, err := m.activeCourier(ctx, c); err != nil {
			return fmt.Errorf("restore couriers: %w", err)
		} else if !ok {
			continue // disabled or erased: not live
		}
		m.learnCourier(c)
	}
	states, err := m.Store.CourierStates(ctx)
	if err != nil {
		return fmt.Errorf("restore courier state: %w", err)
	}
	for _, st := range states {
		lc, ok := m.Index.Get(st.CourierID)
		if !ok || !lc.OnShift {
			continue // off shift: the position is not ours to hold
		}
		f := wire.Fix{Epoch: st.Epoch, Seq: st.Seq, Time: st.T, Lat: st.Lat, Lng: st.Lng, Accuracy: st.AccuracyM, Speed: st.SpeedMPS, Heading: st.Heading, Battery: st.Battery}
		if _, err := m.Index.Update(st.CourierID, f, st.SeenAt); err != nil {
			m.Log.Warn("courier state not restored", "courier_id", st.CourierID, "err", err)
			continue
		}
		m.Index.SetOnline(st.CourierID, st.Online && time.Since(st.SeenAt) < m.Config.StaleAfter, st.SeenAt)
	}
	m.Log.Info("live index restored", "couriers", m.Index.Len(), "positions", len(states))
	return nil
}

func (m *Main) learnCourier(c account.Courier) {
	m.names.set(c.ID, c.Name)
	if c.Phone != "" {
		m.phones.Store(c.ID, c.Phone)
	} else {
		m.phones.Delete(c.ID)
	}
	if err := m.Index.SetProfile(c.ID, c.Vehicle, c.Capacity); err != nil {
		m.Log.Warn("courier profile refused", "courier_id", c.ID, "err", err)
	}
	m.Index.SetShift(c.ID, c.OnShift)
	st := livemap.StatusOffline
	if c.OnShift {
		st = livemap.StatusAvailable
	}
	if lc, ok := m.Index.Get(c.ID); ok && lc.Load > 0 {
		st = livemap.StatusBusy
	}
	_ = m.Index.SetStatus(c.ID, st, 0)
}

// SetShift records a shift change in the store and the live index.
func (m *Main) SetShift(ctx context.Context, courierID string, on bool) error {
	if err := m.Accounts.SetShift(ctx, courierID, on); err != nil {
		return err
	}
	if err := m.shiftLog(ctx, courierID, on); err != nil {
		return err
	}
	at := time.Now().UTC()
	m.setShiftIndex(courierID, on)
	if !on && m.Delivery != nil {
		// What it was offered or assigned and not carrying goes to others.
		if err := m.Delivery.ShiftEnded(ctx, courierID); err != nil {
			m.Log.Warn("shift ended: orders not all handed on", "courier_id", courierID, "err", err)
		}
	}
	if m.clustered() {
		c, err := m.Accounts.Courier(ctx, courierID)
		if err != nil {
			return err
		}
		c.OnShift = on
		m.announceCourier(ctx, c, at)
	}
	return nil
}

// Close shuts down gracefully: stop accepting requests and finish in-flight
// ones, stop the broker, flush history, save the live index, close the store.
func (m *Main) Close(ctx context.Context) error {
	var err error
	m.closeOnce.Do(func() { err = m.close(ctx) })
	return err
}

func (m *Main) close(ctx context.Context) error {
	var errs []error
	if m.Hub != nil {
		m.Hub.Close() // event streams end, so the HTTP shutdown need not wait for them
	}
	if m.HTTP != nil && m.httpLn != nil {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		errs = append(errs, m.HTTP.Shutdown(sctx))
		cancel()
	}
	if m.cancel != nil {
		m.cancel()
		<-m.jobsDone
	}
	if m.Delivery != nil {
		m.Delivery.Close()
	}
	if m.Bus != nil {
		errs = append(errs, m.Bus.Close())
	}
	if m.History != nil {
		fctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		errs = append(errs, m.History.Close(fctx))
		cancel()
	}
	if m.Store != nil {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		errs = append(errs, m.snapshot(sctx, time.Time{}))
		if m.ETA != nil {
			errs = append(errs, m.saveETA(sctx))
		}
		errs = append(errs, m.Store.Close(sctx))
		cancel()
	}
	if m.closeDocs != nil {
		m.closeDocs()
	}
	return errors.Join(errs...)
}

// messageOnly passes on warnings and errors without their attributes.
type messageOnly struct{ h slog.Handler }

func (w messageOnly) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn && w.h.Enabled(ctx, l)
}

func (w messageOnly) Handle(ctx context.Context, r slog.Record) error {
	msg, ok := ferretLine(r.Message)
	if !ok {
		return nil
	}
	return w.h.Handle(ctx, slog.NewRecord(r.Time, r.Level, msg, r.PC))
}

func (w messageOnly) WithAttrs([]slog.Attr) slog.Handler { return w }
func (w messageOnly) WithGroup(string) slog.Handler      { return w }

// EmbeddedBroker is the in-process broker: a Bus that also listens and can
// disconnect revoked devices.
type EmbeddedBroker interface {
	Bus
	Addr() string
	Disconnect(clientIDs []string)
	Sessions() int
}

// pushProfile stores a device profile and publishes it retained on the
// courier's config topic, where the agent applies it live.
func (m *Main) pushProfile(ctx context.Context, courierID string, raw []byte) error {
	if err := m.Store.PutDeviceProfile(ctx, mongostore.DeviceProfile{CourierID: courierID, JSON: raw, At: time.Now().UTC()}); err != nil {
		return err
	}
	return m.Bus.Publish(ctx, topic.Courier(m.Config.TopicPrefix, courierID, topic.Config), raw, 1, true)
}

// republishProfiles restores the retained config messages (the embedded
// broker keeps retained messages in memory only).
func (m *Main) republishProfiles(ctx context.Context) error {
	ps, err := m.Store.DeviceProfiles(ctx)
	if err != nil {
		return fmt.Errorf("device profiles: %w", err)
	}
	for _, p := range ps {
		if err := m.Bus.Publish(ctx, topic.Courier(m.Config.TopicPrefix, p.CourierID, topic.Config), p.JSON, 1, true); err != nil {
			m.Log.Warn("device profile not republished", "courier_id", p.CourierID, "err", err)
		}
	}
	return nil
}

// The ETA model learns from every fix; it is saved to the store every few
// minutes and at shutdown, and restored at start, so speeds learned from
// position history survive restarts.
const etaModelName = "eta"

func (m *Main) loadETA(ctx context.Context) error {
	raw, err := m.Store.Model(ctx, etaModelName)
	if err != nil || raw == nil {
		return err
	}
	var snap eta.Snapshot
	if err := json.Unmarshal(raw, &snap); err != nil {
		m.Log.Warn("stored ETA model unreadable; starting from the prior", "err", err)
		return nil
	}
	if err := m.ETA.Restore(snap); err != nil {
		m.Log.Warn("stored ETA model refused; starting from the prior", "err", err)
		return nil
	}
	m.Log.Info("ETA model restored", "cell_hours", len(snap.Cells))
	return nil
}

func (m *Main) saveETA(ctx context.Context) error {
	raw, err := json.Marshal(m.ETA.Snapshot())
	if err != nil {
		return err
	}
	return m.Store.PutModel(ctx, etaModelName, raw)
}

// courierPhone is a courier's phone for the dispatcher lists (masked there).
func (m *Main) courierPhone(id string) string {
	v, _ := m.phones.Load(id)
	p, _ := v.(string)
	return p
}
