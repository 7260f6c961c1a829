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

// moves precomputes realistic updates: a random courier steps 5-15 m (a
// scooter at 10 m/s between 1 s fixes), with increasing seq. seq holds each
// courier's last seq across rounds (a fresh draw each, in the same
// storage: no garbage, so the collector stays out of the benchmarks), so
// that every fix stays newer than the live one. Each move's id is a copy
// of the courier's, laid out in order with the moves, as ingest has the id
// of a message it has just parsed: in cache, not one more miss.
type moves struct {
	ids   []string // of the couriers
	idBuf []byte   // the moves' copies
	ms    []Move
}

func newMoves(n int, ids []string, pos [][2]float64, seq []uint64, round uint64) moves {
	m := moves{ids: ids, idBuf: make([]byte, n*len(ids[0])), ms: make([]Move, n)}
	m.fill(pos, seq, round)
	return m
}

// newRing is newMoves drawn by gen.
func newRing(n int, ids []string, pos [][2]float64, seq []uint64, gen func(m *moves, pos [][2]float64, seq []uint64, round uint64)) moves {
	m := moves{ids: ids, idBuf: make([]byte, n*len(ids[0])), ms: make([]Move, n)}
	gen(&m, pos, seq, 0)
	return m
}

// fill draws the moves of a round: each a random courier's next fix.
func (m *moves) fill(pos [][2]float64, seq []uint64, round uint64) {
	m.fillMessages(1, pos, seq, round)
}

// fillMessages draws the moves of a round in messages of size fixes: a
// random courier's consecutive fixes, each one seq and 5-15 m on.
func (m *moves) fillMessages(size int, pos [][2]float64, seq []uint64, round uint64) {
	rng := newRand(7 + 1000*uint64(size) + round)
	j := 0
	for i := range m.ms {
		if i%size == 0 {
			j = rng.IntN(len(pos))
		}
		step := 5 + 10*rng.Float64()
		dir := rng.Float64() * 6.283185307179586
		pos[j][0] += step * sinCos(dir, true) / 111_195
		pos[j][1] += step * sinCos(dir, false) / 92_700
		seq[j]++
		id := m.idBuf[i*len(m.ids[j]) : (i+1)*len(m.ids[j])]
		copy(id, m.ids[j])
		m.ms[i] = Move{ID: unsafe.String(&id[0], len(id)), Fix: fixAt(seq[j]+1, pos[j][0], pos[j][1])}
	}
}

// BenchmarkUpdate applies position updates on one goroutine, to the live
// index and to the naive reference (naiveIndex) with the same fleet and
// moves: a random courier of 50,000 steps 5-15 m, every fix newer than the
// live one, so every update is applied. livemap calls Update once per fix;
// batch32 hands the same stream to UpdateBatch 32 fixes (32 random
// couriers) at a time; message10 is how fixes arrive over MQTT, one
// courier's message of 10 consecutive fixes (1 s and 5-15 m apart, all
// applied in turn) per UpdateBatch. Each reports per fix: updates/s (wall)
// and cpu-ns/op (the thread's CPU time, steadier on a shared machine).
func BenchmarkUpdate(b *testing.B) {
	recv := t0.Add(time.Hour)
	const ring = 1 << 20
	// run calls apply(ms) for every batch of size moves of a ring that
	// gen draws afresh when used up; it reports the figures per fix.
	run := func(b *testing.B, ids []string, pos [][2]float64, size int, gen func(m *moves, pos [][2]float64, seq []uint64, round uint64),
		apply func(ms []Move) error) {
		seq := make([]uint64, len(pos))
		round := uint64(0)
		m := newRing(ring, ids, pos, seq, gen)
		runtime.GC()
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		b.ReportAllocs()
		b.ResetTimer()
		cpu0 := threadCPU(b)
		var regen time.Duration // CPU spent making moves, not counted
		for i := 0; b.Loop(); i++ {
			j := i & (ring - 1)
			if i > 0 && j == 0 {
				b.StopTimer()
				r0 := threadCPU(b)
				round++
				gen(&m, pos, seq, round) // seqs keep increasing
				regen += threadCPU(b) - r0
				b.StartTimer()
			}
			if (j+1)%size == 0 {
				if err := apply(m.ms[j+1-size : j+1]); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "updates/s")
		b.ReportMetric(float64(threadCPU(b)-cpu0-regen)/float64(b.N), "cpu-ns/op")
	}
	random := func(m *moves, pos [][2]float64, seq []uint64, round uint64) { m.fill(pos, seq, round) }
	messages := func(m *moves, pos [][2]float64, seq []uint64, round uint64) { m.fillMessages(10, pos, seq, round) }
	b.Run("livemap", func(b *testing.B) {
		x, ids, pos := benchIndex(b)
		run(b, ids, pos, 1, random, func(ms []Move) error {
			res, err := x.Update(ms[0].ID, ms[0].Fix, recv)
			if err == nil && !res.Applied {
				err = fmt.Errorf("update of %s seq %d not applied: %+v", ms[0].ID, ms[0].Fix.Seq, res)
			}
			return err
		})
	})
	batch := func(size int, gen func(m *moves, pos [][2]float64, seq []uint64, round uint64)) func(b *testing.B) {
		return func(b *testing.B) {
			x, ids, pos := benchIndex(b)
			var out []MoveResult
			run(b, ids, pos, size, gen, func(ms []Move) error {
				out = x.UpdateBatch(out, ms, recv)
				for i, r := range out {
					if r.Err != nil || !r.Applied {
						return fmt.Errorf("move %d of a batch (%s seq %d) not applied: %+v", i, ms[i].ID, ms[i].Fix.Seq, r)
					}
				}
				return nil
			})
		}
	}
	b.Run("batch32", batch(32, random))
	b.Run("message10", batch(10, messages))
	b.Run("naive", func(b *testing.B) {
		x, ids, pos := benchIndex(b)
		n := newNaive(x)
		run(b, ids, pos, 1, random, func(ms []Move) error {
			return n.update(ms[0].ID, ms[0].Fix)
		})
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
	m := newMoves(1<<20, ids, pos, make([]uint64, len(pos)), 0)
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
			if _, err := x.Update(m.ms[i].ID, m.ms[i].Fix, t0); err != nil {
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
