package main

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/tawsil/tawsil/backend/internal/mqttbus"

	"github.com/tawsil/tawsil/shared/topic"
	"github.com/tawsil/tawsil/shared/wire"
)

// counter is a bare QoS1 subscriber: it counts position messages and the
// fixes they announce, nothing else, so the broker alone sets its pace.
type counter struct {
	mu       sync.Mutex
	messages int
	fixes    int
	bad      int
	last     time.Time
	reached  chan struct{}
	want     int
	delays   []time.Duration // publish→delivered of one message in sampleEvery
}

// sampleEvery: one message in this many is decoded for its publish time
// (its last fix's device time, set at publish), so the broker's own
// queueing under the load is known beside its throughput.
const sampleEvery = 50

// fixCount reads the fix count of a position payload without decoding it.
func fixCount(p []byte) (int, bool) { return wire.BatchCount(p) }

func (c *counter) handle(_ paho.Client, m paho.Message) {
	n, ok := fixCount(m.Payload())
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if !ok {
		c.bad++
		return
	}
	c.messages++
	c.fixes += n
	c.last = now
	if c.messages%sampleEvery == 0 {
		if fixes, err := wire.DecodeBatch(m.Payload()); err == nil {
			c.delays = append(c.delays, now.Sub(fixes[len(fixes)-1].Time))
		}
	}
	if c.want > 0 && c.fixes >= c.want && c.reached != nil {
		close(c.reached)
		c.reached = nil
	}
}

// expect arms the counter: the returned channel closes once want fixes
// arrived in total.
func (c *counter) expect(want int) <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan struct{})
	c.want = want
	if c.fixes >= want {
		close(ch)
		return ch
	}
	c.reached = ch
	return ch
}

func (c *counter) snapshot() (messages, fixes, bad int, last time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.messages, c.fixes, c.bad, c.last
}

// ceilingResult is the broker-only figure.
type ceilingResult struct {
	Fleet      fleetResult
	Received   int // fixes
	Messages   int
	Bad        int
	LastRecv   time.Time
	Complete   bool
	FixesPerS  float64
	MessagesPS float64
	Delays     []time.Duration // publish→delivered, sampled
	CPU        cpuUse          // first publish to last delivery (about)
}

// runCeiling publishes the same traffic as an ingest run under a prefix the
// backend does not subscribe to, and counts it with one bare subscriber
// connection (as the backend has one).
func runCeiling(ctx context.Context, creds []Credential, o loadOptions, sub Credential, drain time.Duration, cpu cpuMeter, log *slog.Logger) (ceilingResult, error) {
	var c counter
	// The subscriber costs as little as the backend's client: counting on
	// paho's goroutine (no goroutine per message), reads buffered and
	// PUBACKs coalesced (mqttbus.BufferedDial), so the broker, not the
	// subscriber's client, sets the pace.
	opts := paho.NewClientOptions().AddBroker(o.Broker).SetClientID(sub.ClientID).SetUsername(sub.Username).SetPassword(sub.Password).
		SetCleanSession(true).SetOrderMatters(true).SetKeepAlive(30 * time.Second).SetDefaultPublishHandler(c.handle)
	if dial := mqttbus.BufferedDial(o.Broker); dial != nil {
		opts.SetCustomOpenConnectionFn(dial)
	}
	cl := paho.NewClient(opts)
	if tok := cl.Connect(); tok.Wait() && tok.Error() != nil {
		return ceilingResult{}, fmt.Errorf("ceiling subscriber connect: %w", tok.Error())
	}
	defer cl.Disconnect(250)
	if tok := cl.Subscribe(topic.Filter(o.Prefix, topic.Pos), 1, nil); tok.Wait() && tok.Error() != nil { // the default handler: no router match
		return ceilingResult{}, fmt.Errorf("ceiling subscribe: %w", tok.Error())
	}
	cpu0 := cpu.sample()
	fleet, err := runFleet(ctx, creds, o, log)
	if err != nil {
		return ceilingResult{}, err
	}
	res := ceilingResult{Fleet: fleet}
	select {
	case <-c.expect(fleet.Fixes):
		res.Complete = true
	case <-time.After(drain):
	case <-ctx.Done():
		return res, ctx.Err()
	}
	res.CPU = cpu0.until(cpu.sample())
	res.Messages, res.Received, res.Bad, res.LastRecv = c.snapshot()
	c.mu.Lock()
	res.Delays = slices.Clone(c.delays)
	c.mu.Unlock()
	if d := res.LastRecv.Sub(fleet.Start).Seconds(); d > 0 {
		res.FixesPerS = float64(res.Received) / d
		res.MessagesPS = float64(res.Messages) / d
	}
	return res, nil
}
