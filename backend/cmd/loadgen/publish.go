package main

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/tawsil/tawsil/shared/topic"
	"github.com/tawsil/tawsil/shared/wire"
)

// loadOptions shape the simulated fleet's traffic.
type loadOptions struct {
	Broker   string
	Prefix   string        // topic prefix the fleet publishes under
	Rate     float64       // messages per second per publisher; 0: as fast as the window allows
	Batch    int           // fixes per message
	Messages int           // messages per publisher (the count bound)
	Duration time.Duration // the time bound
	Window   int           // QoS1 publishes in flight per connection
	SeqBase  uint64        // sequence number before each courier's first fix
}

func (o loadOptions) validate() error {
	switch {
	case o.Batch < 1 || o.Batch > wire.MaxBatch:
		return fmt.Errorf("batch must be 1..%d", wire.MaxBatch)
	case o.Messages < 1:
		return errors.New("messages must be at least 1")
	case o.Duration <= 0:
		return errors.New("duration must be positive")
	case o.Window < 1 || o.Window > 1000:
		return errors.New("window must be 1..1000")
	case o.Rate < 0:
		return errors.New("rate must not be negative")
	}
	return nil
}

// sent is what one publisher had acknowledged by the broker (PUBACK).
type sent struct {
	CourierID string
	Acked     int    // fixes in acknowledged messages
	Messages  int    // acknowledged messages
	Failed    int    // fixes in messages that were not acknowledged
	FirstSeq  uint64 // first sequence number sent
	MaxSeq    uint64 // highest acknowledged sequence number
	Bytes     int    // payload bytes of acknowledged messages
	Err       error  // why the publisher stopped early
	// Ranges are the [first, last] sequence numbers of acknowledged messages.
	Ranges [][2]uint64
}

// fleetResult sums a run of the fleet.
type fleetResult struct {
	PerCourier []sent
	Start      time.Time // first publish
	End        time.Time // last PUBACK
	Fixes      int
	Messages   int
	Failed     int
	Bytes      int
}

func (r fleetResult) rate() float64 {
	d := r.End.Sub(r.Start).Seconds()
	if d <= 0 {
		return 0
	}
	return float64(r.Fixes) / d
}

// runFleet connects one MQTT client per credential and publishes until the
// count or the time bound; it returns once every publisher has stopped and
// every publish was acknowledged or failed.
func runFleet(ctx context.Context, creds []Credential, o loadOptions, log *slog.Logger) (fleetResult, error) {
	if err := o.validate(); err != nil {
		return fleetResult{}, err
	}
	clients := make([]paho.Client, len(creds))
	defer func() {
		for _, c := range clients {
			if c != nil {
				c.Disconnect(250)
			}
		}
	}()
	// Connect everyone first so the run measures publishing, not connecting.
	for i, cr := range creds {
		c, err := connect(ctx, o.Broker, cr.ClientID, cr.Username, cr.Password, log)
		if err != nil {
			return fleetResult{}, fmt.Errorf("publisher %s: %w", cr.CourierID, err)
		}
		clients[i] = c
	}
	res := fleetResult{PerCourier: make([]sent, len(creds))}
	var clock fleetClock
	var wg sync.WaitGroup
	deadline := time.Now().Add(o.Duration)
	rctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	for i, cr := range creds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res.PerCourier[i] = publish(rctx, clients[i], cr.CourierID, o, &clock)
		}()
	}
	wg.Wait()
	res.Start = time.Unix(0, clock.first.Load())
	var errs []error
	for _, s := range res.PerCourier {
		if s.Err != nil {
			errs = append(errs, fmt.Errorf("publisher %s: %w", s.CourierID, s.Err))
		}
		res.Fixes += s.Acked
		res.Messages += s.Messages
		res.Failed += s.Failed
		res.Bytes += s.Bytes
	}
	res.End = time.Unix(0, clock.last.Load())
	return res, errors.Join(errs...)
}

// fleetClock records a fleet run's first publish and last PUBACK.
type fleetClock struct{ first, last atomic.Int64 }

func (c *fleetClock) started(t time.Time) { c.first.CompareAndSwap(0, t.UnixNano()) }

func (c *fleetClock) acked(t time.Time) {
	n := t.UnixNano()
	for {
		old := c.last.Load()
		if n <= old || c.last.CompareAndSwap(old, n) {
			return
		}
	}
}

func connect(ctx context.Context, broker, clientID, user, password string, log *slog.Logger) (paho.Client, error) {
	opts := paho.NewClientOptions().AddBroker(broker).SetClientID(clientID).SetUsername(user).SetPassword(password).
		SetCleanSession(true).SetAutoReconnect(false).SetConnectRetry(false).SetOrderMatters(false).
		SetKeepAlive(30 * time.Second).SetConnectTimeout(10 * time.Second).SetWriteTimeout(10 * time.Second).
		SetConnectionLostHandler(func(_ paho.Client, err error) { log.Warn("mqtt connection lost", "client_id", clientID, "err", err) })
	c := paho.NewClient(opts)
	tok := c.Connect()
	select {
	case <-tok.Done():
		if err := tok.Error(); err != nil {
			return nil, fmt.Errorf("connect %s: %w", broker, err)
		}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return c, nil
}

type inflight struct {
	tok   paho.Token
	fixes int
	bytes int
	first uint64
	last  uint64
}

// publish runs one simulated device: batches of moving fixes, QoS1, at
// most o.Window unacknowledged, paced to o.Rate, until ctx ends or
// o.Messages are sent.
func publish(ctx context.Context, c paho.Client, courierID string, o loadOptions, clock *fleetClock) sent {
	h := fnv.New64a()
	h.Write([]byte(courierID))
	r := newRider(h.Sum64(), casablanca, o.SeqBase)
	t := topic.Courier(o.Prefix, courierID, topic.Pos)
	s := sent{CourierID: courierID, FirstSeq: o.SeqBase + 1}
	pending := make(chan inflight, o.Window)
	done := make(chan struct{})
	go func() { // PUBACKs arrive in order per connection; wait for them in order
		defer close(done)
		for p := range pending {
			p.tok.Wait()
			if p.tok.Error() != nil {
				s.Failed += p.fixes
				continue
			}
			clock.acked(time.Now())
			s.Acked += p.fixes
			s.Messages++
			s.Bytes += p.bytes
			s.MaxSeq = max(s.MaxSeq, p.last)
			s.Ranges = append(s.Ranges, [2]uint64{p.first, p.last})
		}
	}()
	var interval time.Duration
	if o.Rate > 0 {
		interval = time.Duration(float64(time.Second) / o.Rate)
	}
	start := time.Now()
	for i := 0; i < o.Messages; i++ {
		if interval > 0 {
			wait := time.Until(start.Add(time.Duration(i) * interval))
			if wait > 0 {
				select {
				case <-time.After(wait):
				case <-ctx.Done():
				}
			}
		}
		if ctx.Err() != nil {
			break
		}
		fixes := r.batch(time.Now(), o.Batch)
		payload, err := wire.EncodeBatch(nil, fixes)
		if err != nil { // the generator makes only valid fixes: a bug, not load
			s.Err = fmt.Errorf("encode: %w", err)
			break
		}
		clock.started(time.Now())
		tok := c.Publish(t, 1, false, payload)
		pending <- inflight{tok: tok, fixes: len(fixes), bytes: len(payload), first: fixes[0].Seq, last: fixes[len(fixes)-1].Seq}
	}
	close(pending)
	<-done
	return s
}
