package eta

import (
	"math"
	"testing"
	"time"

	"github.com/tawsil/tawsil/shared/wire"
)

// FuzzObserve: fixes come from devices. Whatever they say, Observe never
// panics and never teaches the model a speed outside the plausible range.
func FuzzObserve(f *testing.F) {
	f.Add(33.5892, -7.6325, 33.5894, -7.6325, int64(5000), 5.0, 5.0)
	f.Add(33.5892, -7.6325, 35.0, -5.0, int64(1000), -1.0, 3.0)
	f.Add(0.0, 0.0, math.NaN(), 200.0, int64(-5), 1e9, -1.0)
	f.Fuzz(func(t *testing.T, lat1, lng1, lat2, lng2 float64, dtMs int64, acc1, acc2 float64) {
		m := mustModel(t, func(c *Config) { c.MinSamples = 1 })
		p := wire.Fix{Seq: 1, Time: morning, Lat: lat1, Lng: lng1, Accuracy: acc1, Speed: wire.Unknown, Heading: wire.Unknown, Battery: wire.Unknown}
		q := wire.Fix{Seq: 2, Time: morning.Add(time.Duration(dtMs) * time.Millisecond), Lat: lat2, Lng: lng2, Accuracy: acc2, Speed: wire.Unknown, Heading: wire.Unknown, Battery: wire.Unknown}
		out := m.Observe("c", p, q)
		cells := m.Snapshot().Cells
		if (out == Recorded) != (len(cells) == 1) {
			t.Fatalf("outcome %v but %d cells learned", out, len(cells))
		}
		cfg := m.Config()
		for _, c := range cells {
			if c.Mps < cfg.StoppedMps || c.Mps > cfg.MaxMps {
				t.Fatalf("learned %v m/s from %+v -> %+v", c.Mps, p, q)
			}
		}
	})
}
