package mongostore

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"
)

// groupPositions is groupRuns with each group's fixes in one new slice,
// sorted by seq, the copies of a fix dropped, the first received kept: what
// InsertPositionBatches stores of a flush, group by group.
func groupPositions(batches [][]Position) [][]Position {
	groups := groupRuns(batches)
	out := make([][]Position, len(groups))
	for i, runs := range groups {
		out[i] = sortedBySeq(slices.Concat(runs...))
	}
	return out
}

// TestGroupPositions: a flush's fixes, messages of several couriers and
// epochs interleaved, one message out of order, a fix twice: one group per
// courier and epoch, in courier then epoch order, each in seq order, the
// first received copy kept; the input is left as it was.
func TestGroupPositions(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)
	p := func(c string, ep, seq uint64, rt int) Position {
		return Position{CourierID: c, Epoch: ep, Seq: seq, ReceivedAt: t0.Add(time.Duration(rt) * time.Second)}
	}
	in := []Position{
		p("c2", 1, 1, 0), p("c2", 1, 2, 0), p("c1", 5, 10, 0), p("c1", 5, 11, 0),
		p("c2", 1, 5, 1), p("c2", 1, 6, 1), p("c1", 4, 99, 1), // another epoch of c1
		p("c3", 1, 7, 1),                   // another courier, c2's epoch
		p("c2", 1, 3, 2), p("c2", 1, 4, 2), // a late message
		p("c1", 5, 11, 3), // a copy, received later
		p("c1", 5, 12, 3),
	}
	before := fmt.Sprint(in)
	want := []string{"c1/4: 99@1", "c1/5: 10@0 11@0 12@3", "c2/1: 1@0 2@0 3@2 4@2 5@1 6@1", "c3/1: 7@1"}
	// Batches that mix couriers, and one batch per message (one courier and
	// epoch each, taken whole), an empty one among them: the same groups.
	for _, batches := range [][][]Position{
		{in[:5], in[5:]},
		{in[0:2], in[2:4], in[4:6], nil, in[6:7], in[7:8], in[8:10], in[10:12]},
		{in[0:2], in[2:8], in[8:10], in[10:12]},
		{in[0:4], in[4:6], in[6:7], in[7:10], in[10:12]}, // c3 and c2 (same epoch) in one batch
	} {
		checkGroups(t, groupPositions(batches), want)
	}
	if fmt.Sprint(in) != before {
		t.Error("the input was changed")
	}
}

func checkGroups(t *testing.T, got [][]Position, want []string) {
	t.Helper()
	t0 := time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)
	if len(got) != len(want) {
		t.Fatalf("%d groups, want %d", len(got), len(want))
	}
	for i, g := range got {
		s := fmt.Sprintf("%s/%d:", g[0].CourierID, g[0].Epoch)
		for _, x := range g {
			if x.CourierID != g[0].CourierID || x.Epoch != g[0].Epoch {
				t.Fatalf("group %d mixes %s/%d", i, x.CourierID, x.Epoch)
			}
			s += fmt.Sprintf(" %d@%d", x.Seq, int(x.ReceivedAt.Sub(t0).Seconds()))
		}
		if s != want[i] {
			t.Errorf("group %d = %q, want %q", i, s, want[i])
		}
	}
}

// A flush's fixes are packed from the messages' slices as they are (no copy
// into one slice): the buckets must be those of the fixes put end to end,
// byte for byte and id for id, however the runs are cut, and chunkRuns must
// cut at bucketMax as slicing one slice would.
func TestPackRunsAsOneSlice(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	t0 := time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)
	for round := range 200 {
		n := 1 + rng.IntN(2500)
		ps := make([]Position, n)
		seq := uint64(rng.IntN(1000))
		for i := range ps {
			seq += 1 + uint64(rng.IntN(3))
			// Coordinates at the wire's 1e-6 degree (deltas), one in 50 any float (raw bits).
			lat, lng := 33.5+float64(rng.IntN(10000))/1e6, -7.6+float64(rng.IntN(10000))/1e6
			if rng.IntN(50) == 0 {
				lat += rng.Float64() / 1e9
			}
			ps[i] = Position{CourierID: "c7", Epoch: 3, Seq: seq, Lat: lat, Lng: lng,
				AccuracyM: float64(rng.IntN(500)) / 10, SpeedMPS: -1, HeadingDeg: float64(rng.IntN(3600)) / 10, Battery: rng.IntN(101),
				T: t0.Add(time.Duration(i*1000+rng.IntN(900)) * time.Millisecond), ReceivedAt: t0.Add(time.Duration(i) * time.Second), Late: rng.IntN(9) == 0}
		}
		var runs [][]Position
		for rest := ps; len(rest) > 0; {
			k := min(len(rest), 1+rng.IntN(30))
			runs = append(runs, rest[:k])
			rest = rest[k:]
		}
		if !increasing(runs) {
			t.Fatal("increasing seqs not seen as increasing")
		}
		chunks := chunkRuns(runs, bucketMax)
		if want := (n + bucketMax - 1) / bucketMax; len(chunks) != want {
			t.Fatalf("round %d: %d chunks of %d fixes, want %d", round, len(chunks), n, want)
		}
		for c, chunk := range chunks {
			got, want := packRuns(chunk), newBucket(ps[c*bucketMax:min((c+1)*bucketMax, n)])
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("round %d chunk %d: packRuns gives %s (%d fixes, %d bytes), one slice %s (%d, %d)",
					round, c, got.ID, got.N, len(got.P), want.ID, want.N, len(want.P))
			}
		}
		// A fix out of order or twice is seen as such, across runs too.
		if n >= 2 {
			i := 1 + rng.IntN(n-1)
			bad := slices.Clone(ps)
			bad[i].Seq = bad[i-1].Seq - uint64(rng.IntN(2)) // equal to, or below, the one before
			if increasing([][]Position{bad[:i], bad[i:]}) || increasing([][]Position{bad}) {
				t.Fatalf("round %d: seq %d after %d seen as increasing", round, bad[i].Seq, bad[i-1].Seq)
			}
		}
	}
}
