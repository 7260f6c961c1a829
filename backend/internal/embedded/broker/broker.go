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
	"strings"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/tawsil/tawsil/backend/internal/metrics"
	"github.com/tawsil/tawsil/backend/internal/mqttack"
	"github.com/tawsil/tawsil/shared/topic"
)

// DeviceAuth checks a device login; it returns the courier id and the client
// id issued with the credential.
type DeviceAuth interface {
	DeviceLogin(ctx context.Context, username, password string) (courierID, clientID string, err error)
}

// Ignorer counts device messages the broker accepts and sets aside (the
// OwnTracks apps' auxiliary topics, retain flags, foreign Last Wills).
type Ignorer interface {
	Ignore(reason string)
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
	Ignored         Ignorer         // optional
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

// refusalLogEvery is how often one client's refusals of one kind are logged.
const refusalLogEvery = 10 * time.Second

// Start starts the broker and its listener.
func Start(o Options) (*Broker, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	o.Logger = slog.New(newQuietLog(o.Logger.Handler(), newLimiter(refusalLogEvery, time.Now)))
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

// Disconnect closes the connections of the given issued client ids (revoked
// devices), including the sessions the same login opened under a client id
// of its own choosing (see sessionID).
func (b *Broker) Disconnect(clientIDs []string) {
	for _, id := range clientIDs {
		for _, cl := range b.srv.Clients.GetAll() {
			if cl.ID == id || strings.HasPrefix(cl.ID, id+"/") {
				_ = b.srv.DisconnectClient(cl, packets.ErrNotAuthorized)
			}
		}
	}
}

// Sessions is the number of MQTT sessions the broker holds (connected
// clients and kept persistent sessions), its own in-process client excluded.
func (b *Broker) Sessions() int { return max(b.srv.Clients.Len()-1, 0) }

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
	return bytes.Contains([]byte{mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnSubscribe, mqtt.OnPublish, mqtt.OnWillSent, mqtt.OnDisconnect}, []byte{b})
}

func (h *hook) ignore(reason string) {
	if h.opts.Ignored != nil {
		h.opts.Ignored.Ignore(reason)
	}
}

const service = "*"

// deny counts a refusal and logs it: one line with the reason and the
// client id (rate-limited by the broker's log handler), never the packet.
func (h *hook) deny(what string, cl *mqtt.Client) {
	if h.opts.Metrics != nil {
		h.opts.Metrics.MQTTDenied.WithLabelValues(what).Inc()
	}
	h.opts.Logger.Warn("mqtt refused", "reason", what, "client", cl.ID)
}

func (h *hook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	user, pass := string(pk.Connect.Username), string(pk.Connect.Password)
	if h.opts.ServiceUsername != "" && subtle.ConstantTimeCompare([]byte(user), []byte(h.opts.ServiceUsername)) == 1 &&
		subtle.ConstantTimeCompare([]byte(pass), []byte(h.opts.ServicePassword)) == 1 {
		h.setCourier(cl, service)
		return true
	}
	if h.opts.Auth == nil || !topic.ValidID(user) {
		h.deny("connect", cl)
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	courier, issued, err := h.opts.Auth.DeviceLogin(ctx, user, pass)
	if err != nil {
		h.deny("connect", cl)
		return false
	}
	cl.ID = sessionID(issued, cl.ID)
	if pk.Connect.WillFlag {
		h.checkWill(cl, courier)
	}
	h.setCourier(cl, courier)
	return true
}

// sessionID is the broker's key for a device's session. The Tawsil agent
// uses the client id issued with its credential; other apps (OwnTracks uses
// user+device, or what the courier typed) keep theirs, inside the login's
// own namespace "issued/theirs". Either way a login can only ever take over
// its own sessions, never another device's ('/' is never part of an issued id).
func sessionID(issued, clientID string) string {
	if clientID == issued {
		return issued
	}
	return issued + "/" + clientID
}

// checkWill keeps a Last Will the login may publish (its state topic, or its
// OwnTracks location topic where the apps put {"_type":"lwt"}), and drops any
// other with a counted reason instead of refusing the connection.
func (h *hook) checkWill(cl *mqtt.Client, courier string) {
	t := cl.Properties.Will.TopicName
	if t == topic.Courier(h.opts.Prefix, courier, topic.State) {
		return
	}
	if id, kind, ok := topic.Parse(h.opts.Prefix, t); ok && id == courier && kind == topic.OwnTracks {
		// The apps ask for a retained Will; nothing needs it kept.
		cl.Properties.Will.Retain = false
		return
	}
	cl.Properties.Will = mqtt.Will{}
	h.deny("will", cl)
	h.ignore(IgnoreWillForeign)
}

// Reasons counted through Ignorer (besides "owntracks_topic_" + sub-topic).
const (
	IgnoreWillForeign     = "will_foreign_topic"       // a Last Will on a topic the login may not write: dropped at CONNECT
	IgnoreRetainCleared   = "owntracks_retain_cleared" // a live location published retained: used, not retained
	IgnoreSubscribeOthers = "owntracks_subscribe"      // OwnTracks friends' wildcard: granted, only the device's own cmd delivered
)

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

// OnACLCheck lets a device write only its own pos/state and OwnTracks
// topics, and read only its own tasks/config/ack (and OwnTracks cmd) topics. It
// is called with a filter at SUBSCRIBE and with the concrete topic of every
// message delivered, so an OwnTracks app's wildcard subscription
// (owntracks/+/+, which the apps make by default to see "friends") is granted
// but never delivers another courier's message.
func (h *hook) OnACLCheck(cl *mqtt.Client, t string, write bool) bool {
	courier := h.courierOf(cl)
	if courier == service {
		return true
	}
	if courier == "" {
		h.deny("acl", cl)
		return false
	}
	if write {
		if user, _, _, ok := topic.ParseOwnTracksSub(t); ok && user == courier {
			return true // auxiliary OwnTracks topics: acknowledged and ignored in OnPublish
		}
		id, kind, ok := topic.Parse(h.opts.Prefix, t)
		if ok && id == courier && (kind == topic.Pos || kind == topic.State || kind == topic.OwnTracks) {
			return true
		}
		h.deny("publish", cl)
		return false
	}
	if strings.HasPrefix(t, topic.OwnTracksRoot+"/") {
		if strings.ContainsAny(t, "+#") {
			return true // a filter: each delivery is checked on its own topic below
		}
		user, _, sub, ok := topic.ParseOwnTracksSub(t)
		return ok && user == courier && sub == "cmd" // not counted: one check per friend's message
	}
	id, kind, ok := topic.Parse(h.opts.Prefix, t)
	if ok && id == courier && (kind == topic.Tasks || kind == topic.Config || kind == topic.Ack) {
		return true
	}
	h.deny("subscribe", cl)
	return false
}

// OnSubscribe counts the OwnTracks apps' wildcard subscriptions, granted but
// filtered per message by OnACLCheck.
func (h *hook) OnSubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if c := h.courierOf(cl); c == "" || c == service {
		return pk
	}
	for _, f := range pk.Filters {
		if strings.HasPrefix(f.Filter, topic.OwnTracksRoot+"/") && strings.ContainsAny(f.Filter, "+#") {
			h.ignore(IgnoreSubscribeOthers)
		}
	}
	return pk
}

// OnPublish hands device messages to ingest before the PUBACK is written.
func (h *hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline || h.opts.Handler == nil || h.courierOf(cl) == service {
		return pk, nil
	}
	if _, _, sub, ok := topic.ParseOwnTracksSub(pk.TopicName); ok {
		// event, waypoint(s), info, status, step, beacon, dump: nothing
		// Tawsil uses. Acknowledged, neither forwarded nor retained.
		h.ignore("owntracks_topic_" + ownTracksSub(sub))
		return pk, packets.CodeSuccessIgnore
	}
	retained := pk.FixedHeader.Retain
	if _, kind, ok := topic.Parse(h.opts.Prefix, pk.TopicName); ok && kind == topic.OwnTracks && retained {
		// The apps publish locations retained by default (pubRetain). This
		// is a live message, so it is used as such; the broker does not keep
		// a courier's last position for later subscribers.
		pk.FixedHeader.Retain, retained = false, false
		h.ignore(IgnoreRetainCleared)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := h.opts.Handler.HandleMQTT(ctx, pk.TopicName, pk.Payload, retained)
	switch {
	case err == nil:
		return pk, nil
	case errors.Is(err, mqttack.ErrDrop):
		return pk, packets.CodeSuccessIgnore
	default:
		h.opts.Logger.Warn("mqtt message not acknowledged", "client", cl.ID, "error", err)
		return pk, packets.ErrRejectPacket
	}
}

// ownTracksSub bounds the label values of the OwnTracks sub-topics.
func ownTracksSub(sub string) string {
	switch sub {
	case "event", "waypoint", "waypoints", "info", "status", "step", "beacon", "dump", "cmd":
		return sub
	}
	return "other"
}

// OnWillSent feeds a device's Last Will (offline) to ingest.
func (h *hook) OnWillSent(cl *mqtt.Client, pk packets.Packet) {
	if h.opts.Handler == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.opts.Handler.HandleMQTT(ctx, pk.TopicName, pk.Payload, pk.FixedHeader.Retain); err != nil && !errors.Is(err, mqttack.ErrDrop) {
		h.opts.Logger.Warn("last will not processed", "client", cl.ID, "error", err)
	}
}
