package mongostore_test

import (
	"cmp"
	"context"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/tawsil/tawsil/backend/internal/account"
	"github.com/tawsil/tawsil/backend/internal/mongostore"
)

var h0 = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

// fixes returns seqs from..to of courier c, epoch ep, one a second.
func fixes(c string, ep, from, to uint64) []mongostore.Position {
	var ps []mongostore.Position
	for s := from; s <= to; s++ {
		t := h0.Add(time.Duration(s) * time.Second)
		ps = append(ps, mongostore.Position{CourierID: c, Epoch: ep, Seq: s, Lat: 33.5 + float64(s)*1e-5, Lng: -7.6 - float64(s)*1e-5,
			AccuracyM: 4.5, SpeedMPS: 8.25, HeadingDeg: 91.5, Battery: 80, T: t, ReceivedAt: t.Add(300 * time.Millisecond), Late: s%7 == 0})
	}
	return ps
}

func seqs(ps []mongostore.Position) []uint64 {
	out := make([]uint64, len(ps))
	for i, p := range ps {
		out[i] = p.Seq
	}
	return out
}

func span(from, to uint64) []uint64 {
	var out []uint64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

// TestFixpackLossless: every field of a stored fix comes back as it was
// given (times at the millisecond, as BSON dates keep them), including
// values the packed scales cannot hold, unknowns, and fixes out of order.
func TestFixpackLossless(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var ps []mongostore.Position
	for i := range 500 {
		p := mongostore.Position{CourierID: "c", Epoch: 1 << 20, Seq: uint64(1000 + i*(1+r.IntN(3))),
			Lat: math.Round((33.5+r.Float64()*0.2)*1e6) / 1e6, Lng: math.Round((-7.7+r.Float64()*0.2)*1e7) / 1e7,
			AccuracyM: math.Round(r.Float64()*500) / 10, SpeedMPS: math.Round(r.Float64()*4000) / 100, HeadingDeg: math.Round(r.Float64()*3599) / 10,
			Battery: r.IntN(102) - 1, T: h0.Add(time.Duration(r.IntN(3_600_000)) * time.Millisecond), Late: r.IntN(4) == 0}
		p.ReceivedAt = p.T.Add(time.Duration(r.IntN(90_000)-1000) * time.Millisecond)
		switch i % 10 {
		case 1:
			p.AccuracyM, p.SpeedMPS, p.HeadingDeg, p.Battery = -1, -1, -1, -1
		case 2: // beyond the packed scales: kept as float64
			p.Lat, p.Lng, p.AccuracyM, p.SpeedMPS, p.HeadingDeg = 33.123456789012, -7.98765432101, 3.14159, 0.001, 359.99
		case 3:
			p.SpeedMPS = math.Inf(1)
		}
		ps = append(ps, p)
	}
	got, err := mongostore.Fixpack(ps)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, ps) {
		for i := range ps {
			if !reflect.DeepEqual(got[i], ps[i]) {
				t.Fatalf("fix %d: got %+v, want %+v", i, got[i], ps[i])
			}
		}
		t.Fatalf("got %d fixes, want %d", len(got), len(ps))
	}
	if n := mongostore.FixpackBytes(fixes("c", 1<<20, 1, 1000)); n > 25*1000 {
		t.Errorf("a fix a second packs into %d bytes per fix, want at most 25", n/1000)
	}
}

// TestFixpackDamaged: a damaged bucket is an error, never a panic.
func TestFixpackDamaged(t *testing.T) {
	good := mongostore.FixpackBytes(fixes("c", 1, 1, 3))
	if good == 0 {
		t.Fatal("empty pack")
	}
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 2000 {
		b := make([]byte, r.IntN(64))
		for k := range b {
			b[k] = byte(r.Uint32())
		}
		if i%2 == 0 {
			for k := range b {
				b[k] |= 0x80 // endless varints
			}
		}
		if _, err := mongostore.DecodeFixpack(b, 1+r.IntN(5)); err == nil && len(b) == 0 {
			t.Fatal("no bytes decoded as fixes")
		}
	}
}

// TestHistoryBucketsExactlyOnce: a batch written again (a retried flush),
// a redelivered batch on another replica, overlapping batches: each fix is
// read once; the same batch again stores nothing.
func TestHistoryBucketsExactlyOnce(t *testing.T) {
	ctx := context.Background()
	a, uri := mustStoreURI(t)
	b := mustOpen(t, uri) // a second replica on the same store: it knows nothing of a's writes

	if n, err := a.InsertPositions(ctx, append(fixes("c1", 7, 1, 40), fixes("c2", 7, 1, 10)...)); err != nil || n != 50 {
		t.Fatalf("first batch = %d, %v", n, err)
	}
	if n, err := b.InsertPositions(ctx, append(fixes("c1", 7, 1, 40), fixes("c2", 7, 1, 10)...)); err != nil || n != 0 {
		t.Fatalf("the same batch on another replica = %d, %v; want 0 (its buckets exist)", n, err)
	}
	// Overlapping re-sends in other groupings: on a, known; on b, stored again
	// and read once.
	if n, err := a.InsertPositions(ctx, fixes("c1", 7, 30, 60)); err != nil || n != 20 {
		t.Fatalf("overlap on the same replica = %d, %v; want the 20 new", n, err)
	}
	if _, err := b.InsertPositions(ctx, fixes("c1", 7, 20, 70)); err != nil {
		t.Fatal(err)
	}
	// Another epoch's seqs are other fixes.
	if _, err := b.InsertPositions(ctx, fixes("c1", 8, 1, 5)); err != nil {
		t.Fatal(err)
	}
	if c, err := a.CountPositions(ctx, "c1"); err != nil || c != 75 {
		t.Fatalf("count c1 = %d, %v; want 70 + 5", c, err)
	}
	if c, err := a.CountPositions(ctx, ""); err != nil || c != 85 {
		t.Fatalf("count all = %d, %v; want 85", c, err)
	}
	track, err := b.Track(ctx, "c1", h0, h0.Add(time.Hour), 1000)
	if err != nil {
		t.Fatal(err)
	}
	// Epoch 8's seqs 1..5 share device times with epoch 7's: ordered by time, then seq.
	if len(track) != 75 {
		t.Fatalf("track = %d fixes, want 75: %v", len(track), seqs(track))
	}
	for i := 1; i < len(track); i++ {
		if track[i].T.Before(track[i-1].T) {
			t.Fatalf("track not in time order at %d: %v", i, seqs(track))
		}
	}
	if got := track[len(track)-1]; got.Seq != 70 || got.Epoch != 7 || !got.T.Equal(h0.Add(70*time.Second)) || got.Lat != 33.5+70*1e-5 {
		t.Fatalf("latest = %+v", got)
	}
	old, buckets, err := a.HistoryDocs(ctx)
	if err != nil || old != 0 || buckets != 5 {
		t.Fatalf("documents: %d old, %d buckets, %v; want 0 and 5", old, buckets, err)
	}
}

// TestHistoryBothShapes: fixes stored one document each (before buckets)
// and in buckets are read together: track windows and limits across both,
// copies collapsed, the late flag (never evidence) kept.
func TestHistoryBothShapes(t *testing.T) {
	ctx := context.Background()
	st := mustStore(t)
	if err := st.InsertOldPositions(ctx, fixes("c1", 0, 1, 30)); err != nil {
		t.Fatal(err)
	}
	// After the upgrade: the agent re-sends 25..30 (stored in the old shape
	// already), then goes on.
	if _, err := st.InsertPositions(ctx, fixes("c1", 0, 25, 50)); err != nil {
		t.Fatal(err)
	}
	if _, err := st.InsertPositions(ctx, fixes("c1", 0, 51, 60)); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		from, to time.Duration
		limit    int
		want     []uint64
	}{
		{"all", 0, time.Hour, 1000, span(1, 60)},
		{"old only", 5 * time.Second, 10 * time.Second, 1000, span(5, 10)},
		{"across", 28 * time.Second, 33 * time.Second, 1000, span(28, 33)},
		{"latest of both", 0, 33 * time.Second, 5, span(29, 33)},
		{"latest", 0, time.Hour, 12, span(49, 60)},
		{"latest in a window", 0, 55 * time.Second, 3, span(53, 55)},
		{"none", 2 * time.Hour, 3 * time.Hour, 10, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := st.Track(ctx, "c1", h0.Add(tt.from), h0.Add(tt.to), tt.limit)
			if err != nil {
				t.Fatal(err)
			}
			if s := seqs(got); !reflect.DeepEqual(s, tt.want) && (len(s) != 0 || len(tt.want) != 0) {
				t.Fatalf("seqs = %v, want %v", s, tt.want)
			}
			for _, p := range got {
				if p.Late != (p.Seq%7 == 0) || p.CourierID != "c1" || p.AccuracyM != 4.5 || p.Battery != 80 {
					t.Fatalf("fix %d came back as %+v", p.Seq, p)
				}
			}
		})
	}
	if c, err := st.CountPositions(ctx, "c1"); err != nil || c != 60 {
		t.Fatalf("count = %d, %v; want 60", c, err)
	}
}

// TestHistoryRetentionAndErasure: the purge deletes what is older than the
// cutoff in both shapes, inside a bucket that straddles it too; erasure
// deletes a courier's whole history, buckets and old documents.
func TestHistoryRetentionAndErasure(t *testing.T) {
	ctx := context.Background()
	st := mustStore(t)
	if err := st.InsertOldPositions(ctx, fixes("c1", 0, 1, 10)); err != nil {
		t.Fatal(err)
	}
	if _, err := st.InsertPositions(ctx, append(fixes("c1", 0, 11, 40), fixes("c2", 5, 1, 40)...)); err != nil {
		t.Fatal(err)
	}
	purged, err := st.PurgePositions(ctx, h0.Add(20500*time.Millisecond))
	if err != nil || purged != 20+20 {
		t.Fatalf("purge = %d, %v; want 40 (10 old + 10 of c1's bucket + 20 of c2's)", purged, err)
	}
	for c, want := range map[string][]uint64{"c1": span(21, 40), "c2": span(21, 40)} {
		got, err := st.Track(ctx, c, h0, h0.Add(time.Hour), 1000)
		if err != nil || !reflect.DeepEqual(seqs(got), want) {
			t.Fatalf("%s after purge = %v, %v; want %v", c, seqs(got), err, want)
		}
	}
	if n, err := st.PurgePositions(ctx, h0.Add(20500*time.Millisecond)); err != nil || n != 0 {
		t.Fatalf("second purge = %d, %v", n, err)
	}

	u := account.User{Email: "c1@tawsil.ma", Name: "C1", Role: "courier", CourierID: "c1", CreatedAt: time.Now()}
	if err := st.CreateUser(ctx, &u); err != nil {
		t.Fatal(err)
	}
	if err := st.InsertOldPositions(ctx, fixes("c1", 0, 41, 42)); err != nil {
		t.Fatal(err)
	}
	if err := st.EraseUser(ctx, u.ID, "erased-1"); err != nil {
		t.Fatal(err)
	}
	if c, err := st.CountPositions(ctx, "c1"); err != nil || c != 0 {
		t.Fatalf("c1 after erasure: %d fixes, %v", c, err)
	}
	if c, err := st.CountPositions(ctx, "c2"); err != nil || c != 20 {
		t.Fatalf("c2 after c1's erasure: %d fixes, %v", c, err)
	}
	// What the erased courier's device re-sends is written again (the memory
	// of recent writes went with the history), not taken as stored.
	if n, err := st.InsertPositions(ctx, fixes("c1", 0, 30, 31)); err != nil || n != 2 {
		t.Fatalf("after erasure = %d, %v", n, err)
	}
}

// TestHistoryCompaction: a courier at one fix a second gets a bucket per
// flush; compaction merges the old small ones, reads are the same before
// and after, and a second replica compacting next finds nothing to redo.
func TestHistoryCompaction(t *testing.T) {
	ctx := context.Background()
	a, uri := mustStoreURI(t)
	b := mustOpen(t, uri)
	for s := uint64(1); s <= 30; s++ {
		if _, err := a.InsertPositions(ctx, append(fixes("c1", 3, s, s), fixes("c2", 3, s, s)...)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.InsertPositions(ctx, fixes("c1", 3, 31, 200)); err != nil { // a big one: left alone
		t.Fatal(err)
	}
	before, err := a.Track(ctx, "c1", h0, h0.Add(time.Hour), 1000)
	if err != nil || len(before) != 200 {
		t.Fatalf("track before = %d, %v", len(before), err)
	}
	// Only buckets entirely before the horizon: c1's and c2's first 20.
	n, err := a.CompactPositions(ctx, h0.Add(20500*time.Millisecond), 10_000)
	if err != nil || n != 40 {
		t.Fatalf("compacted %d, %v; want 40", n, err)
	}
	// The other replica, with the same view (as if a's delete had not run):
	// its merged buckets are a's, the small ones are gone already.
	if n, err := b.CompactPositions(ctx, h0.Add(20500*time.Millisecond), 10_000); err != nil || n != 0 {
		t.Fatalf("second replica compacted %d, %v", n, err)
	}
	after, err := b.Track(ctx, "c1", h0, h0.Add(time.Hour), 1000)
	if err != nil || !reflect.DeepEqual(after, before) {
		t.Fatalf("track after compaction differs: %d fixes, %v", len(after), err)
	}
	if c, err := b.CountPositions(ctx, ""); err != nil || c != 230 {
		t.Fatalf("count = %d, %v; want 230", c, err)
	}
	// 20 + 20 small buckets became one each; 10 + 10 small and the big one stay.
	if _, buckets, err := a.HistoryDocs(ctx); err != nil || buckets != 2+20+1 {
		t.Fatalf("buckets = %d, %v; want 23", buckets, err)
	}
	// Everything old: the merged small bucket (20 fixes) merges again with the rest.
	if n, err := a.CompactPositions(ctx, h0.Add(time.Hour), 10_000); err != nil || n != 22 {
		t.Fatalf("second compaction = %d, %v; want 22 (c1 and c2: 1 merged + 10 small each)", n, err)
	}
	if c, err := b.CountPositions(ctx, "c2"); err != nil || c != 30 {
		t.Fatalf("count c2 = %d, %v", c, err)
	}
}

// TestTrackMatchesBruteForce: over buckets whose device times overlap (late
// fixes, re-sends in other groupings, copies), every window and limit gives
// what sorting all the fixes would: the latest limit in the window, each
// once, oldest first.
func TestTrackMatchesBruteForce(t *testing.T) {
	ctx := context.Background()
	st := mustStore(t)
	r := rand.New(rand.NewPCG(5, 6))
	all := map[uint64]mongostore.Position{}
	for range 40 {
		from := uint64(1 + r.IntN(300))
		batch := fixes("c1", 9, from, from+uint64(r.IntN(12)))
		for i := range batch { // device times jitter: buckets overlap in time
			batch[i].T = h0.Add(time.Duration(batch[i].Seq)*time.Second + time.Duration(r.IntN(20_000)-10_000)*time.Millisecond)
			if p, ok := all[batch[i].Seq]; ok {
				batch[i].T = p.T // a copy is the same fix
			}
			all[batch[i].Seq] = batch[i]
		}
		if _, err := st.InsertPositions(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	var sorted []mongostore.Position
	for _, p := range all {
		sorted = append(sorted, p)
	}
	slices.SortFunc(sorted, func(a, b mongostore.Position) int { return cmp.Or(a.T.Compare(b.T), cmp.Compare(a.Seq, b.Seq)) })
	for range 60 {
		from := h0.Add(time.Duration(r.IntN(320)) * time.Second)
		to := from.Add(time.Duration(r.IntN(200)) * time.Second)
		limit := 1 + r.IntN(40)
		var want []uint64
		for _, p := range sorted {
			if !p.T.Before(from) && !p.T.After(to) {
				want = append(want, p.Seq)
			}
		}
		want = want[max(0, len(want)-limit):]
		got, err := st.Track(ctx, "c1", from, to, limit)
		if err != nil {
			t.Fatal(err)
		}
		if s := seqs(got); !slices.Equal(s, want) {
			t.Fatalf("track [%s, %s] limit %d = %v, want %v", from.Format(time.TimeOnly), to.Format(time.TimeOnly), limit, s, want)
		}
	}
}
