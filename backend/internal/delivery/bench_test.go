package delivery

import (
	"io"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"slices"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/tawsil/tawsil/backend/internal/core"
	"github.com/tawsil/tawsil/backend/internal/dispatch"
	"github.com/tawsil/tawsil/backend/internal/eta"
	"github.com/tawsil/tawsil/backend/internal/livemap"
	"github.com/tawsil/tawsil/backend/internal/order"
	"github.com/tawsil/tawsil/shared/wire"
)

// mustFleet returns a service whose live index holds n couriers spread over
// Casablanca, on shift and online; a fifth of them carry an order.
func mustFleet(tb testing.TB, n int) *Service {
	tb.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	model, err := eta.New(eta.Default(), log)
	if err != nil {
		tb.Fatal(err)
	}
	disp, err := dispatch.New(dispatch.Default(), model)
	if err != nil {
		tb.Fatal(err)
	}
	idx := livemap.New()
	rng := rand.New(rand.NewPCG(7, 7))
	now := time.Now()
	for i := 0; i < n; i++ {
		id := "c" + string(rune('a'+i%26)) + itoa(i)
		f := wire.Fix{Seq: 1, Time: now, Lat: 33.45 + rng.Float64()*0.2, Lng: -7.75 + rng.Float64()*0.3, Accuracy: 5, Speed: 4, Heading: 90, Battery: 80}
		if _, err := idx.Update(id, f, now); err != nil {
			tb.Fatal(err)
		}
		idx.SetShift(id, true)
		if err := idx.SetProfile(id, "scooter", 3); err != nil {
			tb.Fatal(err)
		}
		st, load := livemap.StatusAvailable, 0
		if i%5 == 0 {
			st, load = livemap.StatusBusy, 1
		}
		if err := idx.SetStatus(id, st, load); err != nil {
			tb.Fatal(err)
		}
	}
	cfg := DefaultConfig()
	return New(cfg, Deps{Index: idx, ETA: model, Dispatch: disp, Log: log}, NewHub(), nil)
}

func itoa(i int) string {
	b := []byte{}
	for {
		b = append([]byte{byte('0' + i%10)}, b...)
		if i /= 10; i == 0 {
			return string(b)
		}
	}
}

// BenchmarkDispatchDecision measures one order's dispatch decision as the
// service's epoch makes it: candidate search in the live index (50,000
// couriers) and the core's epoch (core.Core.Decide: dispatch.Epoch, route
// insertion) over that order. Reports p50/p99 per decision.
func BenchmarkDispatchDecision(b *testing.B) {
	s := mustFleet(b, 50_000)
	rng := rand.New(rand.NewPCG(1, 2))
	now := time.Now()
	durs := make([]time.Duration, 0, b.N)
	cpus := make([]time.Duration, 0, b.N)
	// On one OS thread, so that its CPU time is the decision's: a wall time
	// far above it is time the thread waited for a core (a loaded machine),
	// not work of the decision.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		pick := dispatch.Point{Lat: 33.50 + rng.Float64()*0.1, Lng: -7.70 + rng.Float64()*0.2}
		st := core.State{Order: &order.Order{ID: "o", Status: order.StatusBooked, Version: 1, BookedAt: now, PromiseBy: now.Add(time.Hour),
			Pickup: order.Place{Lat: pick.Lat, Lng: pick.Lng}, Dropoff: order.Place{Lat: pick.Lat + 0.01, Lng: pick.Lng + 0.01}}}
		cpu0 := threadCPU(b)
		start := time.Now()
		decided, _ := s.core.Decide([]core.State{st}, s.candidates(pick.Lat, pick.Lng, nil), now, nil)
		durs = append(durs, time.Since(start))
		cpus = append(cpus, threadCPU(b)-cpu0)
		if len(decided) == 0 {
			b.Fatal("no candidate in a city of 50,000 couriers")
		}
	}
	b.StopTimer()
	slices.Sort(durs)
	slices.Sort(cpus)
	b.ReportMetric(float64(durs[len(durs)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(durs[len(durs)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(float64(cpus[len(cpus)*99/100].Microseconds()), "cpu-p99-µs")
}

// threadCPU returns the CPU time the calling OS thread has used
// (CLOCK_THREAD_CPUTIME_ID: the scheduler's exact runtime, where
// getrusage's thread times move in ticks).
func threadCPU(tb testing.TB) time.Duration {
	var ts syscall.Timespec
	const clockThreadCPUTimeID = 3
	if _, _, errno := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockThreadCPUTimeID, uintptr(unsafe.Pointer(&ts)), 0); errno != 0 {
		tb.Fatal(errno)
	}
	return time.Duration(ts.Nano())
}
