package demo

import (
	"github.com/tawsil/tawsil/backend/internal/geo"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/tawsil/tawsil/shared/wire"
)

func TestMoveToDrivesAtSpeed(t *testing.T) {
	p := &Publisher{pos: map[string]wire.Fix{}, targets: map[string]target{}}
	p.Set("c1", 33.5731, -7.5898, 0, 0)
	arrived := p.MoveTo("c1", 33.5731+1000.0/111_320, -7.5898, 10) // 1 km north at 10 m/s
	for i := 1; i <= 99; i++ {
		p.step(1)
		lat, lng, _ := p.Get("c1")
		if d := geo.DistanceLatLngM(33.5731, -7.5898, lat, lng); math.Abs(d-float64(10*i)) > 0.5 {
			t.Fatalf("after %d s: %.1f m from the start, want %d", i, d, 10*i)
		}
		if h := p.pos["c1"].Heading; h > 0.1 && h < 359.9 {
			t.Fatalf("heading %.1f, want north", h)
		}
		select {
		case <-arrived:
			t.Fatalf("arrived after %d s of 100", i)
		default:
		}
	}
	p.step(1)
	select {
	case <-arrived:
	default:
		t.Fatal("not arrived after 100 s")
	}
	if f := p.pos["c1"]; f.Speed != 0 {
		t.Errorf("speed %.1f once there", f.Speed)
	}
	// A new target replaces the old one, whose waiter is released.
	first := p.MoveTo("c1", 33.6, -7.6, 8)
	second := p.MoveTo("c1", 33.5, -7.5, 8)
	select {
	case <-first:
	default:
		t.Error("the replaced target's waiter is not released")
	}
	p.Set("c1", 33.5, -7.5, 0, 0)
	select {
	case <-second:
	default:
		t.Error("Set does not release the waiter")
	}
}

func TestBusynessAndFailures(t *testing.T) {
	for h := 0; h < 24; h++ {
		if b := busyness(h); b <= 0 || b > 1 {
			t.Errorf("busyness(%d) = %v", h, b)
		}
	}
	if busyness(12) <= busyness(3) || busyness(20) <= busyness(3) {
		t.Error("lunch and evening should be busier than the night")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	counts := map[string]int{}
	for range 10000 {
		counts[pickFailure(rng).reason]++
	}
	if counts["CUSTOMER_UNAVAILABLE"] < 5000 || counts["CUSTOMER_UNAVAILABLE"] > 6000 || len(counts) != len(failures) {
		t.Errorf("failure reasons drawn: %v", counts)
	}
	for range 1000 {
		lat, lng := jitter(rng, 33.57, -7.59, 500)
		if d := geo.DistanceLatLngM(33.57, -7.59, lat, lng); d > 501 {
			t.Fatalf("jitter went %.0f m away", d)
		}
	}
}
