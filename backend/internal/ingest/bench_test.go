package ingest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/tawsil/tawsil/backend/internal/livemap"
	"github.com/tawsil/tawsil/backend/internal/metrics"
	"github.com/tawsil/tawsil/backend/internal/mongostore"
	"github.com/tawsil/tawsil/shared/topic"
	"github.com/tawsil/tawsil/shared/wire"
)

// discardStore takes every write at once.
type discardStore struct{}

func (discardStore) InsertPositions(_ context.Context, ps []mongostore.Position) (int, error) {
	return len(ps), nil
}

// BenchmarkStage measures the ingest path of one position message (10
// fixes, the e2e bench's traffic: 50 couriers publishing in turn) through
// StageNotify into the history writer, up to its durable callback, over a
// store that takes every write at once: decode, checks, live index, the
// history queue and its flush, without MQTT or a database. cpu-ns/fix is
// the figure to compare.
func BenchmarkStage(b *testing.B) {
	const couriers, batch = 50, 10
	m := metrics.New(func() float64 { return 0 })
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	h := NewHistory(discardStore{}, 100*time.Millisecond, 200_000, quiet, m)
	defer func() { _ = h.Close(context.Background()) }()
	index := livemap.New()
	p := New(topic.DefaultPrefix, Policy{MaxAge: 48 * time.Hour, MaxFuture: 2 * time.Minute, MaxAccuracyM: 100, MaxSpeedMPS: 50},
		index, h, nil, quiet, m)
	topics := make([]string, couriers)
	for i := range topics {
		id := fmt.Sprintf("c%02d", i)
		topics[i] = topic.Courier(topic.DefaultPrefix, id, topic.Pos)
		index.SetShift(id, true)
	}
	// Payloads made ahead, a lap of perCourier messages per courier at a
	// time: a track moving 1 m a fix, 100 ms apart, sequence numbers going on.
	start := time.Now().Add(-40 * time.Hour)
	const perCourier = 256
	payloads := make([][][]byte, couriers)
	lap := func(c, l int) {
		payloads[c] = make([][]byte, perCourier)
		for k := range perCourier {
			fixes := make([]wire.Fix, batch)
			for j := range fixes {
				n := (l*perCourier+k)*batch + j
				step := n % 40000 // back and forth over 20,000 m
				if step >= 20000 {
					step = 40000 - step
				}
				fixes[j] = wire.Fix{Seq: uint64(n + 1), Time: start.Add(time.Duration(n) * 100 * time.Millisecond).Truncate(time.Millisecond),
					Lat: 33.55 + float64(c)*0.001 + float64(step)*0.000009, Lng: -7.6, Accuracy: 5, Speed: 8, Heading: 90, Battery: 80}
			}
			pl, err := wire.EncodeBatch(nil, fixes)
			if err != nil {
				b.Fatal(err)
			}
			payloads[c][k] = pl
		}
	}
	for c := range couriers {
		lap(c, 0)
	}
	var wg sync.WaitGroup
	done := func(err error) {
		if err != nil {
			b.Error(err)
		}
		wg.Done()
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		c, k := i%couriers, (i/couriers)%perCourier
		if k == 0 && i >= couriers {
			b.StopTimer()
			lap(c, i/couriers/perCourier)
			b.StartTimer()
		}
		wg.Add(1)
		if err := p.StageNotify(ctx, topics[c], payloads[c][k], false, done); err != nil {
			b.Fatal(err)
		}
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/fix")
}
