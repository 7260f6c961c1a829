package mongostore_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/tawsil/tawsil/backend/internal/embedded/docstore"
	"github.com/tawsil/tawsil/backend/internal/mongostore"
	"github.com/tawsil/tawsil/backend/internal/order"
)

// BenchmarkCommit measures order changes claimed through the store
// (mongostore.Commit: the event insert under the unique index, then the
// order document), from 8 concurrent writers on distinct orders. Embedded
// FerretDB on SQLite; set TAWSIL_BENCH_PG_URL for the PostgreSQL handler.
func BenchmarkCommit(b *testing.B) {
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError}))
	opts := docstore.Options{DataDir: b.TempDir(), Logger: quiet}
	if pg := os.Getenv("TAWSIL_BENCH_PG_URL"); pg != "" {
		opts = docstore.Options{Handler: "postgresql", PGURL: pg, Logger: quiet}
	}
	srv, err := docstore.Start(ctx, opts)
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	st, err := mongostore.Open(ctx, srv.URI(), fmt.Sprintf("bench_%d", b.N), quiet)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = st.Close(ctx) }()
	const writers = 8
	orders := make([]mongostore.StoredOrder, writers)
	for i := range orders {
		orders[i] = mustBooked(b, st, fmt.Sprintf("bench-%d-%d", b.N, i))
	}
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cur := orders[w]
			for i := w; i < b.N; i += writers {
				next := cur.Clone()
				next.Version++
				next.Flags.AtRisk = !next.Flags.AtRisk
				ev := order.Event{OrderID: next.ID, From: next.Status, To: next.Status, Action: "at_risk", At: t0, Version: next.Version}
				if err := st.Commit(ctx, next, ev); err != nil {
					b.Error(err)
					return
				}
				cur = next
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "transitions/s")
}

// BenchmarkInsertPositions measures history flushes of 50 couriers' fixes
// (4,000 and 16,000 fixes: 80 and 320 a courier) written as buckets, from 4
// concurrent writers as the history writer runs them. Embedded FerretDB on
// SQLite; set TAWSIL_BENCH_PG_URL for the PostgreSQL handler.
func BenchmarkInsertPositions(b *testing.B) {
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError}))
	opts := docstore.Options{DataDir: b.TempDir(), Logger: quiet}
	if pg := os.Getenv("TAWSIL_BENCH_PG_URL"); pg != "" {
		opts = docstore.Options{Handler: "postgresql", PGURL: pg, Logger: quiet}
	}
	srv, err := docstore.Start(ctx, opts)
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	st, err := mongostore.Open(ctx, srv.URI(), fmt.Sprintf("bench_pos_%d", b.N), quiet)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = st.Close(ctx) }()
	const writers, couriers = 4, 50
	for _, per := range []int{80, 320} {
		b.Run(fmt.Sprintf("batch=%d", couriers*per), func(b *testing.B) {
			batches := make([][]mongostore.Position, b.N)
			for i := range batches {
				for c := range couriers {
					batches[i] = append(batches[i], fixes(fmt.Sprintf("c%d-%d", per, c), 1<<20, uint64(i*per+1), uint64(i*per+per))...)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			var wg sync.WaitGroup
			for w := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := w; i < b.N; i += writers {
						if _, err := st.InsertPositions(ctx, batches[i]); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(b.N*couriers*per)/b.Elapsed().Seconds(), "fixes/s")
		})
	}
}

// BenchmarkTrack reads a courier's whole track of 20,000 fixes (5.5 hours
// at one fix a second), as the fleet-usage KPI and the data export do, from
// one document per fix (before history buckets) and from buckets as the
// history writer and compaction leave them (up to 1,000 fixes each).
// Embedded FerretDB on SQLite; set TAWSIL_BENCH_PG_URL for PostgreSQL.
func BenchmarkTrack(b *testing.B) {
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError}))
	opts := docstore.Options{DataDir: b.TempDir(), Logger: quiet}
	if pg := os.Getenv("TAWSIL_BENCH_PG_URL"); pg != "" {
		opts = docstore.Options{Handler: "postgresql", PGURL: pg, Logger: quiet}
	}
	srv, err := docstore.Start(ctx, opts)
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	// Each shape in its own database: a database of the old shape has only it.
	stores := map[string]*mongostore.Store{}
	for _, shape := range []string{"old", "new"} {
		st, err := mongostore.Open(ctx, srv.URI(), fmt.Sprintf("bench_track_%s_%d", shape, b.N), quiet)
		if err != nil {
			b.Fatal(err)
		}
		defer func() { _ = st.Close(ctx) }()
		stores[shape] = st
	}
	const n = 20_000
	for k := uint64(0); k < n; k += 2000 {
		if err := stores["old"].InsertOldPositions(ctx, fixes("c", 0, k+1, k+2000)); err != nil {
			b.Fatal(err)
		}
		if _, err := stores["new"].InsertPositions(ctx, fixes("c", 0, k+1, k+2000)); err != nil {
			b.Fatal(err)
		}
	}
	for _, shape := range []string{"old", "new"} {
		b.Run(map[string]string{"old": "one-doc-per-fix", "new": "buckets"}[shape], func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				ps, err := stores[shape].Track(ctx, "c", h0, h0.Add(24*time.Hour), 200_000)
				if err != nil || len(ps) != n {
					b.Fatalf("track = %d, %v", len(ps), err)
				}
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "fixes/s")
		})
	}
}
