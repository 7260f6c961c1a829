package demo

import (
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"net/http"
	"sync"
	"time"
)

func decodeSegment(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }

// Options configure a demo run.
type Options struct {
	API         string // http://host:port
	Broker      string // tcp://host:port
	Credentials string // the seed's fleet-credentials.json
	Password    string // the demo accounts' password
	AdminEmail  string // to add ExtraCouriers (optional)
	AdminPass   string
	// ExtraCouriers are created (once) besides the five seeded ones, for a
	// livelier map.
	ExtraCouriers int
	// BookEvery is the mean time between the demo merchant's bookings at
	// the busiest hours; quieter hours book less (default 25 s).
	BookEvery time.Duration
	Behaviour Behaviour
	Log       *slog.Logger
	Seed      uint64
}

// Casablanca's demo geography: the merchant's shops and where customers live.
var (
	shops = []struct {
		name     string
		lat, lng float64
	}{
		{"Hanout Maarif, Bd Zerktouni", 33.5731, -7.5898},
		{"Dark store Gauthier, Rue Jean Jaurès", 33.5893, -7.6262},
		{"Épicerie Racine, Bd d'Anfa", 33.5872, -7.6380},
		{"Mini-market Belvédère", 33.5990, -7.5930},
	}
	firstNames = []string{"Fatima", "Mohamed", "Khadija", "Youssef", "Salma", "Hamza", "Nadia", "Anas", "Meryem", "Rachid", "Imane", "Omar"}
	streets    = []string{"Rue Tata", "Bd Ghandi", "Rue Ibnou Mounir", "Av. Hassan II", "Rue Al Khalil", "Bd Brahim Roudani", "Rue Soumaya", "Bd Anoual"}
)

// Run starts the demo couriers and the demo merchant and blocks until ctx ends.
func Run(ctx context.Context, o Options) error {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.BookEvery == 0 {
		o.BookEvery = 25 * time.Second
	}
	o.Behaviour.defaults()
	rng := mrand.New(mrand.NewPCG(o.Seed, uint64(time.Now().UnixNano())))
	hc := &http.Client{Timeout: 15 * time.Second}
	creds, err := ReadCredentials(o.Credentials)
	if err != nil {
		return err
	}
	emails := map[string]string{}
	for i, c := range creds {
		emails[c.CourierID] = fmt.Sprintf("courier%d@demo.tawsil.ma", i+1)
	}
	if o.ExtraCouriers > 0 && o.AdminEmail != "" {
		extra, err := addCouriers(ctx, &client{base: o.API, http: hc}, o, len(creds))
		if err != nil {
			o.Log.Warn("extra demo couriers not added", "err", err)
		}
		for _, e := range extra {
			creds = append(creds, e.cred)
			emails[e.cred.CourierID] = e.email
		}
	}
	pub := &Publisher{Broker: o.Broker, Log: o.Log}
	if err := pub.Start(ctx, creds); err != nil {
		return err
	}
	codes := &Codes{}
	var wg sync.WaitGroup
	for i, cr := range creds {
		api := &client{base: o.API, http: hc}
		id, err := api.login(ctx, emails[cr.CourierID], o.Password)
		if err != nil {
			return err
		}
		if id != cr.CourierID {
			return fmt.Errorf("%s is courier %s, the credentials say %s", emails[cr.CourierID], id, cr.CourierID)
		}
		if err := api.do(ctx, "POST", "/v1/me/shift", map[string]bool{"on_duty": true}, nil); err != nil {
			return fmt.Errorf("%s: shift: %w", emails[cr.CourierID], err)
		}
		// Start near a shop: couriers wait where orders come from.
		s := shops[i%len(shops)]
		lat, lng := jitter(rng, s.lat, s.lng, 400)
		pub.Set(cr.CourierID, lat, lng, 0, 0)
		b := o.Behaviour
		if i%5 == 2 {
			b.SpeedMPS *= 0.6 // the bike
		}
		c := &Courier{ID: cr.CourierID, Email: emails[cr.CourierID], api: api, pub: pub, codes: codes, b: b, log: o.Log,
			rng: mrand.New(mrand.NewPCG(o.Seed+uint64(i), uint64(time.Now().UnixNano()))), answered: map[string]bool{}}
		wg.Add(1)
		go func() { defer wg.Done(); c.run(ctx) }()
	}
	merchant := &client{base: o.API, http: hc}
	if _, err := merchant.login(ctx, "merchant@demo.tawsil.ma", o.Password); err != nil {
		return err
	}
	wg.Add(1)
	go func() { defer wg.Done(); book(ctx, merchant, codes, o, rng) }()
	o.Log.Info("demo running", "couriers", len(creds))
	wg.Wait()
	return nil
}

// busyness is the share of the peak booking rate at an hour (Casablanca
// time): lunch and evening peaks, quiet nights.
func busyness(h int) float64 {
	curve := [24]float64{0.15, 0.1, 0.1, 0.1, 0.1, 0.15, 0.25, 0.4, 0.5, 0.55, 0.6, 0.8, 1, 1, 0.8, 0.6, 0.6, 0.7, 0.9, 1, 1, 0.8, 0.5, 0.3}
	return curve[h%24]
}

func book(ctx context.Context, m *client, codes *Codes, o Options, rng *mrand.Rand) {
	wait := 3 * time.Second // the first order comes at once: a fresh demo shows a delivery within a minute
	casa := time.FixedZone("Africa/Casablanca", 3600)
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		mean := float64(o.BookEvery) / math.Max(0.1, busyness(time.Now().In(casa).Hour()))
		wait = time.Duration(rng.ExpFloat64() * mean)
		wait = min(max(wait, 5*time.Second), 10*time.Minute)
		s := shops[rng.IntN(len(shops))]
		radius := 3500.0
		if n < 3 {
			radius = 1200 // the first deliveries are short: a fresh demo shows one done in a few minutes
		}
		lat, lng := jitter(rng, s.lat, s.lng, radius)
		cod := 0.0
		if rng.Float64() < 0.4 {
			cod = float64(50 + rng.IntN(400))
		}
		body := map[string]any{
			"pickup":         map[string]any{"lat": s.lat, "lng": s.lng, "address": s.name},
			"dropoff":        map[string]any{"lat": lat, "lng": lng, "address": fmt.Sprintf("%d %s, Casablanca", 1+rng.IntN(120), streets[rng.IntN(len(streets))])},
			"parcel":         map[string]string{"size": []string{"S", "S", "M", "L"}[rng.IntN(4)]},
			"cod_amount_mad": cod,
			"customer":       map[string]string{"name": firstNames[rng.IntN(len(firstNames))] + " (demo)", "phone": fmt.Sprintf("+2126%08d", rng.IntN(100_000_000))},
		}
		var out struct {
			ID           string `json:"id"`
			HandoverCode string `json:"handover_code"`
		}
		if err := m.do(ctx, "POST", "/v1/orders", body, &out, "Idempotency-Key", newKey()); err != nil {
			o.Log.Debug("demo booking refused", "err", err)
			continue
		}
		codes.put(out.ID, out.HandoverCode)
		o.Log.Info("demo merchant booked", "order_id", out.ID, "cod_mad", cod)
	}
}

// jitter is a random point within r metres of (lat, lng).
func jitter(rng *mrand.Rand, lat, lng, r float64) (float64, float64) {
	d := r * math.Sqrt(rng.Float64())
	a := rng.Float64() * 2 * math.Pi
	return lat + d*math.Cos(a)/111_320, lng + d*math.Sin(a)/(111_320*math.Cos(lat*math.Pi/180))
}

type extraCourier struct {
	email string
	cred  Credential
}

// addCouriers creates the extra demo couriers (once; later runs log in)
// and gives each fresh device credentials.
func addCouriers(ctx context.Context, admin *client, o Options, from int) ([]extraCourier, error) {
	if _, err := admin.login(ctx, o.AdminEmail, o.AdminPass); err != nil {
		return nil, err
	}
	names := []string{"Soufiane", "Hajar", "Ayoub", "Zineb", "Ilyas", "Oumaima", "Reda", "Ghita", "Adil", "Sara", "Karim", "Houda"}
	var out []extraCourier
	for i := 0; i < o.ExtraCouriers; i++ {
		email := fmt.Sprintf("courier%d@demo.tawsil.ma", from+i+1)
		var u struct {
			ID        string `json:"id"`
			CourierID string `json:"courier_id"`
		}
		err := admin.do(ctx, "POST", "/v1/users", map[string]any{"email": email, "password": o.Password, "role": "courier",
			"name": names[i%len(names)] + " (demo)", "vehicle": []string{"scooter", "scooter", "bike", "car"}[i%4]}, &u, "Idempotency-Key", "demo-"+email)
		if err != nil {
			if ae, ok := err.(*apiErr); !ok || ae.Status != http.StatusConflict {
				return out, fmt.Errorf("create %s: %w", email, err)
			}
			c := &client{base: admin.base, http: admin.http}
			if u.CourierID, err = c.login(ctx, email, o.Password); err != nil {
				return out, err
			}
		}
		var cred Credential
		if err := admin.do(ctx, "POST", "/v1/couriers/"+u.CourierID+"/device-credentials", nil, &cred); err != nil {
			return out, fmt.Errorf("device credentials for %s: %w", email, err)
		}
		if cred.CourierID == "" {
			cred.CourierID = u.CourierID
		}
		out = append(out, extraCourier{email: email, cred: cred})
	}
	return out, nil
}
