package demo

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"
)

// client is a small JSON client of the Tawsil API.
type client struct {
	base  string
	http  *http.Client
	token string
}

type apiErr struct {
	Status int
	Detail string
}

func (e *apiErr) Error() string { return fmt.Sprintf("%d %s", e.Status, e.Detail) }

func (c *client) do(ctx context.Context, method, path string, body, out any, headers ...string) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept-Language", "en")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(res.Body, 4<<20))
	if err != nil {
		return err
	}
	if res.StatusCode >= 300 {
		var p struct {
			Detail string `json:"detail"`
		}
		_ = json.Unmarshal(raw, &p)
		return &apiErr{Status: res.StatusCode, Detail: p.Detail}
	}
	if out != nil {
		return json.Unmarshal(raw, out)
	}
	return nil
}

func (c *client) login(ctx context.Context, email, password string) (courierID string, err error) {
	var pair struct {
		AccessToken string `json:"access_token"`
	}
	if err := c.do(ctx, "POST", "/v1/auth/login", map[string]string{"email": email, "password": password}, &pair); err != nil {
		return "", fmt.Errorf("login %s: %w", email, err)
	}
	c.token = pair.AccessToken
	parts := strings.Split(pair.AccessToken, ".")
	if len(parts) == 3 {
		var cl struct {
			CID string `json:"cid"`
		}
		if raw, err := decodeSegment(parts[1]); err == nil && json.Unmarshal(raw, &cl) == nil {
			courierID = cl.CID
		}
	}
	return courierID, nil
}

func newKey() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Codes is what the demo merchant hands its couriers: each order's handover
// code (in life the customer reads it out at the door).
type Codes struct{ m sync.Map }

func (c *Codes) put(order, code string) { c.m.Store(order, code) }
func (c *Codes) get(order string) string {
	v, _ := c.m.Load(order)
	s, _ := v.(string)
	return s
}

// Behaviour is how the simulated couriers act.
type Behaviour struct {
	AcceptRate float64 // share of offers accepted (default 0.85)
	FailRate   float64 // share of deliveries that fail at the door (default 0.08)
	SpeedMPS   float64 // street speed (default 8 m/s, about 30 km/h)
	Poll       time.Duration
	// DoorWait is how long a courier stays at the door, knocking and
	// calling, before reporting a failed attempt (default 150 s: more than
	// the 2 minutes of presence the failure rules ask as GPS evidence, so
	// the demo's failures are verified and decided by the rules).
	DoorWait time.Duration
}

func (b *Behaviour) defaults() {
	if b.AcceptRate == 0 {
		b.AcceptRate = 0.85
	}
	if b.FailRate == 0 {
		b.FailRate = 0.08
	}
	if b.SpeedMPS == 0 {
		b.SpeedMPS = 8
	}
	if b.Poll == 0 {
		b.Poll = 2 * time.Second
	}
	if b.DoorWait == 0 {
		b.DoorWait = 150 * time.Second
	}
}

type place struct {
	Lat, Lng float64
}

type task struct {
	OrderID      string  `json:"order_id"`
	Status       string  `json:"status"`
	Offer        bool    `json:"offer"`
	Pickup       place   `json:"pickup"`
	Dropoff      place   `json:"dropoff"`
	CODAmountMAD float64 `json:"cod_amount_mad"`
}

type stop struct {
	OrderID string  `json:"order_id"`
	Kind    string  `json:"kind"`
	Lat     float64 `json:"lat"`
	Lng     float64 `json:"lng"`
}

// failures are the reasons a simulated courier gives, with their weights:
// mostly nobody at the door, then addresses that cannot be found, refusals.
var failures = []failureReason{
	{"CUSTOMER_UNAVAILABLE", "nobody answers the door or the phone", 0.55},
	{"ADDRESS_NOT_FOUND", "no such number in the street", 0.2},
	{"CUSTOMER_REFUSED", "the customer no longer wants it", 0.1},
	{"ADDRESS_INACCESSIBLE", "residence gate closed, guard absent", 0.1},
	{"COD_NOT_AVAILABLE", "the customer has no cash", 0.05},
}

// Courier drives one simulated courier until ctx ends.
type Courier struct {
	ID    string
	Email string
	api   *client
	pub   *Publisher
	codes *Codes
	b     Behaviour
	log   *slog.Logger
	rng   *mrand.Rand

	answered map[string]bool // offers already answered
	heading  string          // "orderID/kind" of the stop being driven to
	arrived  <-chan struct{}
	// door is the stop ("orderID/kind") where the courier waits at the door
	// until doorUntil before reporting failure, for doorWhy.
	door      string
	doorUntil time.Time
	doorWhy   failureReason
}

type failureReason = struct {
	reason, note string
	weight       float64
}

func (c *Courier) run(ctx context.Context) {
	t := time.NewTicker(c.b.Poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := c.tick(ctx); err != nil && ctx.Err() == nil {
			c.log.Debug("demo courier", "courier_id", c.ID, "err", err)
		}
	}
}

func (c *Courier) tick(ctx context.Context) error {
	var r struct {
		Tasks []task `json:"tasks"`
		Route struct {
			Stops []stop `json:"stops"`
		} `json:"route"`
	}
	if err := c.api.do(ctx, "GET", "/v1/me/tasks", nil, &r); err != nil {
		return err
	}
	byID := map[string]task{}
	for _, t := range r.Tasks {
		byID[t.OrderID] = t
		if t.Offer && !c.answered[t.OrderID] {
			c.answered[t.OrderID] = true
			time.Sleep(time.Duration(1+c.rng.IntN(4)) * time.Second) // a person reads the offer first
			if c.rng.Float64() < c.b.AcceptRate {
				if err := c.api.do(ctx, "POST", "/v1/orders/"+t.OrderID+"/accept", nil, nil, "Idempotency-Key", newKey()); err != nil {
					c.log.Debug("accept refused", "order_id", t.OrderID, "err", err)
				}
			} else if err := c.api.do(ctx, "POST", "/v1/orders/"+t.OrderID+"/decline", map[string]string{"reason": "too far for me now"}, nil, "Idempotency-Key", newKey()); err != nil {
				c.log.Debug("decline refused", "order_id", t.OrderID, "err", err)
			}
			return nil
		}
	}
	// Drive the planned route: the first stop of the plan.
	var next *stop
	for i := range r.Route.Stops {
		if _, ok := byID[r.Route.Stops[i].OrderID]; ok {
			next = &r.Route.Stops[i]
			break
		}
	}
	if next == nil {
		c.heading = ""
		return nil
	}
	key := next.OrderID + "/" + next.Kind
	if c.heading != key {
		c.heading, c.door = key, ""
		c.arrived = c.pub.MoveTo(c.ID, next.Lat, next.Lng, c.b.SpeedMPS*(0.8+0.4*c.rng.Float64()))
		return nil
	}
	select {
	case <-c.arrived:
	default:
		return nil // still driving
	}
	t := byID[next.OrderID]
	path := "/v1/orders/" + t.OrderID + "/"
	if c.door == key {
		if time.Now().Before(c.doorUntil) {
			return nil // still at the door, knocking and calling (the publisher keeps sending fixes here)
		}
		c.heading, c.door = "", ""
		if t.Status != "picked_up" && t.Status != "reattempt_scheduled" {
			return nil // a dispatcher changed the order meanwhile
		}
		f := c.doorWhy
		return c.api.do(ctx, "POST", path+"fail", map[string]any{"reason": f.reason, "note": f.note,
			"evidence": map[string]any{"call_attempts": 2 + c.rng.IntN(2), "photo_ref": "demo:door-" + newKey()[:8]}}, nil, "Idempotency-Key", newKey())
	}
	time.Sleep(2 * c.b.Poll) // the backend has the arrival fix before the action
	c.heading = ""
	switch {
	case next.Kind == "pickup" && t.Status == "assigned":
		return c.api.do(ctx, "POST", path+"pickup", nil, nil, "Idempotency-Key", newKey())
	case (next.Kind == "dropoff" || next.Kind == "relay") && (t.Status == "picked_up" || t.Status == "reattempt_scheduled"):
		if c.rng.Float64() < c.b.FailRate {
			// Nobody opens: wait at the door first, then report (above).
			c.heading, c.door, c.doorUntil, c.doorWhy = key, key, time.Now().Add(c.b.DoorWait), pickFailure(c.rng)
			return nil
		}
		return c.api.do(ctx, "POST", path+"deliver", map[string]any{"handover_code": c.codes.get(t.OrderID), "cash_collected_mad": t.CODAmountMAD,
			"proof_ref": "demo:signature"}, nil, "Idempotency-Key", newKey())
	case next.Kind == "return" && t.Status == "returning":
		return c.api.do(ctx, "POST", path+"returned", nil, nil)
	}
	return nil
}

func pickFailure(rng *mrand.Rand) failureReason {
	x := rng.Float64()
	for _, f := range failures {
		if x < f.weight {
			return f
		}
		x -= f.weight
	}
	return failures[0]
}
