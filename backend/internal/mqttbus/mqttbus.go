// Package mqttbus connects the backend to an external MQTT broker (Mosquitto,
// EMQX, HiveMQ) with paho: a shared subscription for ingest, manual
// acknowledgement after the handler made the message safe, and publishing of
// tasks and configs.
//
// With a share group (several replicas) a replica holds two connections: its
// own client id with a persistent session and the shared subscriptions, which
// give it its share of positions to store (Handler), and "<client id>-live"
// with a clean session and plain subscriptions, which give it every position
// and state for its own full live index (Live). A shared subscription alone
// would give each replica only its share of couriers to dispatch from. Two
// connections, because one client holding both subscriptions receives each
// message twice with nothing (in MQTT 3.1.1) to tell which subscription it
// came through.
package mqttbus

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/tawsil/tawsil/backend/internal/mqttack"
	"github.com/tawsil/tawsil/shared/topic"
)

// Options configure the connection.
type Options struct {
	URL      string
	Username string
	Password string
	ClientID string // stable per replica: the broker keeps its session
	Group    string // shared-subscription group; empty: plain subscriptions
	Prefix   string
	CAFile   string
	Handler  mqttack.Handler
	// Live, with a Group, receives every position and state message on a
	// second connection with plain subscriptions (see the package comment),
	// plus LiveFilters. Without a Group, Handler receives everything.
	Live        mqttack.Handler
	LiveFilters []string
	Workers     int // concurrent handlers (default 256); one courier's messages always go to the same one
	Logger      *slog.Logger
}

// Bus is a connected client: the main link, and the live link with a Group.
type Bus struct {
	*link
	live *link
}

// link is one MQTT connection with its subscriptions and workers.
type link struct {
	c       paho.Client
	o       Options
	filters map[string]byte
	handler mqttack.Handler
	inline  bool                // the handler is a NotifyingHandler: handled on paho's goroutine (see enqueue)
	work    []chan paho.Message // by hash of the topic: one courier's messages stay in order
	acks    ackQueue
	stop    chan struct{}
	life    context.Context // ends at Close
	end     context.CancelFunc
}

// Connect connects (retrying in the background) and subscribes on every
// (re)connect.
func Connect(ctx context.Context, o Options) (*Bus, error) {
	if o.Workers == 0 {
		o.Workers = 256
	}
	main, err := connect(ctx, o, o.ClientID, false, mainFilters(o), o.Handler)
	if err != nil {
		return nil, err
	}
	b := &Bus{link: main}
	if o.Group != "" && o.Live != nil {
		f := liveFilters(o)
		// A clean session: a live index wants what happens now; what it missed
		// while away is restored from the store (courier_state).
		if b.live, err = connect(ctx, o, o.ClientID+"-live", true, f, o.Live); err != nil {
			_ = main.Close()
			return nil, err
		}
	}
	return b, nil
}

func connect(ctx context.Context, o Options, clientID string, clean bool, filters map[string]byte, h mqttack.Handler) (*link, error) {
	b := &link{o: o, filters: filters, handler: h, stop: make(chan struct{}), acks: ackQueue{wake: make(chan struct{}, 1)}}
	if _, ok := h.(mqttack.NotifyingHandler); ok {
		b.inline = true
	} else {
		b.work = make([]chan paho.Message, o.Workers)
	}
	b.life, b.end = context.WithCancel(context.Background())
	for i := range b.work {
		// Deeper than the broker's in-flight window (deploy/mosquitto: 1000):
		// we ack only after the write, so the broker never has more
		// unacknowledged messages out than this and enqueue never blocks.
		b.work[i] = make(chan paho.Message, workerQueue)
	}
	opts := paho.NewClientOptions().AddBroker(o.URL).SetClientID(clientID).
		SetUsername(o.Username).SetPassword(o.Password).
		SetCleanSession(clean). // persistent: the broker queues our share while we restart
		SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(2 * time.Second).
		SetMaxReconnectInterval(30 * time.Second).SetKeepAlive(30 * time.Second).
		SetOrderMatters(true).               // keep arrival order; the handler only enqueues (see enqueue)
		SetAutoAckDisabled(true).            // ack only after the message is safe
		SetDefaultPublishHandler(b.enqueue). // persistent sessions may deliver before Subscribe returns
		SetStore(&outboundStore{MemoryStore: paho.NewMemoryStore()}).
		SetOnConnectHandler(func(c paho.Client) { go b.subscribe(c) }).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			o.Logger.Warn("mqtt connection lost", "client_id", clientID, "err", err)
		})
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			close(b.stop)
			b.end()
			return nil, fmt.Errorf("mqtt ca file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			close(b.stop)
			b.end()
			return nil, errors.New("mqtt ca file: no certificate")
		}
		opts.SetTLSConfig(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
	}
	if dial := BufferedDial(o.URL); dial != nil {
		opts.SetCustomOpenConnectionFn(dial)
	}
	b.c = paho.NewClient(opts)
	for _, ch := range b.work {
		go b.worker(ch)
	}
	go b.acker()
	tok := b.c.Connect()
	select {
	case <-tok.Done():
		if err := tok.Error(); err != nil {
			_ = b.Close()
			return nil, fmt.Errorf("mqtt connect %s: %w", o.URL, err)
		}
	case <-ctx.Done():
		_ = b.Close()
		return nil, ctx.Err()
	case <-time.After(10 * time.Second):
		o.Logger.Warn("mqtt broker not reachable yet; retrying in the background", "url", o.URL)
	}
	return b, nil
}

// mainFilters: with a Group, the shared subscriptions to what is stored
// (positions); states only change the live index, so they go to the live
// link. Without one, plain subscriptions to everything.
func mainFilters(o Options) map[string]byte {
	f := map[string]byte{}
	if o.Group == "" || o.Live == nil {
		for _, k := range []topic.Kind{topic.Pos, topic.State, topic.OwnTracks} {
			flt := topic.Filter(o.Prefix, k)
			if o.Group != "" {
				flt = topic.Shared(o.Group, flt)
			}
			f[flt] = 1
		}
		compact := topic.CompactFilter(o.Prefix)
		if o.Group != "" {
			compact = topic.Shared(o.Group, compact)
		}
		f[compact] = 1
		for _, flt := range o.LiveFilters {
			f[flt] = 1
		}
		return f
	}
	for _, k := range []topic.Kind{topic.Pos, topic.OwnTracks} {
		f[topic.Shared(o.Group, topic.Filter(o.Prefix, k))] = 1
	}
	f[topic.Shared(o.Group, topic.CompactFilter(o.Prefix))] = 1
	return f
}

func liveFilters(o Options) map[string]byte {
	f := map[string]byte{}
	for _, k := range []topic.Kind{topic.Pos, topic.State, topic.OwnTracks} {
		f[topic.Filter(o.Prefix, k)] = 1
	}
	f[topic.CompactFilter(o.Prefix)] = 1
	for _, flt := range o.LiveFilters {
		f[flt] = 1
	}
	return f
}

func (b *link) subscribe(c paho.Client) {
	// No callback: every message goes to the default handler (enqueue),
	// which spares paho's router matching each topic against each filter.
	tok := c.SubscribeMultiple(b.filters, nil)
	if tok.WaitTimeout(10*time.Second) && tok.Error() == nil {
		b.o.Logger.Info("mqtt subscribed", "url", b.o.URL, "group", b.o.Group, "filters", len(b.filters))
		return
	}
	b.o.Logger.Error("mqtt subscribe failed", "err", tok.Error())
}

// workerQueue is the depth of each worker's queue.
const workerQueue = 1024

// enqueue runs on paho's goroutine: it only hands the message over, to the
// worker of its courier, so one courier's messages are handled in arrival
// order (the live position never has to skip a batch that overtook another,
// and a replica's note putting a courier on shift is applied before the
// positions that follow it).
//
// A NotifyingHandler's Stage is handled here, on paho's goroutine, in
// arrival order: it does not wait for the write (its done does), only,
// while the history queue is full, for room; blocking paho's reading then
// is the backpressure that the workers' full queues gave before. A hop to
// a worker goroutine per message cost more than the handling.
func (b *link) enqueue(_ paho.Client, m paho.Message) {
	if b.inline {
		b.handle(m)
		return
	}
	select {
	case b.work[fnv32a(courierKey(m.Topic()))%uint32(len(b.work))] <- m:
	case <-b.stop:
	}
}

// fnv32a is FNV-1a of s (hash/fnv's, without its allocations).
func fnv32a(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}

// courierKey is the courier segment of a topic (…/couriers/{id}/…,
// owntracks/{id}/…), or the whole topic.
func courierKey(t string) string {
	if rest, ok := strings.CutPrefix(t, topic.OwnTracksRoot+"/"); ok {
		id, _, _ := strings.Cut(rest, "/")
		return id
	}
	if i := strings.Index(t, "/couriers/"); i >= 0 {
		id, _, _ := strings.Cut(t[i+len("/couriers/"):], "/")
		return id
	}
	return t
}

func (b *link) worker(work <-chan paho.Message) {
	for {
		select {
		case m := <-work:
			b.handle(m)
		case <-b.stop:
			return
		}
	}
}

// handle runs on the topic's worker. A staged handler does its ordered part
// here and the wait for durability in its own goroutine, so one courier's
// messages are applied in order while many of them share a group commit.
//
// Stage may block while the history queue is full; it is given until the
// link closes, not a deadline: a message refused for want of room would be
// lost (the broker redelivers an unacknowledged message only after a
// reconnect). While it blocks, this worker's queue fills, paho's enqueue
// blocks and stops reading the connection, and the broker holds the rest:
// that is the backpressure.
func (b *link) handle(m paho.Message) {
	if n, ok := b.handler.(mqttack.NotifyingHandler); ok {
		// Every acknowledgement goes through the acker, off paho's goroutine.
		err := n.StageNotify(b.life, m.Topic(), m.Payload(), m.Retained(), func(err error) { b.acks.push(m, err) })
		if err != nil {
			b.acks.push(m, err)
		}
		return
	}
	staged, ok := b.handler.(mqttack.StagedHandler)
	if !ok {
		ctx, cancel := context.WithTimeout(b.life, 30*time.Second)
		defer cancel()
		b.finish(m, b.handler.HandleMQTT(ctx, m.Topic(), m.Payload(), m.Retained()))
		return
	}
	wait, err := staged.Stage(b.life, m.Topic(), m.Payload(), m.Retained())
	if err != nil {
		b.finish(m, err)
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(b.life, 30*time.Second)
		defer cancel()
		b.finish(m, wait(ctx))
	}()
}

// ackQueue holds the messages whose handling ended (a NotifyingHandler's
// done), for the link's acker to acknowledge: done must not block, and
// paho's Ack may.
type ackQueue struct {
	mu   sync.Mutex
	q    []handled
	wake chan struct{}
}

type handled struct {
	m   paho.Message
	err error
}

func (a *ackQueue) push(m paho.Message, err error) {
	a.mu.Lock()
	a.q = append(a.q, handled{m, err})
	a.mu.Unlock()
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// acker acknowledges what the handler finished, in the order it finished.
// What is left at Close stays unacknowledged: the broker redelivers it.
func (b *link) acker() {
	var batch []handled
	for {
		select {
		case <-b.acks.wake:
		case <-b.stop:
			return
		}
		b.acks.mu.Lock()
		batch, b.acks.q = b.acks.q, batch[:0]
		b.acks.mu.Unlock()
		for i, h := range batch {
			b.finish(h.m, h.err)
			batch[i] = handled{}
		}
	}
}

func (b *link) finish(m paho.Message, err error) {
	if err == nil || errors.Is(err, mqttack.ErrDrop) {
		m.Ack()
		return
	}
	// Not acknowledged: the broker redelivers it after our reconnect (persistent session).
	b.o.Logger.Warn("mqtt message not acknowledged", "topic", m.Topic(), "err", err)
}

// Publish sends a message on the main link and waits for the broker's
// acknowledgement (QoS1).
func (b *link) Publish(ctx context.Context, t string, payload []byte, qos byte, retained bool) error {
	tok := b.c.Publish(t, qos, retained, payload)
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Connected reports whether the connections are up.
func (b *Bus) Connected() bool {
	return b.link.c.IsConnectionOpen() && (b.live == nil || b.live.c.IsConnectionOpen())
}

// Close disconnects cleanly, giving in-flight work a moment.
func (b *Bus) Close() error {
	if b.live != nil {
		_ = b.live.Close()
	}
	return b.link.Close()
}

func (b *link) Close() error {
	b.c.Disconnect(1000)
	close(b.stop)
	b.end()
	return nil
}
