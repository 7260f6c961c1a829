package main

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/tawsil/tawsil/backend/internal/area"
	"github.com/tawsil/tawsil/backend/internal/core"
	"github.com/tawsil/tawsil/backend/internal/dispatch"
	"github.com/tawsil/tawsil/backend/internal/failure"
)

// errConfig marks an unusable simulation setting.
var errConfig = errors.New("invalid simulation config")

// Config describes one simulated day.
type Config struct {
	Seed        uint64
	Orders      int
	Couriers    int
	Stores      int
	FailRate    float64 // share of orders whose first drop-off attempt fails
	CostPerHour float64 // MAD per courier shift hour
	CostPerKm   float64 // MAD per km ridden
	Step        time.Duration
	Noise       float64 // sd of the log of actual/predicted leg time
	Radius      float64 // candidate search radius, metres
	K           int     // candidates per decision
	Capacity    int
	Failures    FailureProfile
}

// DefaultConfig is a busy Casablanca day.
func DefaultConfig() Config {
	return Config{
		Seed: 1, Orders: 4000, Couriers: 220, Stores: 35, FailRate: 0.07,
		CostPerHour: core.DefaultCosts().PerHourMAD, CostPerKm: core.DefaultCosts().PerKmMAD, Step: 30 * time.Second, Noise: 0.2,
		Radius: 8000, K: 50, Capacity: 3, Failures: DefaultFailureProfile(),
	}
}

// Validate reports the first unusable setting.
func (c Config) Validate() error {
	switch {
	case c.Orders < 1 || c.Couriers < 1 || c.Stores < 1:
		return fmt.Errorf("%w: orders, couriers and stores must be positive", errConfig)
	case !(c.FailRate >= 0 && c.FailRate <= 1):
		return fmt.Errorf("%w: fail rate %v not in 0..1", errConfig, c.FailRate)
	case c.Step <= 0 || c.K < 1 || c.Capacity < 1 || !(c.Radius > 0) || !(c.Noise >= 0):
		return fmt.Errorf("%w: step, k, capacity, radius must be positive and noise >= 0", errConfig)
	}
	return c.Failures.Validate()
}

// simOrder is a booking of the day. The fields up to size are drawn once and
// are identical for every strategy; st is the order in one run, changed only
// by core.Step.
type simOrder struct {
	id        string
	bookedAt  time.Time
	store     dispatch.Point // where the parcel comes from (returns go back there)
	dropoff   dispatch.Point
	promiseBy time.Time
	failures  int            // attempts that fail before one succeeds (0: the first succeeds)
	reason    failure.Reason // why its attempts fail
	policy    string         // the merchant's policy
	cod       bool           // cash on delivery
	size      string         // S, M or L

	st        core.State // the order as the core keeps it
	attempts  int        // drop-off attempts made
	rules     []string   // the rule of each failed attempt's decision
	flaggedAt time.Time  // when it last went to a dispatcher
}

// Status is how an order ended.
type Status string

// Order outcomes.
const (
	Unfinished Status = "unfinished" // still open when the simulation stopped
	Delivered  Status = "delivered"  // handed to the customer
	Relayed    Status = "relayed"    // left at a relay point (the backend counts it delivered)
	Returned   Status = "returned"   // back at the merchant
	Cancelled  Status = "cancelled"
)

// world is the generated day: stores, bookings, courier starts.
type world struct {
	orders []simOrder
	starts []dispatch.Point
	open   time.Time // shift start
	close  time.Time // last booking
}

// generate builds a day of Casablanca orders: stores with Zipf-like
// popularity, drop-offs 0.5–5 km from their store inside the city, bookings
// over 09:00–23:00 with lunch and evening peaks. Merchant policies, payment,
// parcel sizes and failed attempts come from cfg.Failures, drawn from a
// stream of their own.
func generate(cfg Config, areas *area.Areas, loc *time.Location) (world, error) {
	r := rand.New(rand.NewPCG(cfg.Seed, 0x7a5))
	rf := rand.New(rand.NewPCG(cfg.Seed, 0xfa11))
	inCity := func(p dispatch.Point) bool {
		c, ok := areas.Locate(p.Lat, p.Lng)
		return ok && c == "casablanca"
	}
	// Casablanca's bounding box.
	sample := func() (dispatch.Point, error) {
		for range 10_000 {
			p := dispatch.Point{Lat: 33.485 + r.Float64()*0.17, Lng: -7.76 + r.Float64()*0.33}
			if inCity(p) {
				return p, nil
			}
		}
		return dispatch.Point{}, fmt.Errorf("no point inside casablanca")
	}
	stores := make([]dispatch.Point, cfg.Stores)
	policies := make([]string, cfg.Stores)
	weights := make([]float64, cfg.Stores)
	var wsum float64
	for i := range stores {
		p, err := sample()
		if err != nil {
			return world{}, err
		}
		stores[i] = p
		policies[i] = draw(rf, cfg.Failures.Policies, nil)
		weights[i] = 1 / math.Pow(float64(i+1), 0.8)
		wsum += weights[i]
	}
	day := time.Date(2026, 5, 6, 0, 0, 0, 0, loc)
	w := world{open: day.Add(9 * time.Hour), close: day.Add(23 * time.Hour)}
	curve := func(h float64) float64 {
		return 0.25 + 1.0*math.Exp(-sq(h-13)/(2*sq(1.0))) + 1.4*math.Exp(-sq(h-20.5)/(2*sq(1.2)))
	}
	for i := range cfg.Orders {
		var h float64
		for {
			h = 9 + r.Float64()*14
			if r.Float64()*2.7 < curve(h) {
				break
			}
		}
		x := r.Float64() * wsum
		s := 0
		for ; s < len(stores)-1 && x > weights[s]; s++ {
			x -= weights[s]
		}
		var drop dispatch.Point
		for {
			d := 500 + r.Float64()*4500
			a := r.Float64() * 2 * math.Pi
			drop = offset(stores[s], d*math.Cos(a), d*math.Sin(a))
			if inCity(drop) {
				break
			}
		}
		booked := day.Add(time.Duration(h * float64(time.Hour))).Truncate(time.Second)
		o := simOrder{
			id: fmt.Sprintf("o%05d", i), bookedAt: booked, store: stores[s], dropoff: drop,
			promiseBy: booked.Add(time.Hour), policy: policies[s],
		}
		cfg.Failures.drawFailures(rf, &o, cfg.FailRate)
		w.orders = append(w.orders, o)
	}
	slices.SortFunc(w.orders, func(a, b simOrder) int { return a.bookedAt.Compare(b.bookedAt) })
	for range cfg.Couriers {
		// couriers start near the stores they will mostly serve
		s := stores[r.IntN(len(stores))]
		w.starts = append(w.starts, offset(s, r.NormFloat64()*800, r.NormFloat64()*800))
	}
	return w, nil
}

func sq(x float64) float64 { return x * x }

func offset(p dispatch.Point, north, east float64) dispatch.Point {
	const m = 111_195.0
	return dispatch.Point{Lat: p.Lat + north/m, Lng: p.Lng + east/(m*math.Cos(p.Lat*math.Pi/180))}
}
