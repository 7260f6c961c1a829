// Package link is the agent's MQTT connection: it drains the outbox to the
// courier's pos topic at QoS1, in batches when a backlog builds up, at a
// bounded rate and with a bounded number of unacknowledged messages. With
// storage acknowledgements (Config.StorageAck) a fix leaves the outbox only
// when the backend says it stored it (wire.Ack on the courier's ack topic);
// a fix the broker acknowledged but no storage acknowledgement covered
// within ResendAfter is sent again (a broker can PUBACK and lose: Mosquitto
// forgets shared subscriptions across its restart). Without them, the
// broker's PUBACK removes the fix. It
// keeps the retained state topic (Last Will offline, online on connect) and
// hands the tasks and config messages it receives to the application.
//
// Design notes (see DESIGN.md "Known pitfalls"):
//   - The outbox, not paho's store, is the durable store: sessions are clean
//     (CleanSession=true) and paho's in-memory store only holds what is in
//     flight. A fix is removed after its PUBACK; one whose PUBACK was lost is
//     sent again and the backend drops the duplicate (courier, seq).
//   - Reconnection is the link's own loop (paho auto-reconnect off), with
//     exponential backoff and full jitter between profile reconnect_min_s and
//     reconnect_max_s, so a city's couriers do not all reconnect in the same
//     second after a broker restart. Each connection is a fresh paho client;
//     when it is lost, paho completes its pending tokens with an error and
//     the link starts again from the oldest fix in the outbox.
//   - OrderMatters(false); handlers never publish or block on the network:
//     they hand messages to the link's goroutines.
package link

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/tawsil/tawsil/shared/profile"
	"github.com/tawsil/tawsil/shared/topic"
	"github.com/tawsil/tawsil/shared/wire"
)

// Store is the outbox as the link needs it.
type Store interface {
	// PeekAfter returns up to n fixes with Seq > after, oldest first.
	PeekAfter(after uint64, n int) ([]wire.Fix, error)
	// Remove deletes acknowledged fixes; unknown ones are ignored.
	Remove(seqs []uint64) error
	// Depth is the number of fixes waiting.
	Depth() int
	// Confirm deletes the fixes of a storage acknowledgement.
	Confirm(epoch uint64, ranges []wire.SeqRange) (int, error)
}

// Config is what a link needs to connect as one courier's device.
type Config struct {
	Broker       string // tcp://host:1883, tls://host:8883 (also ssl://, mqtts://)
	ClientID     string
	Username     string
	Password     string
	CAFile       string // PEM roots for TLS; empty: the system roots
	Courier      string
	Prefix       string // topic prefix, topic.DefaultPrefix when empty
	AgentVersion string
	Profile      profile.Profile
	Logger       *slog.Logger
	// StorageAck: keep every fix until the backend's storage
	// acknowledgement, re-sending after ResendAfter (default 20 s) what the
	// broker acknowledged but the backend did not confirm.
	StorageAck  bool
	ResendAfter time.Duration
	// Now is the clock of the publish delay (time.Now when nil).
	Now func() time.Time
	// Compact: positions and storage acknowledgements on the compact topics
	// (topic.CompactCourier), 20 bytes shorter per message.
	Compact bool
}

// Message is a message received on the courier's tasks or config topic.
type Message struct {
	Kind    topic.Kind
	Payload []byte
}

// Stats are the link's counters since it started.
type Stats struct {
	Connected     bool   `json:"connected"`
	Connects      uint64 `json:"connects"`
	Messages      uint64 `json:"messages_published"` // pos messages handed to the client
	FixesSent     uint64 `json:"fixes_published"`    // fixes in them (a fix re-sent counts again)
	FixesAcked    uint64 `json:"fixes_acknowledged"` // fixes whose message got its PUBACK
	PayloadBytes  uint64 `json:"payload_bytes"`      // pos payload bytes
	WireBytes     uint64 `json:"bytes_sent"`         // pos PUBLISH packets, MQTT header included
	PublishErrors uint64 `json:"publish_errors"`
	StorageAcks   uint64 `json:"storage_acks"`        // storage acknowledgements received
	AckBytes      uint64 `json:"storage_ack_bytes"`   // their PUBLISH packets, MQTT header included
	FixesStored   uint64 `json:"fixes_stored"`        // fixes they removed from the outbox
	FixesResent   uint64 `json:"fixes_resent"`        // fixes sent again: broker-acknowledged, never confirmed
	ConnSent      uint64 `json:"conn_bytes_sent"`     // every byte written to the broker connection (all packets; TLS included)
	ConnReceived  uint64 `json:"conn_bytes_received"` // every byte read from it
}

// Link is one device's MQTT connection.
type Link struct {
	cfg   Config
	store Store
	log   *slog.Logger
	inbox chan Message
	kick  chan struct{}

	mu      sync.Mutex
	prof    profile.Profile
	battery int
	lost    uint64
	damaged uint64

	connected  atomic.Bool
	lossDirty  atomic.Bool
	flushing   atomic.Bool // publish what waits at once (shutdown, end of a finite source)
	taskActive atomic.Bool // the courier has an accepted assignment
	stats      struct {
		connects, messages, fixesSent, fixesAcked, payloadBytes, wireBytes, publishErrors atomic.Uint64
		storageAcks, ackBytes, fixesStored, fixesResent                                   atomic.Uint64
		connIn, connOut                                                                   atomic.Uint64
	}

	// Broker-acknowledged fixes waiting for the backend's confirmation:
	// seq → when the PUBACK came (storage acknowledgement mode only).
	pendMu  sync.Mutex
	pending map[uint64]time.Time
}

// ErrConfig reports an unusable Config.
var ErrConfig = errors.New("invalid link config")

// New checks cfg and returns a link; nothing connects before Run.
func New(cfg Config, store Store) (*Link, error) {
	if cfg.Prefix == "" {
		cfg.Prefix = topic.DefaultPrefix
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if !topic.ValidID(cfg.Courier) {
		return nil, fmt.Errorf("%w: courier id %q", ErrConfig, cfg.Courier)
	}
	if cfg.ClientID == "" {
		return nil, fmt.Errorf("%w: empty client id", ErrConfig)
	}
	u, err := url.Parse(cfg.Broker)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("%w: broker URL %q", ErrConfig, cfg.Broker)
	}
	switch u.Scheme {
	case "tcp", "mqtt", "tls", "ssl", "mqtts":
	default:
		return nil, fmt.Errorf("%w: broker scheme %q (want tcp, mqtt, tls, ssl or mqtts)", ErrConfig, u.Scheme)
	}
	if err := cfg.Profile.Validate(); err != nil {
		return nil, err
	}
	if cfg.ResendAfter <= 0 {
		cfg.ResendAfter = DefaultResendAfter
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Link{cfg: cfg, store: store, log: cfg.Logger.With("courier_id", cfg.Courier),
		inbox: make(chan Message, 64), kick: make(chan struct{}, 1), prof: cfg.Profile, battery: wire.Unknown,
		pending: map[uint64]time.Time{}}, nil
}

// DefaultResendAfter is how long a broker-acknowledged fix waits for its
// storage acknowledgement before it is sent again: well above the backend's
// default acknowledgement interval (30 s), so an ack that is merely not due
// yet never causes a re-send.
const DefaultResendAfter = 75 * time.Second

// Flush makes the link publish the fixes it holds (the publish delay) at
// once, and every later one too: for shutdown and the end of a finite source.
func (l *Link) Flush() {
	l.flushing.Store(true)
	l.Kick()
}

// SetTaskActive tells the link whether the courier has an accepted
// assignment, which selects the profile's task_publish_delay_s.
func (l *Link) SetTaskActive(active bool) {
	if l.taskActive.Swap(active) != active {
		l.Kick()
	}
}

// Inbox delivers tasks and config messages. The application must keep
// reading it while Run runs.
func (l *Link) Inbox() <-chan Message { return l.inbox }

// Kick tells the link that the outbox has a new fix.
func (l *Link) Kick() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// SetProfile applies a new profile; connection settings (keep-alive) apply
// from the next connection.
func (l *Link) SetProfile(p profile.Profile) {
	l.mu.Lock()
	l.prof = p
	l.mu.Unlock()
}

// SetBattery records the battery level reported in the state message.
func (l *Link) SetBattery(pct int) {
	l.mu.Lock()
	l.battery = pct
	l.mu.Unlock()
}

func (l *Link) profile() profile.Profile {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.prof
}

// Connected reports whether the link is connected now.
func (l *Link) Connected() bool { return l.connected.Load() }

// Stats returns the counters.
func (l *Link) Stats() Stats {
	return Stats{Connected: l.connected.Load(), Connects: l.stats.connects.Load(), Messages: l.stats.messages.Load(),
		FixesSent: l.stats.fixesSent.Load(), FixesAcked: l.stats.fixesAcked.Load(), PayloadBytes: l.stats.payloadBytes.Load(),
		WireBytes: l.stats.wireBytes.Load(), PublishErrors: l.stats.publishErrors.Load(),
		StorageAcks: l.stats.storageAcks.Load(), AckBytes: l.stats.ackBytes.Load(), FixesStored: l.stats.fixesStored.Load(),
		FixesResent: l.stats.fixesResent.Load(), ConnSent: l.stats.connOut.Load(), ConnReceived: l.stats.connIn.Load()}
}

// SetLoss records what the outbox lost, for the state message.
// A change is published on the state topic within about ten seconds.
func (l *Link) SetLoss(lost uint64, damaged int) {
	l.mu.Lock()
	if l.lost != lost || l.damaged != uint64(damaged) {
		l.lost, l.damaged = lost, uint64(damaged)
		l.lossDirty.Store(true)
	}
	l.mu.Unlock()
}

// Run connects and drains until ctx is done, then publishes the offline
// state and disconnects (within about a second).
func (l *Link) Run(ctx context.Context) error {
	tlsConf, err := l.tlsConfig()
	if err != nil {
		return err
	}
	attempt := 0
	for {
		if ctx.Err() != nil {
			return nil
		}
		err := l.session(ctx, tlsConf)
		if ctx.Err() != nil {
			return nil
		}
		if err == nil { // was connected: start the backoff again
			attempt = 0
		}
		wait := Backoff(l.profile().MQTT, attempt, rand.Float64)
		attempt++
		l.log.Warn("mqtt connection", "err", err, "retry_in", wait.Round(time.Millisecond))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// Backoff is the wait before reconnection attempt n (0-based): exponential
// from reconnect_min_s, capped at reconnect_max_s, with full jitter in
// [cap/2, cap) so that it never hammers and never synchronises a fleet.
func Backoff(m profile.MQTT, attempt int, rnd func() float64) time.Duration {
	ceil := m.ReconnectMinS * float64(uint64(1)<<min(attempt, 30))
	ceil = min(ceil, m.ReconnectMaxS)
	return time.Duration((ceil/2 + rnd()*ceil/2) * float64(time.Second))
}

func (l *Link) tlsConfig() (*tls.Config, error) {
	u, err := url.Parse(l.cfg.Broker)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if u.Scheme != "tls" && u.Scheme != "ssl" && u.Scheme != "mqtts" {
		return nil, nil
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: u.Hostname()}
	if l.cfg.CAFile != "" {
		pem, err := os.ReadFile(l.cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%w: ca file: %w", ErrConfig, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: ca file %s has no PEM certificate", ErrConfig, l.cfg.CAFile)
		}
		conf.RootCAs = pool
	}
	return conf, nil
}

func (l *Link) topicOf(k topic.Kind) string {
	if l.cfg.Compact {
		return topic.CompactCourier(l.cfg.Prefix, l.cfg.Courier, k) // the long form for kinds without a compact one
	}
	return topic.Courier(l.cfg.Prefix, l.cfg.Courier, k)
}

// state builds the retained state message.
func (l *Link) state(online bool) []byte {
	l.mu.Lock()
	s := wire.State{V: wire.MessageVersion, Online: online, AgentVersion: l.cfg.AgentVersion, Profile: l.prof.Name, T: time.Now().UnixMilli(),
		Lost: l.lost, Damaged: l.damaged}
	if l.battery != wire.Unknown {
		b := l.battery
		s.Battery = &b
	}
	l.mu.Unlock()
	p, _ := json.Marshal(s) // a struct of plain fields cannot fail to marshal
	return p
}

// session runs one connection. It returns nil if the connection was up
// (and then lost), or the connect error.
func (l *Link) session(ctx context.Context, tlsConf *tls.Config) error {
	prof := l.profile()
	lost := make(chan error, 1)
	will, _ := json.Marshal(wire.State{V: wire.MessageVersion, Online: false})
	opts := mqtt.NewClientOptions().
		AddBroker(l.cfg.Broker).
		SetClientID(l.cfg.ClientID).
		SetUsername(l.cfg.Username).
		SetPassword(l.cfg.Password).
		SetCleanSession(true).
		SetOrderMatters(false).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetKeepAlive(time.Duration(prof.MQTT.KeepAliveS)*time.Second).
		SetPingTimeout(10*time.Second).
		SetConnectTimeout(15*time.Second).
		SetWriteTimeout(15*time.Second).
		SetMaxResumePubInFlight(prof.MQTT.MaxInFlight).
		SetBinaryWill(l.topicOf(topic.State), will, 1, true).
		SetDefaultPublishHandler(l.onMessage).
		SetCustomOpenConnectionFn(l.dialer(tlsConf)).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			select {
			case lost <- err:
			default:
			}
		})
	if tlsConf != nil {
		opts.SetTLSConfig(tlsConf)
	}
	subs := map[string]byte{l.topicOf(topic.Tasks): 1, l.topicOf(topic.Config): 1}
	if l.cfg.StorageAck {
		subs[l.topicOf(topic.Ack)] = 0 // a lost one costs a re-send, nothing more
	}
	subTokens := make(chan mqtt.Token, 1)
	opts.SetOnConnectHandler(func(c mqtt.Client) {
		// Subscribing here is what paho recommends (#637); the token is
		// checked by the session goroutine, not waited on in the handler.
		subTokens <- c.SubscribeMultiple(subs, nil)
	})
	client := mqtt.NewClient(opts)
	tok := client.Connect()
	select {
	case <-tok.Done():
	case <-ctx.Done():
		client.Disconnect(0)
		return ctx.Err()
	}
	if err := tok.Error(); err != nil {
		return fmt.Errorf("connect %s: %w", l.cfg.Broker, err)
	}
	l.stats.connects.Add(1)
	l.connected.Store(true)
	defer l.connected.Store(false)
	l.log.Info("mqtt connected", "broker", l.cfg.Broker, "client_id", l.cfg.ClientID)

	sess, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case st := <-subTokens:
			if waitToken(sess, st) == nil && st.Error() != nil {
				l.log.Error("subscribe", "err", st.Error())
			}
		case <-sess.Done():
		}
	}()
	// Online, retained. Not waited for: the drain below must not stall on it.
	client.Publish(l.topicOf(topic.State), 1, true, l.state(true))

	drainErr := make(chan error, 1)
	go func() { drainErr <- l.drain(sess, client) }()
	var err error
	select {
	case err = <-lost:
		l.log.Warn("mqtt connection lost", "err", err)
		cancel()
		<-drainErr
		return nil
	case err = <-drainErr:
		// A publish failed while connected: start over on a new connection.
		cancel()
		client.Disconnect(250)
		return err
	case <-ctx.Done():
		<-drainErr
		// Say goodbye cleanly: retained offline state, then DISCONNECT
		// (which also discards the Last Will).
		off := client.Publish(l.topicOf(topic.State), 1, true, l.state(false))
		off.WaitTimeout(time.Second)
		client.Disconnect(250)
		l.log.Info("mqtt disconnected")
		return nil
	}
}

func (l *Link) onMessage(_ mqtt.Client, m mqtt.Message) {
	_, kind, ok := topic.Parse(l.cfg.Prefix, m.Topic())
	if ok && kind == topic.Ack && l.cfg.StorageAck {
		l.onAck(m.Topic(), m.Payload())
		return
	}
	if !ok || (kind != topic.Tasks && kind != topic.Config) {
		l.log.Warn("message on an unexpected topic", "topic", m.Topic())
		return
	}
	// OrderMatters(false): each handler call has its own goroutine, so a
	// full inbox slows only this message, never paho's network loop.
	l.inbox <- Message{Kind: kind, Payload: append([]byte(nil), m.Payload()...)}
}

// onAck applies a storage acknowledgement.
func (l *Link) onAck(t string, p []byte) {
	l.stats.storageAcks.Add(1)
	l.stats.ackBytes.Add(uint64(PublishPacketSize(t, len(p), 0)))
	a, err := wire.DecodeAck(p)
	if err != nil {
		l.log.Warn("bad storage acknowledgement", "err", err)
		return
	}
	n, err := l.store.Confirm(a.Epoch, a.Ranges)
	if err != nil {
		l.log.Error("outbox: storage acknowledgement not applied", "err", err)
		return
	}
	l.stats.fixesStored.Add(uint64(n))
	l.pendMu.Lock()
	for s := range l.pending {
		if a.Contains(a.Epoch, s) {
			delete(l.pending, s)
		}
	}
	l.pendMu.Unlock()
}

// overdue returns, sorted, the fixes the broker acknowledged more than
// ResendAfter ago and the backend never confirmed, and forgets them until
// their next PUBACK.
func (l *Link) overdue(now time.Time, limit int) []uint64 {
	l.pendMu.Lock()
	defer l.pendMu.Unlock()
	var out []uint64
	for s, t := range l.pending {
		if now.Sub(t) >= l.cfg.ResendAfter {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	if len(out) > limit {
		out = out[:limit]
	}
	for _, s := range out {
		delete(l.pending, s)
	}
	return out
}

// next returns the next batch to publish: overdue re-sends first, then the
// fixes after the session's cursor.
func (l *Link) next(after uint64, redo *[]uint64, n int) (fixes []wire.Fix, resend bool, err error) {
	for len(*redo) > 0 {
		r := *redo
		fs, err := l.store.PeekAfter(r[0]-1, n)
		if err != nil {
			return nil, false, err
		}
		// Keep those of fs still in the redo list (the others were confirmed
		// meanwhile, or are not overdue), in order; stop at the first gap so
		// the batch stays a run of the outbox.
		i := 0
		for _, f := range fs {
			for i < len(r) && r[i] < f.Seq {
				i++
			}
			if i < len(r) && r[i] == f.Seq && f.Seq <= after {
				fixes = append(fixes, f)
				i++
				continue
			}
			break
		}
		if len(fixes) == 0 {
			*redo = r[1:] // r[0] is no longer in the outbox
			continue
		}
		*redo = r[i:]
		return fixes, true, nil
	}
	fixes, err = l.store.PeekAfter(after, n)
	return fixes, false, err
}

// drain publishes the outbox until sess is done or a publish fails.
func (l *Link) drain(sess context.Context, client mqtt.Client) error {
	prof := l.profile()
	sem := make(chan struct{}, prof.MQTT.MaxInFlight)
	failed := make(chan error, 1)
	var after uint64 // highest seq handed to the client in this session
	var next time.Time
	posTopic := l.topicOf(topic.Pos)
	poll := time.NewTicker(time.Second)
	defer poll.Stop()
	var buf []byte
	var redo []uint64 // overdue fixes to send again, sorted
	var stateAt time.Time
	var hold holder
	for {
		prof = l.profile()
		if l.lossDirty.Load() && time.Since(stateAt) >= 10*time.Second {
			l.lossDirty.Store(false)
			stateAt = time.Now()
			client.Publish(l.topicOf(topic.State), 1, true, l.state(true)) // not waited for, as at connect
		}
		if l.cfg.StorageAck && len(redo) == 0 {
			redo = l.overdue(time.Now(), 100_000)
		}
		fixes, resend, err := l.next(after, &redo, prof.MQTT.BatchMax)
		if err != nil {
			return fmt.Errorf("outbox: %w", err)
		}
		if len(fixes) == 0 {
			select {
			case <-sess.Done():
				return nil
			case err := <-failed:
				return err
			case <-l.kick:
			case <-poll.C:
			}
			continue
		}
		if !resend {
			delay := prof.MQTT.PublishDelay(l.taskActive.Load())
			if wait := hold.wait(l.cfg.Now(), fixes, prof.MQTT.BatchMax, delay, l.flushing.Load()); wait > 0 {
				t := time.NewTimer(wait)
				select {
				case <-sess.Done():
					t.Stop()
					return nil
				case err := <-failed:
					t.Stop()
					return err
				case <-l.kick: // one more fix, a flush or a task change: decide again
				case <-t.C:
				}
				t.Stop()
				continue
			}
		}
		if resend {
			l.stats.fixesResent.Add(uint64(len(fixes)))
		}
		// At most max_in_flight unacknowledged messages.
		select {
		case sem <- struct{}{}:
		case <-sess.Done():
			return nil
		case err := <-failed:
			return err
		}
		// At most drain_msgs_per_s messages per second.
		now := time.Now()
		if wait := next.Sub(now); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-sess.Done():
				t.Stop()
				return nil
			}
			now = next
		}
		next = now.Add(time.Duration(float64(time.Second) / prof.MQTT.DrainMsgsPerS))

		buf, err = wire.EncodeBatch(buf[:0], fixes)
		if err != nil {
			// Cannot happen for fixes that passed the filter; never resend them.
			l.log.Error("encode batch: dropping it", "err", err, "first_seq", fixes[0].Seq)
			<-sem
			if rerr := l.store.Remove(seqsOf(fixes)); rerr != nil {
				return rerr
			}
			continue
		}
		payload := append([]byte(nil), buf...)
		tok := client.Publish(posTopic, 1, false, payload)
		after = max(after, fixes[len(fixes)-1].Seq)
		l.stats.messages.Add(1)
		l.stats.fixesSent.Add(uint64(len(fixes)))
		l.stats.payloadBytes.Add(uint64(len(payload)))
		l.stats.wireBytes.Add(uint64(PublishPacketSize(posTopic, len(payload), 1)))
		seqs := seqsOf(fixes)
		go func() {
			defer func() { <-sem }()
			if waitToken(sess, tok) != nil {
				return // connection lost: the next session sends them again
			}
			if err := tok.Error(); err != nil {
				l.stats.publishErrors.Add(1)
				select {
				case failed <- fmt.Errorf("publish: %w", err):
				default:
				}
				return
			}
			l.stats.fixesAcked.Add(uint64(len(seqs)))
			if l.cfg.StorageAck {
				// Kept until the backend confirms; sent again if it never does.
				now := time.Now()
				l.pendMu.Lock()
				for _, s := range seqs {
					l.pending[s] = now
				}
				l.pendMu.Unlock()
				return
			}
			if err := l.store.Remove(seqs); err != nil {
				select {
				case failed <- err:
				default:
				}
			}
		}()
	}
}

// waitToken waits for a paho token (its PUBACK for a QoS1 publish) or ctx.
func waitToken(ctx context.Context, t mqtt.Token) error {
	select {
	case <-t.Done():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func seqsOf(fixes []wire.Fix) []uint64 {
	s := make([]uint64, len(fixes))
	for i, f := range fixes {
		s[i] = f.Seq
	}
	return s
}

// PublishPacketSize is the size on the wire of an MQTT 3.1.1 PUBLISH packet
// (fixed header, topic, packet id for QoS > 0, payload), TCP/TLS excluded.
func PublishPacketSize(topicName string, payload int, qos byte) int {
	rem := 2 + len(topicName) + payload
	if qos > 0 {
		rem += 2
	}
	return 1 + len(binary.AppendUvarint(nil, uint64(rem))) + rem
}
