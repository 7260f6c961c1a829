package livemap

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// randMoves draws a batch the way devices send them and worse: runs of one
// courier's consecutive fixes (a message), single fixes of random couriers,
// new couriers, re-sent and late fixes, jumps across cells and grid tiles,
// points on cell borders, and invalid fixes.
func randMoves(tb testing.TB, rng *rand.Rand, n int, couriers int, seq map[string]uint64, pos map[string][2]float64) []Move {
	tb.Helper()
	var out []Move
	for len(out) < n {
		id := fmt.Sprintf("c%05d", rng.IntN(couriers))
		run := 1
		if rng.IntN(3) == 0 {
			run = 1 + rng.IntN(10)
		}
		for range run {
			p, ok := pos[id]
			if !ok {
				p[0], p[1] = randCasa(rng)
			}
			switch rng.IntN(10) {
			case 0: // across the city
				p[0], p[1] = randCasa(rng)
			case 1: // onto a cell border
				p[0], p[1] = borderPoint(tb, rng, p[0], p[1])
			default: // a few metres on
				p[0] += (rng.Float64() - 0.5) * 3e-4
				p[1] += (rng.Float64() - 0.5) * 3e-4
			}
			pos[id] = p
			s := seq[id] + 1
			switch rng.IntN(8) {
			case 0: // a re-send or a late fix
				s = max(1, seq[id]-uint64(rng.IntN(3)))
			default:
				seq[id] = s
			}
			f := fixAt(s, p[0], p[1])
			switch rng.IntN(20) {
			case 0:
				f.Lat = math.NaN()
			case 1:
				f.Lng = 200
			case 2:
				f.Battery = 101
			}
			out = append(out, Move{ID: id, Fix: f})
		}
	}
	return out[:n]
}

// TestUpdateBatchMatchesUpdates applies random batches to one index with
// UpdateBatch and to another with Update one move at a time: the results,
// the Observer's notifications, every courier's state and Nearest's answers
// must be the same.
func TestUpdateBatchMatchesUpdates(t *testing.T) {
	rng := newRand(17)
	ra, rb := &recorder{}, &recorder{}
	a, b := New(WithObserver(ra)), New(WithObserver(rb))
	const couriers = 300
	for i := range couriers / 2 { // half the couriers known with a state, the rest new
		id := fmt.Sprintf("c%05d", i)
		st, load, shift, online := Status(rng.IntN(int(numStatuses))), rng.IntN(2), rng.IntN(4) != 0, rng.IntN(5) != 0
		for _, x := range []*Index{a, b} {
			x.SetShift(id, shift)
			if err := x.SetStatus(id, st, load); err != nil {
				t.Fatal(err)
			}
			x.SetOnline(id, online, t0)
		}
	}
	seq, pos := map[string]uint64{}, map[string][2]float64{}
	var out []MoveResult
	for round := range 200 {
		moves := randMoves(t, rng, 1+rng.IntN(80), couriers, seq, pos)
		recv := t0.Add(time.Duration(round) * time.Second)
		if round%10 == 9 {
			recv = t0 // a receive time before last seen: last seen stays
		}
		// Between batches, the rest of what changes couriers, alike on both.
		for range rng.IntN(4) {
			id := fmt.Sprintf("c%05d", rng.IntN(couriers))
			st, load, on := Status(rng.IntN(int(numStatuses))), rng.IntN(2), rng.IntN(2) == 0
			op := rng.IntN(4)
			for _, x := range []*Index{a, b} {
				switch op {
				case 0:
					x.Remove(id)
				case 1:
					if err := x.SetStatus(id, st, load); err != nil {
						t.Fatal(err)
					}
				case 2:
					x.SetShift(id, on)
				case 3:
					x.SetOnline(id, on, recv)
				}
			}
		}
		out = a.UpdateBatch(out, moves, recv)
		if len(out) != len(moves) {
			t.Fatalf("round %d: %d results for %d moves", round, len(out), len(moves))
		}
		for i, m := range moves {
			want, err := b.Update(m.ID, m.Fix, recv)
			if out[i].UpdateResult != want || (out[i].Err == nil) != (err == nil) ||
				err != nil && (!errors.Is(out[i].Err, ErrInvalidFix) || out[i].Err.Error() != err.Error()) {
				t.Fatalf("round %d move %d (%s seq %d): batch %+v, one by one %+v %v", round, i, m.ID, m.Fix.Seq, out[i], want, err)
			}
		}
		if round%20 == 0 || round == 199 {
			assertSameIndex(t, a, b)
			for range 20 {
				lat, lng := randCasa(rng)
				f := randFilter(rng, couriers)
				got, want := a.Nearest(lat, lng, f, 5, 3000), b.Nearest(lat, lng, f, 5, 3000)
				if !hitsEqual(got, want) || !hitsEqual(got, bruteNearest(a, lat, lng, f, 5, 3000)) {
					t.Fatalf("round %d: nearest after batches %s, after updates %s", round, formatHits(got), formatHits(want))
				}
			}
		}
	}
	if !slices.Equal(ra.changes, rb.changes) {
		t.Fatalf("observer saw %d changes from batches, %d from updates; first difference at %d",
			len(ra.changes), len(rb.changes), firstDiff(ra.changes, rb.changes))
	}
}

func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func assertSameIndex(t *testing.T, a, b *Index) {
	t.Helper()
	sa, sb := a.Snapshot(), b.Snapshot()
	byID := func(x, y Courier) int { return strings.Compare(x.ID, y.ID) }
	slices.SortFunc(sa, byID)
	slices.SortFunc(sb, byID)
	if !slices.Equal(sa, sb) {
		t.Fatalf("%d couriers after batches, %d after updates, or their states differ", len(sa), len(sb))
	}
}

func TestUpdateBatchOutOfOrder(t *testing.T) {
	x := New()
	recv := t0.Add(time.Hour)
	moves := []Move{
		{"c1", fixAt(5, aLat, aLng)},
		{"c1", fixAt(3, bLat, bLng)},        // older: history only
		{"c1", fixAt(6, aLat+0.0001, aLng)}, // newer
		{"c1", fixAt(6, bLat, bLng)},        // a duplicate of seq 6
		{"c2", fixAt(1, bLat, bLng)},        // another courier between
		{"c1", fixAt(7, aLat+0.0002, aLng)}, // newer again
		{"c1", fixAt(2, aLat+0.0003, aLng)}, // late
	}
	want := []UpdateResult{
		{Created: true, Applied: true, CellChanged: true},
		{OutOfOrder: true},
		{Applied: true},
		{OutOfOrder: true},
		{Created: true, Applied: true, CellChanged: true},
		{Applied: true},
		{OutOfOrder: true},
	}
	got := x.UpdateBatch(nil, moves, recv)
	for i := range want {
		if got[i].UpdateResult != want[i] || got[i].Err != nil {
			t.Errorf("move %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
	c, ok := x.Get("c1")
	if !ok || c.Fix.Seq != 7 || c.Fix.Lat != aLat+0.0002 || !c.LastSeen.Equal(recv) {
		t.Fatalf("c1 after the batch: %+v", c)
	}
}

func TestUpdateBatchInvalid(t *testing.T) {
	x := New()
	mustUpdate(t, x, "c1", fixAt(1, aLat, aLng))
	nan := fixAt(2, bLat, bLng)
	nan.Lat = math.NaN()
	far := fixAt(3, 95, bLng)
	moves := []Move{
		{"c1", nan},                  // invalid: changes nothing
		{"new", far},                 // invalid: creates no courier
		{"c1", fixAt(4, bLat, bLng)}, // still applied
	}
	got := x.UpdateBatch(make([]MoveResult, 0, 3), moves, t0.Add(time.Hour))
	for i, wantErr := range []bool{true, true, false} {
		if (got[i].Err != nil) != wantErr || wantErr && (!errors.Is(got[i].Err, ErrInvalidFix) || got[i].UpdateResult != UpdateResult{}) {
			t.Errorf("move %d: %+v", i, got[i])
		}
	}
	if !got[2].Applied {
		t.Errorf("valid move after invalid ones: %+v", got[2])
	}
	if x.Len() != 1 {
		t.Errorf("%d couriers, want 1: an invalid fix created one", x.Len())
	}
	if c, _ := x.Get("c1"); c.Fix.Seq != 4 {
		t.Errorf("c1 live seq %d, want 4", c.Fix.Seq)
	}
	if got := x.UpdateBatch(got, nil, t0); len(got) != 0 {
		t.Errorf("empty batch: %d results", len(got))
	}
}

// TestUpdateBatchConcurrent runs batches over shared couriers beside single
// updates, removals and queries (run with -race): no deadlock between the
// id shards a batch holds, and each courier ends at its newest fix.
func TestUpdateBatchConcurrent(t *testing.T) {
	x := New()
	const couriers, workers, rounds = 100, 4, 300
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			rng := newRand(uint64(40 + w))
			var out []MoveResult
			for r := range rounds {
				moves := make([]Move, 1+rng.IntN(40))
				for i := range moves {
					lat, lng := randCasa(rng)
					moves[i] = Move{fmt.Sprintf("c%03d", rng.IntN(couriers)), fixAt(uint64(1+r*workers+w), lat, lng)}
				}
				switch r % 10 {
				case 0:
					x.Remove(moves[0].ID)
				case 1:
					_, _ = x.Update(moves[0].ID, moves[0].Fix, t0)
				case 2:
					x.Nearest(moves[0].Fix.Lat, moves[0].Fix.Lng, Filter{}, 5, 2000)
				default:
					out = x.UpdateBatch(out, moves, t0)
				}
			}
		})
	}
	wg.Wait()
	for _, c := range x.Snapshot() {
		hits := x.Nearest(c.Fix.Lat, c.Fix.Lng, Filter{}, 1, 0)
		if len(hits) == 0 || hits[0].DistanceM != 0 {
			t.Fatalf("courier %s not found at its live fix", c.ID)
		}
	}
}
