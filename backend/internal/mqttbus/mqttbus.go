// Package mqttbus connects the backend to an external MQTT broker (Mosquitto,
// EMQX, HiveMQ) with paho: a shared subscription for ingest, manual
// acknowledgement after the handler made the message safe, and publishing of
// tasks and configs.
package mqttbus

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"os"
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
	Workers  int // concurrent handlers (default 256); one courier's messages always go to the same one
	Logger   *slog.Logger
}

// Bus is a connected client.
type Bus struct {
	c    paho.Client
	o    Options
	work []chan paho.Message // by hash of the topic: one courier's messages stay in order
	stop chan struct{}
	done chan struct{}
}

// Connect connects (retrying in the background) and subscribes on every
// (re)connect.
func Connect(ctx context.Context, o Options) (*Bus, error) {
	if o.Workers == 0 {
		o.Workers = 256
	}
	b := &Bus{o: o, work: make([]chan paho.Message, o.Workers), stop: make(chan struct{}), done: make(chan struct{})}
	for i := range b.work {
		// Deeper than the broker's in-flight window (deploy/mosquitto: 1000):
		// we ack only after the write, so the broker never has more
		// unacknowledged messages out than this and enqueue never blocks.
		b.work[i] = make(chan paho.Message, workerQueue)
	}
	opts := paho.NewClientOptions().AddBroker(o.URL).SetClientID(o.ClientID).
		SetUsername(o.Username).SetPassword(o.Password).
		SetCleanSession(false). // the broker queues our share while we restart
		SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(2 * time.Second).
		SetMaxReconnectInterval(30 * time.Second).SetKeepAlive(30 * time.Second).
		SetOrderMatters(true).               // keep arrival order; the handler only enqueues (see enqueue)
		SetAutoAckDisabled(true).            // ack only after the message is safe
		SetDefaultPublishHandler(b.enqueue). // persistent sessions may deliver before Subscribe returns
		SetOnConnectHandler(func(c paho.Client) { go b.subscribe(c) }).
		SetConnectionLostHandler(func(_ paho.Client, err error) { o.Logger.Warn("mqtt connection lost", "err", err) })
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("mqtt ca file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("mqtt ca file: no certificate")
		}
		opts.SetTLSConfig(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
	}
	b.c = paho.NewClient(opts)
	for _, ch := range b.work {
		go b.worker(ch)
	}
	tok := b.c.Connect()
	select {
	case <-tok.Done():
		if err := tok.Error(); err != nil {
			return nil, fmt.Errorf("mqtt connect %s: %w", o.URL, err)
		}
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(10 * time.Second):
		o.Logger.Warn("mqtt broker not reachable yet; retrying in the background", "url", o.URL)
	}
	return b, nil
}

func (b *Bus) filters() map[string]byte {
	f := map[string]byte{}
	for _, k := range []topic.Kind{topic.Pos, topic.State, topic.OwnTracks} {
		flt := topic.Filter(b.o.Prefix, k)
		if b.o.Group != "" {
			flt = topic.Shared(b.o.Group, flt)
		}
		f[flt] = 1
	}
	return f
}

func (b *Bus) subscribe(c paho.Client) {
	tok := c.SubscribeMultiple(b.filters(), b.enqueue)
	if tok.WaitTimeout(10*time.Second) && tok.Error() == nil {
		b.o.Logger.Info("mqtt subscribed", "url", b.o.URL, "group", b.o.Group)
		return
	}
	b.o.Logger.Error("mqtt subscribe failed", "err", tok.Error())
}

// workerQueue is the depth of each worker's queue.
const workerQueue = 1024

// enqueue runs on paho's goroutine: it only hands the message over, to the
// worker of its topic, so one courier's batches are handled in order (the
// live position never has to skip a batch that overtook another).
func (b *Bus) enqueue(_ paho.Client, m paho.Message) {
	h := fnv.New32a()
	h.Write([]byte(m.Topic()))
	select {
	case b.work[h.Sum32()%uint32(len(b.work))] <- m:
	case <-b.stop:
	}
}

func (b *Bus) worker(work <-chan paho.Message) {
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
func (b *Bus) handle(m paho.Message) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	staged, ok := b.o.Handler.(mqttack.StagedHandler)
	if !ok {
		defer cancel()
		b.finish(m, b.o.Handler.HandleMQTT(ctx, m.Topic(), m.Payload(), m.Retained()))
		return
	}
	wait, err := staged.Stage(ctx, m.Topic(), m.Payload(), m.Retained())
	if err != nil {
		defer cancel()
		b.finish(m, err)
		return
	}
	go func() {
		defer cancel()
		b.finish(m, wait(ctx))
	}()
}

func (b *Bus) finish(m paho.Message, err error) {
	if err == nil || errors.Is(err, mqttack.ErrDrop) {
		m.Ack()
		return
	}
	// Not acknowledged: the broker redelivers it after our reconnect (persistent session).
	b.o.Logger.Warn("mqtt message not acknowledged", "topic", m.Topic(), "err", err)
}

// Publish sends a message and waits for the broker's acknowledgement (QoS1).
func (b *Bus) Publish(ctx context.Context, t string, payload []byte, qos byte, retained bool) error {
	tok := b.c.Publish(t, qos, retained, payload)
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Connected reports whether the connection is up.
func (b *Bus) Connected() bool { return b.c.IsConnectionOpen() }

// Close disconnects cleanly, giving in-flight work a moment.
func (b *Bus) Close() error {
	b.c.Disconnect(1000)
	close(b.stop)
	return nil
}
