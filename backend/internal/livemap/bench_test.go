package livemap

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tawsil/tawsil/shared/wire"
)

const benchFleet = 50_000

// benchIndex builds the brief's fleet: 50,000 couriers over Casablanca, a
// third available and on shift, the rest busy, on break or off shift.
func benchIndex(tb testing.TB) (*Index, []string, [][2]float64) {
	tb.Helper()
	rng := newRand(42)
	x := New()
	ids := make([]string, benchFleet)
	pos := make([][2]float64, benchFleet)
	for i := range ids {
		ids[i] = fmt.Sprintf("courier-%06d", i)
		lat, lng := randCasa(rng)
		pos[i] = [2]float64{lat, lng}
		mustUpdate(tb, x, ids[i], fixAt(1, lat, lng))
		if err := x.SetStatus(ids[i], Status(rng.IntN(int(numStatuses))), rng.IntN(2)); err != nil {
			tb.Fatal(err)
		}
		if err := x.SetProfile(ids[i], vehicles[rng.IntN(len(vehicles))], 2); err != nil {
			tb.Fatal(err)
		}
		x.SetShift(ids[i], rng.IntN(4) != 0)
	}
	return x, ids, pos
}

// moves precomputes realistic updates: a random courier steps 5-15 m (a
// scooter at 10 m/s between 1 s fixes), with increasing seq.
type moves struct {
	idx   []int32
	fixes []wire.Fix
}

func newMoves(n int, pos [][2]float64) moves {
	rng := newRand(7)
	m := moves{idx: make([]int32, n), fixes: make([]wire.Fix, n)}
	seq := make([]uint64, len(pos))
	for i := range n {
		j := rng.IntN(len(pos))
		step := 5 + 10*rng.Float64()
		dir := rng.Float64() * 6.283185307179586
		pos[j][0] += step * sinCos(dir, true) / 111_195
		pos[j][1] += step * sinCos(dir, false) / 92_700
		seq[j]++
		m.idx[i] = int32(j)
		m.fixes[i] = fixAt(seq[j]+1, pos[j][0], pos[j][1])
	}
	return m
}

func BenchmarkUpdate(b *testing.B) {
	x, ids, pos := benchIndex(b)
	m := newMoves(1<<20, pos)
	recv := t0.Add(time.Hour)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		j := i & (1<<20 - 1)
		if i > 0 && j == 0 {
			b.StopTimer()
			m = newMoves(1<<20, pos) // seqs must keep increasing
			b.StartTimer()
		}
		if _, err := x.Update(ids[m.idx[j]], m.fixes[j], recv); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "updates/s")
}

// BenchmarkNearest5 records each call's duration and reports percentiles.
func BenchmarkNearest5(b *testing.B) {
	x, _, _ := benchIndex(b)
	rng := newRand(9)
	pts := make([][2]float64, 4096)
	for i := range pts {
		pts[i][0], pts[i][1] = randCasa(rng)
	}
	f := Filter{Statuses: []Status{StatusAvailable}, OnShift: true, Online: true, MinSpare: 1}
	durs := make([]time.Duration, 0, 1<<16)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		p := pts[i&4095]
		start := time.Now()
		hits := x.Nearest(p[0], p[1], f, 5, 5000)
		durs = append(durs, time.Since(start))
		if len(hits) != 5 {
			b.Fatalf("got %d hits", len(hits))
		}
	}
	reportPercentiles(b, durs)
}

func reportPercentiles(b *testing.B, durs []time.Duration) {
	b.Helper()
	slices.Sort(durs)
	pct := func(p float64) float64 { return float64(durs[int(p*float64(len(durs)-1))].Nanoseconds()) }
	b.ReportMetric(pct(0.50), "p50-ns")
	b.ReportMetric(pct(0.99), "p99-ns")
}

// BenchmarkMixedParallel runs, on every P, nine updates per Nearest(5).
func BenchmarkMixedParallel(b *testing.B) {
	x, ids, pos := benchIndex(b)
	m := newMoves(1<<20, pos)
	f := Filter{Statuses: []Status{StatusAvailable}, OnShift: true, Online: true}
	var next atomic.Int64
	var queries atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		rng := rand.New(rand.NewPCG(uint64(next.Add(1)), 1))
		for pb.Next() {
			i := int(next.Add(1)) & (1<<20 - 1)
			if i%10 == 0 {
				lat, lng := randCasa(rng)
				x.Nearest(lat, lng, f, 5, 5000)
				queries.Add(1)
				continue
			}
			// Seqs may go stale when the ring of moves wraps; the index then
			// reports out-of-order, which is still work it must do.
			if _, err := x.Update(ids[m.idx[i]], m.fixes[i], t0); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

// BenchmarkMemoryPerCourier reports the heap held per courier in a 50,000
// courier index (one iteration is enough; run with -benchtime=1x).
func BenchmarkMemoryPerCourier(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		ids := make([]string, benchFleet)
		for i := range ids {
			ids[i] = fmt.Sprintf("courier-%06d", i)
		}
		rng := newRand(1)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		x := New()
		for i, id := range ids {
			lat, lng := randCasa(rng)
			if _, err := x.Update(id, fixAt(uint64(i+1), lat, lng), t0); err != nil {
				b.Fatal(err)
			}
			if err := x.SetProfile(id, vehicles[i%len(vehicles)], 2); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/benchFleet, "B/courier")
		runtime.KeepAlive(x)
	}
}
