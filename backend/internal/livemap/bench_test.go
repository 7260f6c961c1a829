package livemap

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

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
	runtime.GC() // the build's garbage is not the benchmark's
	return x, ids, pos
}

// benchID writes the id benchIndex gave courier i ("courier-%06d") into
// buf and returns it without allocating (the index copies ids it keeps).
func benchID(buf *[14]byte, i int) string {
	copy(buf[:], "courier-")
	for p := 13; p >= 8; p-- {
		buf[p] = byte('0' + i%10)
		i /= 10
	}
	return unsafe.String(&buf[0], len(buf))
}

// moves precomputes realistic updates: a random courier steps 5-15 m (a
// scooter at 10 m/s between 1 s fixes), with increasing seq. seq holds each
// courier's last seq across batches (round numbers the batches: a fresh
// draw each), so that every fix stays newer than the live one.
type moves struct {
	idx   []int32
	fixes []wire.Fix
}

func newMoves(n int, pos [][2]float64, seq []uint64, round uint64) moves {
	rng := newRand(7 + round)
	m := moves{idx: make([]int32, n), fixes: make([]wire.Fix, n)}
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

// BenchmarkUpdate applies position updates on one goroutine, to the live
// index and to the naive reference (naiveIndex) with the same fleet and moves.
func BenchmarkUpdate(b *testing.B) {
	run := func(b *testing.B, ids []string, pos [][2]float64, update func(id string, f wire.Fix) error) {
		seq := make([]uint64, len(pos))
		round := uint64(0)
		m := newMoves(1<<20, pos, seq, round)
		var idBuf [14]byte
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		b.ReportAllocs()
		b.ResetTimer()
		cpu0 := threadCPU(b)
		var regen time.Duration // CPU spent making moves, not counted
		for i := 0; b.Loop(); i++ {
			j := i & (1<<20 - 1)
			if i > 0 && j == 0 {
				b.StopTimer()
				r0 := threadCPU(b)
				round++
				m = newMoves(1<<20, pos, seq, round) // seqs keep increasing
				regen += threadCPU(b) - r0
				b.StartTimer()
			}
			// The id as ingest has it: just parsed from a topic, in cache.
			if err := update(benchID(&idBuf, int(m.idx[j])), m.fixes[j]); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "updates/s")
		b.ReportMetric(float64(threadCPU(b)-cpu0-regen)/float64(b.N), "cpu-ns/op")
	}
	recv := t0.Add(time.Hour)
	b.Run("livemap", func(b *testing.B) {
		x, ids, pos := benchIndex(b)
		run(b, ids, pos, func(id string, f wire.Fix) error {
			res, err := x.Update(id, f, recv)
			if err == nil && !res.Applied {
				err = fmt.Errorf("update of %s seq %d not applied: %+v", id, f.Seq, res)
			}
			return err
		})
	})
	b.Run("naive", func(b *testing.B) {
		x, ids, pos := benchIndex(b)
		n := newNaive(x)
		run(b, ids, pos, n.update)
	})
}

// benchPoints are query points over the fleet's area.
func benchPoints() [][2]float64 {
	rng := newRand(9)
	pts := make([][2]float64, 4096)
	for i := range pts {
		pts[i][0], pts[i][1] = randCasa(rng)
	}
	return pts
}

// dispatchFilter is what dispatch asks: available, on shift, connected,
// room for one more order.
var dispatchFilter = Filter{Statuses: []Status{StatusAvailable}, OnShift: true, Online: true, MinSpare: 1}

// BenchmarkNearest5 asks for the 5 nearest available couriers of 50,000,
// from the live index (into a reused result buffer, as dispatch and the
// HTTP handler call it) and from the naive reference, and reports each
// call's p50 and p99.
func BenchmarkNearest5(b *testing.B) {
	x, _, _ := benchIndex(b)
	pts := benchPoints()
	b.Run("livemap", func(b *testing.B) {
		buf := make([]Hit, 0, 5) // the caller's reused result buffer
		benchNearest(b, pts, func(p [2]float64, _ int) int {
			buf = x.NearestAppend(buf, p[0], p[1], dispatchFilter, 5, 5000)
			return len(buf)
		})
	})
	b.Run("naive", func(b *testing.B) {
		n := newNaive(x)
		benchNearest(b, pts, func(p [2]float64, _ int) int {
			return len(n.nearest(p[0], p[1], dispatchFilter, 5, 5000))
		})
	})
}

// BenchmarkNearest5Filters is Nearest(k=5) over the same fleet with each
// kind of filter: none, available (status, shift, connection), capacity
// (room for two more orders: half the available ones) and excluded (the
// five nearest available couriers declined: the next five are wanted).
func BenchmarkNearest5Filters(b *testing.B) {
	x, _, _ := benchIndex(b)
	pts := benchPoints()
	avail := Filter{Statuses: []Status{StatusAvailable}, OnShift: true, Online: true}
	capacity := avail
	capacity.MinSpare = 2
	declined := make([]Filter, len(pts))
	for i, p := range pts {
		declined[i] = dispatchFilter
		declined[i].Exclude = map[string]struct{}{}
		for _, h := range x.Nearest(p[0], p[1], dispatchFilter, 5, 5000) {
			declined[i].Exclude[h.ID] = struct{}{}
		}
	}
	for _, tt := range []struct {
		name string
		f    func(i int) Filter
	}{
		{"none", func(int) Filter { return Filter{} }},
		{"available", func(int) Filter { return avail }},
		{"capacity", func(int) Filter { return capacity }},
		{"excluded", func(i int) Filter { return declined[i] }},
	} {
		b.Run(tt.name, func(b *testing.B) {
			buf := make([]Hit, 0, 5)
			benchNearest(b, pts, func(p [2]float64, i int) int {
				buf = x.NearestAppend(buf, p[0], p[1], tt.f(i), 5, 5000)
				return len(buf)
			})
		})
	}
}

// benchNearest calls nearest on each point in turn, records each call's
// duration and reports percentiles.
func benchNearest(b *testing.B, pts [][2]float64, nearest func(p [2]float64, i int) int) {
	durs := make([]time.Duration, 0, 1<<16)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		j := i & (len(pts) - 1)
		start := time.Now()
		n := nearest(pts[j], j)
		durs = append(durs, time.Since(start))
		if n != 5 {
			b.Fatalf("got %d hits", n)
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
	m := newMoves(1<<20, pos, make([]uint64, len(pos)), 0)
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

// threadCPU returns the CPU time the calling OS thread has used: on a
// shared machine, a figure less disturbed by other processes than wall time.
func threadCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
