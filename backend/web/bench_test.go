package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/tawsil/tawsil/backend/internal/livemap"
	"github.com/tawsil/tawsil/shared/wire"
)

// BenchmarkConsoleLiveCouriers measures the dispatcher console in headless
// Chromium with BENCH_COURIERS (10,000) live couriers all moving every
// second: frames per second while the dispatcher pans the map, the time to
// draw a frame, and the update latency from the server publishing a
// couriers.updated event to the frame that shows it. One run, whatever b.N
// (`make bench`, section web; set TAWSIL_BENCH_CONSOLE=1 to run it alone).
func BenchmarkConsoleLiveCouriers(b *testing.B) {
	if os.Getenv("TAWSIL_BENCH_CONSOLE") == "" {
		b.Skip("set TAWSIL_BENCH_CONSOLE=1 (make bench does, in its web section)")
	}
	chromium := os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := exec.LookPath(chromium); err != nil {
		b.Fatalf("chromium: %v", err)
	}
	n := 10_000
	if v := os.Getenv("BENCH_COURIERS"); v != "" {
		if _, err := fmt.Sscan(v, &n); err != nil {
			b.Fatal(err)
		}
	}
	m, base, _ := startApp(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rng := rand.New(rand.NewPCG(1, 2))
	type pos struct{ lat, lng float64 }
	ps := make([]pos, n)
	now := time.Now()
	for i := range ps {
		id := fmt.Sprintf("bench%05d", i)
		ps[i] = pos{33.50 + 0.13*rng.Float64(), -7.72 + 0.25*rng.Float64()}
		if err := m.Index.SetProfile(id, "scooter", 3); err != nil {
			b.Fatal(err)
		}
		m.Index.SetShift(id, true)
		_ = m.Index.SetStatus(id, livemap.StatusAvailable, 0)
		if _, err := m.Index.Update(id, wire.Fix{Seq: 1, Time: now, Lat: ps[i].lat, Lng: ps[i].lng, Accuracy: 5, Battery: 70}, now); err != nil {
			b.Fatal(err)
		}
		m.Index.SetOnline(id, true, now)
	}
	go func() { // every courier moves a few metres every second
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for seq := uint64(2); ; seq++ {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			at := time.Now()
			for i := range ps {
				a := rng.Float64() * 2 * math.Pi
				ps[i].lat += 0.00005 * math.Cos(a)
				ps[i].lng += 0.00005 * math.Sin(a)
				_, _ = m.Index.Update(fmt.Sprintf("bench%05d", i), wire.Fix{Seq: seq, Time: at, Lat: ps[i].lat, Lng: ps[i].lng, Accuracy: 5, Battery: 70}, at)
			}
		}
	}()
	b.ResetTimer()
	cmd := exec.CommandContext(ctx, "node", "bench/console.mjs")
	cmd.Env = append(os.Environ(), "BASE_URL="+base, "CHROMIUM="+chromium, fmt.Sprintf("COURIERS=%d", n))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		b.Fatalf("bench/console.mjs: %v\n%s", err, out)
	}
	var r struct {
		Couriers               int
		FPS                    float64
		DrawP50, DrawP95       float64
		LatencyP50, LatencyP95 float64
		Frames                 int
	}
	line := strings.TrimSpace(string(out))
	if i := strings.LastIndex(line, "\n"); i >= 0 {
		line = line[i+1:]
	}
	if err := json.Unmarshal([]byte(line), &r); err != nil {
		b.Fatalf("%v: %s", err, out)
	}
	b.ReportMetric(float64(r.Couriers), "couriers")
	b.ReportMetric(r.FPS, "fps")
	b.ReportMetric(r.DrawP50, "draw-p50-ms")
	b.ReportMetric(r.DrawP95, "draw-p95-ms")
	b.ReportMetric(r.LatencyP50, "update-p50-ms")
	b.ReportMetric(r.LatencyP95, "update-p95-ms")
}
