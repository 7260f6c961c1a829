package dispatch

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/tawsil/tawsil/backend/internal/eta"
)

var _ ETA = (*eta.Model)(nil)

// benchCandidates returns 50 couriers within 3 km of the store, as the live
// index would return them: 30 idle, 15 with one order, 5 batching two
// orders from the store.
func benchCandidates(r *rand.Rand) []Candidate {
	around := func(radius float64) Point {
		return move(store, (r.Float64()*2-1)*radius, (r.Float64()*2-1)*radius)
	}
	cs := make([]Candidate, 0, 50)
	for i := range 50 {
		c := Candidate{CourierID: string(rune('A'+i/26)) + string(rune('a'+i%26)), Capacity: 3, AssignedToday: r.IntN(12)}
		p := around(3000)
		c.Lat, c.Lng = p.Lat, p.Lng
		switch {
		case i < 30:
			c.IdleSince = now.Add(-time.Duration(r.IntN(40)) * time.Minute)
		case i < 45:
			origin := around(4000)
			c.Load = 1
			c.Route = []Stop{{OrderID: "x", Kind: StopDropoff, At: around(5000), Origin: origin, PromiseBy: now.Add(time.Duration(20+r.IntN(40)) * time.Minute)}}
		default:
			c.Lat, c.Lng = store.Lat, store.Lng
			c.Load = 2
			c.Route = []Stop{
				{OrderID: "y", Kind: StopDropoff, At: around(3000), Origin: store, PromiseBy: now.Add(45 * time.Minute)},
				{OrderID: "z", Kind: StopDropoff, At: around(3000), Origin: store, PromiseBy: now.Add(55 * time.Minute)},
			}
		}
		cs = append(cs, c)
	}
	return cs
}

// BenchmarkScore50 is one dispatch decision (scoring and ranking 50
// candidates with the real ETA model) and reports p50/p99 latency.
func BenchmarkScore50(b *testing.B) {
	m, err := eta.New(eta.Default(), nil)
	if err != nil {
		b.Fatal(err)
	}
	d, err := New(Default(), m)
	if err != nil {
		b.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	sets := make([][]Candidate, 64)
	for i := range sets {
		sets[i] = benchCandidates(r)
	}
	job := newJob(move(store, 2000, 800))
	lat := make([]time.Duration, 0, 1<<16)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		start := time.Now()
		ranked, _ := d.Score(job, sets[i%len(sets)], now)
		lat = append(lat, time.Since(start))
		if len(ranked) == 0 {
			b.Fatal("no candidate ranked")
		}
		i++
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
