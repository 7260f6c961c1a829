// Package broker runs an embedded MQTT broker (mochi-mqtt) for the default,
// install-nothing setup: per-device credentials, topic ACLs bound to the
// authenticated courier, and in-process ingest through a hook, acknowledged
// only when the handler says the message is safe.
package broker

import (
	"bytes"
	"context"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/tawsil/tawsil/backend/internal/metrics"
	"github.com/tawsil/tawsil/backend/internal/mqttack"
	"github.com/tawsil/tawsil/shared/topic"
)

// DeviceAuth checks a device login and returns its courier id.
type DeviceAuth interface {
	CheckDevice(ctx context.Context, username, password, clientID string) (courierID string, err error)
}

// MaxPacket is the largest MQTT packet accepted.
const MaxPacket = 64 << 10

// Options configure the broker.
type Options struct {
	Listen          string       // address to listen on when Listener is nil
	Listener        net.Listener // an open listener to serve on (tests open it on port 0)
	TLS             *tls.Config
	Prefix          string
	Auth            DeviceAuth
	Handler         mqttack.Handler // nil: PUBACK, ErrDrop: PUBACK without forwarding, else no PUBACK
	ServiceUsername string          // optional full-access login for the operator's tools
	ServicePassword string
	Logger          *slog.Logger
	Metrics         *metrics.Metrics
}

// Broker is a running embedded broker.
type Broker struct {
	srv  *mqtt.Server
	ln   listeners.Listener
	opts Options
}

// Start starts the broker and its listener.
func Start(o Options) (*Broker, error) {
	srv := mqtt.New(&mqtt.Options{
		InlineClient: true,
		Logger:       o.Logger,
		Capabilities: capabilities(),
	})
	h := &hook{opts: o, couriers: map[*mqtt.Client]string{}}
	if err := srv.AddHook(h, nil); err != nil {
		return nil, err
	}
	var ln listeners.Listener = listeners.NewTCP(listeners.Config{ID: "tcp", Address: o.Listen, TLSConfig: o.TLS})
	if o.Listener != nil {
		nl := o.Listener
		if o.TLS != nil {
			nl = tls.NewListener(nl, o.TLS)
		}
		ln = listeners.NewNet("tcp", nl)
	}
	if err := srv.AddListener(ln); err != nil {
		return nil, fmt.Errorf("mqtt listen %s: %w", o.Listen, err)
	}
	if err := srv.Serve(); err != nil {
		return nil, err
	}
	return &Broker{srv: srv, ln: ln, opts: o}, nil
}

func capabilities() *mqtt.Capabilities {
	c := mqtt.NewDefaultServerCapabilities()
	c.MaximumPacketSize = MaxPacket
	// Bounded but large queues: a burst to a slow subscriber must not be
	// dropped silently (see DESIGN.md). Ingest itself is in-process (a hook),
	// so these queues serve only devices and tools.
	c.MaximumClientWritesPending = 64 * 1024
	c.MaximumInflight = 32 * 1024
	c.MaximumSessionExpiryInterval = 24 * 60 * 60
	return c
}

// Addr is the listener's address.
func (b *Broker) Addr() string { return b.ln.Address() }

// Publish sends a message from the backend (tasks, config) through the
// in-process client.
func (b *Broker) Publish(_ context.Context, t string, payload []byte, qos byte, retained bool) error {
	return b.srv.Publish(t, payload, retained, qos)
}

// Connected is always true for the embedded broker once started.
func (b *Broker) Connected() bool { return true }

// Disconnect closes the connections of the given client ids (revoked devices).
func (b *Broker) Disconnect(clientIDs []string) {
	for _, id := range clientIDs {
		if cl, ok := b.srv.Clients.Get(id); ok {
			_ = b.srv.DisconnectClient(cl, packets.ErrNotAuthorized)
		}
	}
}

// Close stops the broker.
func (b *Broker) Close() error { return b.srv.Close() }

type hook struct {
	mqtt.HookBase
	opts Options

	mu       sync.RWMutex
	couriers map[*mqtt.Client]string // connection → courier id ("*" for the service login)
}

func (h *hook) ID() string { return "tawsil" }

func (h *hook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnPublish, mqtt.OnWillSent, mqtt.OnDisconnect}, []byte{b})
}

const service = "*"

func (h *hook) deny(what string) {
	if h.opts.Metrics != nil {
		h.opts.Metrics.MQTTDenied.WithLabelValues(what).Inc()
	}
}

func (h *hook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	user, pass := string(pk.Connect.Username), string(pk.Connect.Password)
	if h.opts.ServiceUsername != "" && subtle.ConstantTimeCompare([]byte(user), []byte(h.opts.ServiceUsername)) == 1 &&
		subtle.ConstantTimeCompare([]byte(pass), []byte(h.opts.ServicePassword)) == 1 {
		h.setCourier(cl, service)
		return true
	}
	if h.opts.Auth == nil || !topic.ValidID(user) {
		h.deny("connect")
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	courier, err := h.opts.Auth.CheckDevice(ctx, user, pass, cl.ID)
	if err != nil {
		h.deny("connect")
		return false
	}
	if pk.Connect.WillFlag && pk.Connect.WillTopic != topic.Courier(h.opts.Prefix, courier, topic.State) {
		h.deny("will")
		return false
	}
	h.setCourier(cl, courier)
	return true
}

func (h *hook) setCourier(cl *mqtt.Client, courier string) {
	h.mu.Lock()
	h.couriers[cl] = courier
	h.mu.Unlock()
}

func (h *hook) courierOf(cl *mqtt.Client) string {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.couriers[cl]
}

func (h *hook) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	h.mu.Lock()
	delete(h.couriers, cl)
	h.mu.Unlock()
}

// OnACLCheck lets a device write only its own pos/state (and OwnTracks) topics
// and read only its own tasks/config topics, without wildcards.
func (h *hook) OnACLCheck(cl *mqtt.Client, t string, write bool) bool {
	courier := h.courierOf(cl)
	if courier == service {
		return true
	}
	if courier == "" {
		h.deny("acl")
		return false
	}
	id, kind, ok := topic.Parse(h.opts.Prefix, t)
	allowed := ok && id == courier
	if write {
		allowed = allowed && (kind == topic.Pos || kind == topic.State || kind == topic.OwnTracks)
	} else {
		allowed = allowed && (kind == topic.Tasks || kind == topic.Config)
	}
	if !allowed {
		if write {
			h.deny("publish")
		} else {
			h.deny("subscribe")
		}
	}
	return allowed
}

// OnPublish hands device messages to ingest before the PUBACK is written.
func (h *hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline || h.opts.Handler == nil || h.courierOf(cl) == service {
		return pk, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := h.opts.Handler.HandleMQTT(ctx, pk.TopicName, pk.Payload, pk.FixedHeader.Retain)
	switch {
	case err == nil:
		return pk, nil
	case errors.Is(err, mqttack.ErrDrop):
		return pk, packets.CodeSuccessIgnore
	default:
		h.opts.Logger.Warn("mqtt message not acknowledged", "topic", pk.TopicName, "err", err)
		return pk, packets.ErrRejectPacket
	}
}

// OnWillSent feeds a device's Last Will (offline) to ingest.
func (h *hook) OnWillSent(cl *mqtt.Client, pk packets.Packet) {
	if h.opts.Handler == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.opts.Handler.HandleMQTT(ctx, pk.TopicName, pk.Payload, pk.FixedHeader.Retain); err != nil && !errors.Is(err, mqttack.ErrDrop) {
		h.opts.Logger.Warn("last will not processed", "topic", pk.TopicName, "err", err)
	}
}
