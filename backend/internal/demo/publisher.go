// Package demo makes `make run` alive: simulated couriers that behave like
// couriers (accept most offers, decline some, drive their planned route at
// street speed, pick up, deliver with the code the demo merchant hands them,
// sometimes fail with a realistic reason) and a demo merchant that books
// orders through the day. It talks to the backend only as its clients do:
// MQTT with device credentials for positions, HTTP with logins for actions.
// The browser tests use its Publisher to place couriers.
package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/tawsil/tawsil/backend/internal/geo"
	"log/slog"
	"math"
	"os"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/tawsil/tawsil/shared/topic"
	"github.com/tawsil/tawsil/shared/wire"
)

// Credential is one device's MQTT login (the seed's fleet-credentials.json).
type Credential struct {
	CourierID string `json:"courier_id"`
	Username  string `json:"mqtt_username"`
	Password  string `json:"mqtt_password"`
	ClientID  string `json:"client_id"`
}

// ReadCredentials reads the seed's fleet-credentials.json.
func ReadCredentials(path string) ([]Credential, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var cs []Credential
	if err := json.Unmarshal(raw, &cs); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cs, nil
}

// Publisher keeps each courier's current position and publishes it over
// MQTT every Every (default 1 s), as a device agent would.
type Publisher struct {
	Broker string // tcp://host:port
	Prefix string // topic prefix (default tawsil/v1)
	Every  time.Duration
	Log    *slog.Logger

	mu      sync.Mutex
	pos     map[string]wire.Fix
	targets map[string]target
	clients map[string]paho.Client
	seq     uint64
}

// Start connects one client per credential and publishes until ctx ends.
func (p *Publisher) Start(ctx context.Context, creds []Credential) error {
	if p.Prefix == "" {
		p.Prefix = "tawsil/v1"
	}
	if p.Every == 0 {
		p.Every = time.Second
	}
	p.pos, p.clients, p.targets = map[string]wire.Fix{}, map[string]paho.Client{}, map[string]target{}
	p.seq = uint64(time.Now().UnixMilli())
	for _, c := range creds {
		o := paho.NewClientOptions().AddBroker(p.Broker).SetClientID(c.ClientID).SetUsername(c.Username).SetPassword(c.Password).
			SetCleanSession(true).SetAutoReconnect(true).SetConnectRetry(true).SetOrderMatters(false)
		cl := paho.NewClient(o)
		tok := cl.Connect()
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			return fmt.Errorf("demo courier %s: mqtt connect: %v", c.CourierID, tok.Error())
		}
		p.clients[c.CourierID] = cl
	}
	go func() {
		t := time.NewTicker(p.Every)
		defer t.Stop()
		defer func() {
			for _, cl := range p.clients {
				cl.Disconnect(100)
			}
		}()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				p.publishAll()
			}
		}
	}()
	return nil
}

// target is where a courier is heading and how fast.
type target struct {
	lat, lng, speed float64
	arrived         chan struct{}
}

// Set places a courier (published at the next tick) and drops its target.
func (p *Publisher) Set(courierID string, lat, lng, speed, heading float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pos[courierID] = wire.Fix{Lat: lat, Lng: lng, Accuracy: 8, Speed: speed, Heading: heading, Battery: 80}
	if t, ok := p.targets[courierID]; ok {
		close(t.arrived)
		delete(p.targets, courierID)
	}
}

// MoveTo sends a courier in a straight line towards a point at speed m/s
// (the backend refuses jumps faster than its speed limit); the channel is
// closed when it gets there or is moved elsewhere.
func (p *Publisher) MoveTo(courierID string, lat, lng, speed float64) <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if t, ok := p.targets[courierID]; ok {
		close(t.arrived)
	}
	t := target{lat: lat, lng: lng, speed: speed, arrived: make(chan struct{})}
	p.targets[courierID] = t
	return t.arrived
}

// step advances couriers towards their targets by one tick.
func (p *Publisher) step(dt float64) {
	for id, t := range p.targets {
		f, ok := p.pos[id]
		if !ok {
			f = wire.Fix{Lat: t.lat, Lng: t.lng, Accuracy: 8, Battery: 80}
		}
		d := geo.DistanceLatLngM(f.Lat, f.Lng, t.lat, t.lng)
		stepM := t.speed * dt
		if d <= stepM || d < 1 {
			f.Lat, f.Lng, f.Speed = t.lat, t.lng, 0
			p.pos[id] = f
			close(t.arrived)
			delete(p.targets, id)
			continue
		}
		k := stepM / d
		f.Heading = bearing(f.Lat, f.Lng, t.lat, t.lng)
		f.Lat += (t.lat - f.Lat) * k
		f.Lng += (t.lng - f.Lng) * k
		f.Speed = t.speed
		p.pos[id] = f
	}
}

func bearing(lat1, lng1, lat2, lng2 float64) float64 {
	φ1, φ2 := lat1*math.Pi/180, lat2*math.Pi/180
	dλ := (lng2 - lng1) * math.Pi / 180
	θ := math.Atan2(math.Sin(dλ)*math.Cos(φ2), math.Cos(φ1)*math.Sin(φ2)-math.Sin(φ1)*math.Cos(φ2)*math.Cos(dλ))
	return math.Mod(θ*180/math.Pi+360, 360)
}

// Get is a courier's current position.
func (p *Publisher) Get(courierID string) (lat, lng float64, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f, ok := p.pos[courierID]
	return f.Lat, f.Lng, ok
}

func (p *Publisher) publishAll() {
	p.mu.Lock()
	p.step(p.Every.Seconds())
	now := time.Now().UTC().Truncate(time.Millisecond)
	type out struct {
		cl  paho.Client
		id  string
		fix wire.Fix
	}
	var batch []out
	for id, f := range p.pos {
		cl := p.clients[id]
		if cl == nil {
			continue
		}
		p.seq++
		f.Seq, f.Time = p.seq, now
		batch = append(batch, out{cl, id, f})
	}
	p.mu.Unlock()
	for _, b := range batch {
		payload, err := wire.EncodeBatch(nil, []wire.Fix{b.fix})
		if err != nil {
			continue
		}
		b.cl.Publish(topic.Courier(p.Prefix, b.id, topic.Pos), 1, false, payload)
	}
}
