package main

import (
	"math"
	"math/rand/v2"
	"time"

	"github.com/tawsil/tawsil/shared/wire"
)

// casablanca is the box simulated couriers ride in: the city from Ain Diab
// to Sidi Moumen, Corniche to Sidi Maarouf.
var casablanca = bbox{minLat: 33.52, maxLat: 33.62, minLng: -7.68, maxLng: -7.50}

type bbox struct{ minLat, maxLat, minLng, maxLng float64 }

func (b bbox) contains(lat, lng float64) bool {
	return lat >= b.minLat && lat <= b.maxLat && lng >= b.minLng && lng <= b.maxLng
}

const metresPerDegLat = 111_320.0

// rider moves one simulated courier through the city: straight street
// segments of 80–400 m at 3–12 m/s, turning at the ends, staying in the
// box. Each call to next advances by the real time elapsed since the last
// fix, so positions stay physically plausible whatever the publish rate.
type rider struct {
	rng     *rand.Rand
	box     bbox
	lat     float64
	lng     float64
	heading float64 // degrees clockwise from north
	speed   float64 // m/s
	left    float64 // metres left on the current street segment
	battery float64
	seq     uint64
	last    time.Time
}

// newRider starts a courier at a random point of box; seqBase is the
// sequence number before its first fix.
func newRider(seed uint64, box bbox, seqBase uint64) *rider {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	r := &rider{rng: rng, box: box, seq: seqBase, battery: 60 + rng.Float64()*40,
		lat: box.minLat + rng.Float64()*(box.maxLat-box.minLat),
		lng: box.minLng + rng.Float64()*(box.maxLng-box.minLng)}
	r.turn()
	return r
}

// turn picks a new street: a heading on the city's rough grid (with some
// scatter), a speed and a length.
func (r *rider) turn() {
	r.heading = math.Mod(float64(r.rng.IntN(4))*90+r.rng.NormFloat64()*10+360, 360)
	r.speed = 3 + r.rng.Float64()*9
	r.left = 80 + r.rng.Float64()*320
}

// advance moves the rider d metres, turning at segment ends and bouncing
// off the box edges.
func (r *rider) advance(d float64) {
	for d > 0 {
		step := math.Min(d, r.left)
		rad := r.heading * math.Pi / 180
		lat := r.lat + step*math.Cos(rad)/metresPerDegLat
		lng := r.lng + step*math.Sin(rad)/(metresPerDegLat*math.Cos(r.lat*math.Pi/180))
		if !r.box.contains(lat, lng) {
			r.heading = math.Mod(r.heading+180, 360)
			r.left = 80 + r.rng.Float64()*320
			continue
		}
		r.lat, r.lng = lat, lng
		r.left -= step
		d -= step
		if r.left <= 0 {
			r.turn()
		}
	}
}

// next returns the courier's fix at time now: strictly increasing Seq,
// device time never before the previous fix's (millisecond wire precision).
func (r *rider) next(now time.Time) wire.Fix {
	now = now.Truncate(time.Millisecond)
	if !r.last.IsZero() {
		if now.Before(r.last) {
			now = r.last
		}
		r.advance(r.speed * now.Sub(r.last).Seconds())
	}
	r.last = now
	r.seq++
	r.battery = math.Max(5, r.battery-0.0005)
	return wire.Fix{Seq: r.seq, Time: now,
		Lat: math.Round(r.lat*1e6) / 1e6, Lng: math.Round(r.lng*1e6) / 1e6,
		Accuracy: math.Round((3+r.rng.Float64()*12)*10) / 10, Speed: math.Round(r.speed*100) / 100,
		Heading: math.Mod(math.Round(r.heading*10)/10, 360), Battery: int(r.battery)}
}

// batch returns n fixes spread over the time since the previous call, as a
// device draining its outbox would send them.
func (r *rider) batch(now time.Time, n int) []wire.Fix {
	out := make([]wire.Fix, n)
	from := r.last
	if from.IsZero() || !now.After(from) {
		from = now
	}
	span := now.Sub(from)
	for i := range out {
		t := from.Add(span * time.Duration(i+1) / time.Duration(n))
		out[i] = r.next(t)
	}
	return out
}
