package ingest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tawsil/tawsil/backend/internal/geo"
	"github.com/tawsil/tawsil/backend/internal/livemap"
	"github.com/tawsil/tawsil/backend/internal/metrics"
	"github.com/tawsil/tawsil/backend/internal/mongostore"
	"github.com/tawsil/tawsil/shared/topic"
	"github.com/tawsil/tawsil/shared/wire"
)

type posKey struct {
	courier    string
	epoch, seq uint64
}

// memStore is a HistoryStore that deduplicates on (courier, epoch, seq)
// like the unique index of the real one.
type memStore struct {
	mu     sync.Mutex
	stored map[posKey]mongostore.Position
	dups   int
}

func (m *memStore) InsertPositions(_ context.Context, ps []mongostore.Position) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, p := range ps {
		k := posKey{p.CourierID, p.Epoch, p.Seq}
		if _, ok := m.stored[k]; ok {
			m.dups++
			continue
		}
		m.stored[k] = p
		n++
	}
	return n, nil
}

func (m *memStore) get(courier string, epoch, seq uint64) (mongostore.Position, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.stored[posKey{courier, epoch, seq}]
	return p, ok
}

func (m *memStore) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.stored)
}

type rig struct {
	p     *Pipeline
	index *livemap.Index
	store *memStore
	m     *metrics.Metrics
	now   time.Time
	logs  *strings.Builder
}

func newRig(t *testing.T) *rig {
	t.Helper()
	r := &rig{index: livemap.New(), store: &memStore{stored: map[posKey]mongostore.Position{}},
		m: metrics.New(func() float64 { return 0 }), now: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC), logs: &strings.Builder{}}
	log := slog.New(slog.NewTextHandler(&lockedWriter{w: r.logs}, nil))
	h := NewHistory(r.store, time.Millisecond, 10000, slog.New(slog.NewTextHandler(io.Discard, nil)), r.m)
	t.Cleanup(func() { _ = h.Close(context.Background()) })
	r.p = New(topic.DefaultPrefix, Policy{MaxAge: 48 * time.Hour, MaxFuture: 2 * time.Minute, MaxAccuracyM: 100, MaxSpeedMPS: 50},
		r.index, h, nil, log, r.m)
	r.p.now = func() time.Time { return r.now }
	r.index.SetShift("c1", true)
	return r
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func fixAt(epoch, seq uint64, t time.Time, lat, lng float64) wire.Fix {
	return wire.Fix{Epoch: epoch, Seq: seq, Time: t, Lat: lat, Lng: lng, Accuracy: 5, Speed: wire.Unknown, Heading: wire.Unknown, Battery: wire.Unknown}
}

// send publishes fixes as one pos message (or an OwnTracks one) and waits
// until it is durable.
func (r *rig) send(t *testing.T, fixes ...wire.Fix) {
	t.Helper()
	payload, err := wire.EncodeBatch(nil, fixes)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.p.HandleMQTT(t.Context(), topic.Courier(topic.DefaultPrefix, "c1", topic.Pos), payload, false); err != nil && err.Error() != "message dropped" {
		t.Fatal(err)
	}
}

func (r *rig) live(t *testing.T) wire.Fix {
	t.Helper()
	c, ok := r.index.Get("c1")
	if !ok || !c.HasFix {
		t.Fatal("no live fix")
	}
	return c.Fix
}

func (r *rig) rejected(reason string) float64 {
	return testutil.ToFloat64(r.m.IngestRejections.WithLabelValues(reason))
}

const (
	ep1 = wire.MinDeviceEpoch + 100
	ep2 = wire.MinDeviceEpoch + 200
	// Casablanca; 0.0001° of latitude is about 11 m.
	lat0, lng0 = 33.5731, -7.5898
)

// A run of fixes walking north at ~5.5 m/s, one per second.
func walk(epoch, seq0 uint64, t0 time.Time, lat float64, n int) []wire.Fix {
	out := make([]wire.Fix, n)
	for i := range out {
		out[i] = fixAt(epoch, seq0+uint64(i), t0.Add(time.Duration(i)*time.Second), lat+float64(i)*0.00005, lng0)
	}
	return out
}

// TestOneRefusedOutlier: a 30 km outlier is refused and counted once; the
// next true fix moves the courier on.
func TestOneRefusedOutlier(t *testing.T) {
	r := newRig(t)
	t0 := r.now.Add(-time.Minute)
	r.send(t, walk(ep1, 1, t0, lat0, 5)...)
	r.send(t, fixAt(ep1, 6, t0.Add(5*time.Second), lat0+0.27, lng0)) // ~30 km north
	r.send(t, walk(ep1, 7, t0.Add(6*time.Second), lat0+0.0003, 5)...)
	if got := r.live(t); got.Seq != 11 {
		t.Fatalf("live seq %d, want 11", got.Seq)
	}
	if n := r.rejected(RejectSpeed); n != 1 {
		t.Fatalf("impossible_speed %v, want 1", n)
	}
	if n := r.store.count(); n != 10 {
		t.Fatalf("stored %d, want the 10 true fixes", n)
	}
}

// TestAcceptedOutlierDoesNotLockOut: the first fix after a long silence is
// accepted whatever it says; when it was an outlier, the true fixes after
// it re-anchor the courier after ReanchorFixes, and all of them are stored.
// (Before: every true fix refused for distance/50 s.)
func TestAcceptedOutlierDoesNotLockOut(t *testing.T) {
	r := newRig(t)
	t0 := r.now.Add(-time.Minute)
	r.send(t, fixAt(ep1, 1, t0, lat0+0.27, lng0)) // the outlier comes first
	for i, f := range walk(ep1, 2, t0.Add(time.Second), lat0, 6) {
		r.send(t, f)
		if i == 1 && r.live(t).Seq != 1 {
			t.Fatalf("re-anchored after %d fixes", i+1)
		}
	}
	if got := r.live(t); got.Seq != 7 {
		t.Fatalf("live seq %d, want 7 (locked out)", got.Seq)
	}
	if n := r.store.count(); n != 7 {
		t.Fatalf("stored %d, want 7", n)
	}
	if n, m := r.rejected(RejectSpeed), testutil.ToFloat64(r.m.IngestFixes.WithLabelValues("reanchored")); n != 3 || m != 3 {
		t.Fatalf("impossible_speed %v, reanchored %v; want 3, 3", n, m)
	}
	for s := uint64(2); s <= 7; s++ {
		p, _ := r.store.get("c1", ep1, s)
		if want := s <= 4; p.Late != want {
			t.Fatalf("seq %d late = %v, want %v (re-anchored fixes are never evidence)", s, p.Late, want)
		}
	}
	if got := strings.Count(r.logs.String(), "re-anchored"); got != 1 {
		t.Fatalf("re-anchoring logged %d times, want once:\n%s", got, r.logs.String())
	}
}

// TestRestartElsewhere: the agent comes back 3 km away with a new epoch
// (a fresh outbox counts from 1 again): its fixes are neither duplicates
// nor refused for speed.
func TestRestartElsewhere(t *testing.T) {
	r := newRig(t)
	t0 := r.now.Add(-time.Minute)
	r.send(t, walk(ep1, 1, t0, lat0, 10)...)
	r.send(t, walk(ep2, 1, t0.Add(15*time.Second), lat0+0.027, 10)...) // 3 km north, 5 s later
	if got := r.live(t); got.Epoch != ep2 || got.Seq != 10 {
		t.Fatalf("live %d/%d, want %d/10", got.Epoch, got.Seq, ep2)
	}
	if n := r.store.count(); n != 20 {
		t.Fatalf("stored %d, want 20", n)
	}
	// A late re-send of the old epoch is a duplicate, and stays behind.
	r.send(t, walk(ep1, 8, t0.Add(7*time.Second), lat0+0.00035, 3)...)
	if n := r.store.count(); n != 20 || r.store.dups != 3 {
		t.Fatalf("stored %d (dups %d), want 20 (3)", n, r.store.dups)
	}
	if got := r.live(t); got.Epoch != ep2 {
		t.Fatal("old epoch moved the live position back")
	}
}

// TestFutureBuysNoDistance: a fix dated two minutes ahead may not jump
// 6 km from a fix of a second ago.
func TestFutureBuysNoDistance(t *testing.T) {
	r := newRig(t)
	r.send(t, fixAt(ep1, 1, r.now.Add(-time.Second), lat0, lng0))
	r.send(t, fixAt(ep1, 2, r.now.Add(2*time.Minute-time.Second), lat0+0.054, lng0)) // ~6 km
	if got := r.live(t); got.Seq != 1 {
		t.Fatalf("future-dated 6 km jump accepted (live seq %d)", got.Seq)
	}
}

// TestOwnTracksDoesNotShadow: OwnTracks numbers fixes by timestamp
// (~1.8e9); in its own epoch it no longer hides the agent's fixes.
func TestOwnTracksDoesNotShadow(t *testing.T) {
	r := newRig(t)
	t0 := r.now.Add(-time.Minute)
	ot := []byte(`{"_type":"location","lat":33.5731,"lon":-7.5898,"tst":` + strconv.FormatInt(t0.Unix(), 10) + `,"acc":5}`)
	if err := r.p.HandleMQTT(t.Context(), topic.OwnTracksTopic("c1", "phone"), ot, false); err != nil {
		t.Fatal(err)
	}
	r.send(t, walk(ep1, 1, t0.Add(time.Second), lat0, 5)...)
	if got := r.live(t); got.Epoch != ep1 || got.Seq != 5 {
		t.Fatalf("live %d/%d after the agent's fixes, want %d/5", got.Epoch, got.Seq, ep1)
	}
	if n := r.store.count(); n != 6 {
		t.Fatalf("stored %d, want 6", n)
	}
}

// TestLowSequenceIsLate (issue 14, item 3): fixes numbered below the live
// one skip the speed check (they never move the live position) and so are
// stored as late, which keeps them out of failed-delivery evidence.
func TestLowSequenceIsLate(t *testing.T) {
	r := newRig(t)
	t0 := r.now.Add(-time.Minute)
	r.send(t, walk(ep1, 100, t0, lat0, 5)...)
	door := r.now.Add(-2 * time.Second)
	var forged []wire.Fix
	for i := 0; i < 5; i++ {
		forged = append(forged, fixAt(ep1, uint64(10+i), door.Add(time.Duration(i)*time.Millisecond), lat0+0.018, lng0)) // 2 km away
	}
	r.send(t, forged...)
	for _, f := range forged {
		p, ok := r.store.get("c1", ep1, f.Seq)
		if !ok || !p.Late {
			t.Fatalf("forged fix seq %d stored=%v late=%v, want stored as late", f.Seq, ok, p.Late)
		}
	}
	if p, _ := r.store.get("c1", ep1, 104); p.Late {
		t.Fatal("an on-time fix was marked late")
	}
}

// TestAcksCoverHandledFixes: every fix of a message, stored or refused, is
// acknowledged once durable; one acknowledgement per interval per courier.
func TestAcksCoverHandledFixes(t *testing.T) {
	r := newRig(t)
	var mu sync.Mutex
	var sent []wire.Ack
	acks := NewAcks(topic.DefaultPrefix, 5*time.Second, func(_ context.Context, tp string, p []byte) error {
		if tp != topic.Courier(topic.DefaultPrefix, "c1", topic.Ack) {
			t.Errorf("ack on %s", tp)
		}
		a, err := wire.DecodeAck(p)
		if err != nil {
			t.Error(err)
		}
		mu.Lock()
		sent = append(sent, a)
		mu.Unlock()
		return nil
	}, slog.New(slog.DiscardHandler), r.m)
	acks.now = func() time.Time { return r.now }
	r.p.SetAcks(acks)
	t0 := r.now.Add(-time.Minute)
	r.send(t, walk(ep1, 1, t0, lat0, 5)...)
	bad := fixAt(ep1, 6, t0.Add(5*time.Second), lat0, lng0)
	bad.Accuracy = 500 // refused: still handled for good
	r.send(t, bad)
	r.send(t, walk(ep1, 8, t0.Add(7*time.Second), lat0, 3)...)
	acks.flush(t.Context())
	r.send(t, walk(ep1, 11, t0.Add(10*time.Second), lat0+0.0002, 2)...)
	acks.flush(t.Context()) // within the interval: nothing
	mu.Lock()
	if len(sent) != 1 || len(sent[0].Ranges) != 2 || sent[0].Ranges[0] != (wire.SeqRange{From: 1, To: 6}) || sent[0].Ranges[1] != (wire.SeqRange{From: 8, To: 10}) {
		t.Fatalf("acks %+v, want one with 1..6 and 8..10", sent)
	}
	mu.Unlock()
	r.now = r.now.Add(5 * time.Second)
	acks.flush(t.Context())
	mu.Lock()
	defer mu.Unlock()
	if len(sent) != 2 || sent[1].Epoch != ep1 || len(sent[1].Ranges) != 1 || sent[1].Ranges[0] != (wire.SeqRange{From: 11, To: 12}) {
		t.Fatalf("acks %+v, want a second one with 11..12", sent)
	}
	if b := testutil.ToFloat64(r.m.StorageAckBytes); b <= 0 {
		t.Fatal("ack bytes not counted")
	}
}

// TestLiveThenStoreNotLate: with a plain subscription for the live index
// beside the shared one that stores, the storing path sees fixes the live
// index already has; they keep the verdict of their first pass (on time),
// not "late".
func TestLiveThenStoreNotLate(t *testing.T) {
	r := newRig(t)
	fixes := walk(ep1, 1, r.now.Add(-time.Minute), lat0, 5)
	payload, err := wire.EncodeBatch(nil, fixes)
	if err != nil {
		t.Fatal(err)
	}
	tp := topic.Courier(topic.DefaultPrefix, "c1", topic.Pos)
	if err := r.p.LiveOnly().HandleMQTT(t.Context(), tp, payload, false); err != nil {
		t.Fatal(err)
	}
	if err := r.p.HandleMQTT(t.Context(), tp, payload, false); err != nil {
		t.Fatal(err)
	}
	for _, f := range fixes {
		if p, ok := r.store.get("c1", ep1, f.Seq); !ok || p.Late {
			t.Fatalf("seq %d stored=%v late=%v: want stored on time", f.Seq, ok, p.Late)
		}
	}
}

// TestReanchorOnLivePathStored: when the live path re-anchors a courier, the
// run's fixes the storing path passed over as suspects are stored with the
// storing path's next message.
func TestReanchorOnLivePathStored(t *testing.T) {
	r := newRig(t)
	t0 := r.now.Add(-time.Minute)
	tp := topic.Courier(topic.DefaultPrefix, "c1", topic.Pos)
	both := func(fs ...wire.Fix) {
		payload, err := wire.EncodeBatch(nil, fs)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.p.LiveOnly().HandleMQTT(t.Context(), tp, payload, false); err != nil && err.Error() != "message dropped" {
			t.Fatal(err)
		}
		if err := r.p.HandleMQTT(t.Context(), tp, payload, false); err != nil && err.Error() != "message dropped" {
			t.Fatal(err)
		}
	}
	both(walk(ep1, 1, t0, lat0, 3)...)
	for _, f := range walk(ep2, 1, t0.Add(5*time.Second), lat0+0.027, 4) { // 3 km away, one per message
		both(f)
	}
	for s := uint64(1); s <= 4; s++ {
		if _, ok := r.store.get("c1", ep2, s); !ok {
			t.Fatalf("epoch 2 seq %d not stored", s)
		}
	}
}

// Refusals are counted one by one and logged at most once per reason every
// 10 s, with how many there were: a device cannot grow the log at will.
func TestRefusalsLoggedRateLimited(t *testing.T) {
	r := newRig(t)
	old := r.now.Add(-72 * time.Hour) // beyond MaxAge: refused as too old
	for i := range 50 {
		r.send(t, fixAt(ep1, uint64(i+1), old, lat0, lng0))
	}
	if got := r.rejected(RejectTooOld); got != 50 {
		t.Fatalf("counted %v refusals, want 50", got)
	}
	lines := func() int { return strings.Count(r.logs.String(), `msg="fixes refused"`) }
	if n := lines(); n != 1 || !strings.Contains(r.logs.String(), "reason="+RejectTooOld) {
		t.Fatalf("%d refusal lines for 50 refusals in a burst, want 1:\n%s", n, r.logs.String())
	}
	r.now = r.now.Add(11 * time.Second)
	r.send(t, fixAt(ep1, 60, old, lat0, lng0))
	if n := lines(); n != 2 || !strings.Contains(r.logs.String(), "count=50") {
		t.Fatalf("after 10 s the next line carries the held count: %d lines\n%s", n, r.logs.String())
	}
}

// TestMessageAppliedAsOneBatch: a message's fixes reach the index in one
// UpdateBatch, with the verdicts of one Update per fix: a late fix in a
// message is counted out of order and stored late, the others move
// the courier in turn and each is told to the fix observer with the fix
// before it.
func TestMessageAppliedAsOneBatch(t *testing.T) {
	r := newRig(t)
	var seen []string
	r.p.onFix = func(id string, prev wire.Fix, hadPrev bool, f wire.Fix) {
		seen = append(seen, fmt.Sprintf("%d->%d %v", prev.Seq, f.Seq, hadPrev))
	}
	t0 := r.now.Add(-time.Minute)
	w := walk(ep1, 1, t0, lat0, 5)
	r.send(t, w[0], w[2])
	r.send(t, w[1], w[3], w[4]) // seq 2 is late: 3 is live
	if got := r.live(t); got.Seq != 5 {
		t.Fatalf("live seq %d, want 5", got.Seq)
	}
	if want := []string{"0->1 false", "1->3 true", "3->4 true", "4->5 true"}; !slices.Equal(seen, want) {
		t.Fatalf("fix observer saw %q, want %q", seen, want)
	}
	if a, o := testutil.ToFloat64(r.m.IngestFixes.WithLabelValues("accepted")), testutil.ToFloat64(r.m.IngestFixes.WithLabelValues("out_of_order")); a != 4 || o != 1 {
		t.Fatalf("accepted %v, out of order %v; want 4, 1", a, o)
	}
	for s := uint64(1); s <= 5; s++ {
		p, ok := r.store.get("c1", ep1, s)
		if !ok || p.Late != (s == 2) {
			t.Fatalf("seq %d stored %v late %v", s, ok, p.Late)
		}
	}
}

// plausible's trigonometry-free bound settles most fixes; its answer must be
// the exact distance's, at the limit too (distances scaled to just under
// and over it), near the poles and across the antimeridian.
func TestPlausibleBoundIsExact(t *testing.T) {
	p := New(topic.DefaultPrefix, Policy{MaxSpeedMPS: 50}, livemap.New(), nil, nil, nil, metrics.New(func() float64 { return 0 }))
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	exact := func(a, b wire.Fix) bool {
		dt := clampTime(b.Time, now).Sub(clampTime(a.Time, now)).Seconds()
		return dt >= 600 || geo.DistanceLatLngM(a.Lat, a.Lng, b.Lat, b.Lng) <= p.policy.MaxSpeedMPS*math.Max(dt, 2)
	}
	rng := rand.New(rand.NewPCG(17, 3))
	fast := 0
	for i := range 200_000 {
		lat := []float64{33.57, -89.999, 89.9, 0, rng.Float64()*178 - 89}[i%5]
		lng := []float64{-7.59, 179.9999, -179.9999, rng.Float64()*358 - 179}[i%4]
		dt := time.Duration(rng.IntN(40_000)) * time.Millisecond
		a := fixAt(1, 1, now.Add(-time.Minute), lat, lng)
		b := fixAt(1, 2, a.Time.Add(dt), lat, lng)
		// A step whose size is about the limit: scale k around 1.
		limit := 50 * math.Max(dt.Seconds(), 2)
		k := []float64{0.5, 0.999999, 1, 1.000001, 1.3, rng.Float64() * 2}[i%6]
		dir := rng.Float64() * 2 * math.Pi
		deg := k * limit / geo.EarthRadiusM * 180 / math.Pi
		b.Lat = math.Max(-90, math.Min(90, lat+deg*math.Cos(dir)))
		b.Lng = lng + deg*math.Sin(dir)/math.Max(math.Cos(lat*math.Pi/180), 1e-3)
		if b.Lng > 180 {
			b.Lng -= 360
		} else if b.Lng < -180 {
			b.Lng += 360
		}
		if got, want := p.plausible(a, b, now), exact(a, b); got != want {
			t.Fatalf("plausible(%+v, %+v) = %v, exact %v", a, b, got, want)
		}
		if geo.EarthRadiusM*(math.Pi/180)*(math.Abs(b.Lat-a.Lat)+math.Abs(b.Lng-a.Lng))*(1+1e-9)+1e-6 <= limit {
			fast++
		}
	}
	if fast < 10_000 { // the bound must take part, or the test proves nothing about it
		t.Fatalf("the bound settled only %d cases", fast)
	}
}

// TestStateOfUnknownCourier: a state message (a Last Will that arrives
// after the courier's erasure removed it from the index) does not bring the
// courier back; a known courier's state still counts. A CI run of
// e2e/TestAuditHardening/erased_courier saw an erased courier served again
// with no position.
func TestStateOfUnknownCourier(t *testing.T) {
	r := newRig(t)
	state := func(courier string, online bool) {
		t.Helper()
		payload, err := json.Marshal(wire.State{V: wire.MessageVersion, Online: online})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.p.HandleMQTT(t.Context(), topic.Courier(topic.DefaultPrefix, courier, topic.State), payload, false); err != nil {
			t.Fatal(err)
		}
	}
	state("gone", false)
	if _, ok := r.index.Get("gone"); ok {
		t.Error("a state message made a live record for a courier the index does not hold")
	}
	state("c1", true)
	if c, ok := r.index.Get("c1"); !ok || !c.Online {
		t.Errorf("known courier after an online state: %+v %v, want online", c, ok)
	}
}
