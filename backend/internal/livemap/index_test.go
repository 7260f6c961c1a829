package livemap

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/tawsil/tawsil/shared/wire"
)

// Two points about 2 km apart in Casablanca, in different res-8 cells.
const (
	aLat, aLng = 33.5731, -7.5898
	bLat, bLng = 33.5890, -7.6050
)

func TestUpdateOrdering(t *testing.T) {
	later := fixAt(10, aLat, aLng)
	tests := []struct {
		name        string
		give        wire.Fix
		wantApplied bool
		wantOOO     bool
		wantLat     float64
	}{
		{"newer moves", fixAt(11, bLat, bLng), true, false, bLat},
		{"same seq is a duplicate", fixAt(10, bLat, bLng), false, true, aLat},
		{"lower seq", fixAt(9, bLat, bLng), false, true, aLat},
		{"higher seq older device time", func() wire.Fix {
			f := fixAt(11, bLat, bLng)
			f.Time = later.Time.Add(-time.Millisecond)
			return f
		}(), false, true, aLat},
		{"new epoch, lower seq, later time", func() wire.Fix {
			f := fixAt(1, bLat, bLng)
			f.Epoch, f.Time = wire.MinDeviceEpoch, later.Time.Add(time.Second)
			return f
		}(), true, false, bLat},
		{"other epoch, higher seq, earlier time", func() wire.Fix {
			f := fixAt(1_800_000_000, bLat, bLng)
			f.Epoch, f.Time = wire.EpochOwnTracks, later.Time.Add(-time.Second)
			return f
		}(), false, true, aLat},
		{"higher seq same device time", func() wire.Fix {
			f := fixAt(11, bLat, bLng)
			f.Time = later.Time
			return f
		}(), true, false, bLat},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := New()
			mustUpdate(t, x, "c1", later)
			recv := later.Time.Add(time.Minute)
			res, err := x.Update("c1", tt.give, recv)
			if err != nil {
				t.Fatal(err)
			}
			if res.Applied != tt.wantApplied || res.OutOfOrder != tt.wantOOO || res.Created {
				t.Fatalf("got %+v", res)
			}
			c, ok := x.Get("c1")
			if !ok || c.Fix.Lat != tt.wantLat {
				t.Fatalf("live lat %v, want %v", c.Fix.Lat, tt.wantLat)
			}
			if !c.LastSeen.Equal(recv) {
				t.Fatalf("last seen %v, want %v (any message is a sign of life)", c.LastSeen, recv)
			}
			// The spatial index agrees with the record.
			hits := x.Nearest(tt.wantLat, c.Fix.Lng, Filter{}, 1, 1)
			if len(hits) != 1 || hits[0].ID != "c1" {
				t.Fatalf("nearest at live position: %s", formatHits(hits))
			}
		})
	}
}

func TestUpdateCells(t *testing.T) {
	x := New()
	res := mustUpdate(t, x, "c1", fixAt(1, aLat, aLng))
	if !res.Created || !res.Applied || !res.CellChanged {
		t.Fatalf("first fix: %+v", res)
	}
	c, _ := x.Get("c1")
	c9, c8, c7, _, err := x.locate(aLat, aLng)
	if err != nil {
		t.Fatal(err)
	}
	if c.Cell9 != c9 || c.Cell8 != c8 || c.Cell7 != c7 {
		t.Fatalf("cells %v %v %v, want %v %v %v", c.Cell9, c.Cell8, c.Cell7, c9, c8, c7)
	}
	// A 3 m step stays in the cell.
	if res = mustUpdate(t, x, "c1", fixAt(2, aLat+0.00003, aLng)); res.CellChanged || !res.Applied {
		t.Fatalf("small step: %+v", res)
	}
	if res = mustUpdate(t, x, "c1", fixAt(3, bLat, bLng)); !res.CellChanged {
		t.Fatalf("2 km move: %+v", res)
	}
	if got := x.Nearest(aLat, aLng, Filter{}, 5, 500); len(got) != 0 {
		t.Fatalf("courier still found at its old place: %s", formatHits(got))
	}
}

func TestUpdateInvalid(t *testing.T) {
	tests := []struct {
		name string
		give wire.Fix
	}{
		{"nan", fixAt(1, math.NaN(), aLng)},
		{"lat range", fixAt(1, 91, aLng)},
		{"null island", fixAt(1, 0, 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := New()
			if _, err := x.Update("c1", tt.give, t0); !errors.Is(err, ErrInvalidFix) {
				t.Fatalf("got %v, want ErrInvalidFix", err)
			}
			if x.Len() != 0 {
				t.Fatalf("invalid fix created a courier")
			}
		})
	}
}

func TestSetters(t *testing.T) {
	x := New()
	if err := x.SetStatus("c1", StatusBusy, 2); err != nil {
		t.Fatal(err)
	}
	if err := x.SetProfile("c1", "scooter", 3); err != nil {
		t.Fatal(err)
	}
	x.SetShift("c1", true)
	x.SetOnline("c1", false, t0)
	c, ok := x.Get("c1")
	want := Courier{ID: "c1", Status: StatusBusy, Load: 2, Capacity: 3, Vehicle: "scooter", OnShift: true}
	if !ok || c != want {
		t.Fatalf("got %+v, want %+v", c, want)
	}
	if c.Spare() != 1 {
		t.Fatalf("spare %d", c.Spare())
	}
	for _, err := range []error{x.SetStatus("c1", numStatuses, 0), x.SetStatus("c1", StatusBusy, -1), x.SetProfile("c1", "car", -1)} {
		if !errors.Is(err, ErrInvalid) {
			t.Fatalf("got %v, want ErrInvalid", err)
		}
	}
	if c2, _ := x.Get("c1"); c2 != want {
		t.Fatalf("a rejected call changed the courier: %+v", c2)
	}
}

func TestStatusNames(t *testing.T) {
	for s := StatusOffline; s < numStatuses; s++ {
		got, err := ParseStatus(s.String())
		if err != nil || got != s {
			t.Fatalf("%v: got %v, %v", s, got, err)
		}
	}
	if _, err := ParseStatus("sleeping"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("got %v", err)
	}
}

func TestExpire(t *testing.T) {
	x := New()
	mustUpdate(t, x, "old", fixAt(1, aLat, aLng))     // seen at t0+1s
	mustUpdate(t, x, "fresh", fixAt(100, bLat, bLng)) // seen at t0+100s
	x.SetOnline("gone", false, t0)
	got := x.Expire(t0.Add(60*time.Second), 30*time.Second)
	if !slices.Equal(got, []string{"old"}) {
		t.Fatalf("expired %v, want [old]", got)
	}
	if c, _ := x.Get("old"); c.Online {
		t.Fatal("old still online")
	}
	if got := x.Expire(t0.Add(60*time.Second), 30*time.Second); len(got) != 0 {
		t.Fatalf("second expire %v, want none", got)
	}
	// A new fix brings it back.
	mustUpdate(t, x, "old", fixAt(200, aLat, aLng))
	if c, _ := x.Get("old"); !c.Online {
		t.Fatal("fix did not bring the courier online")
	}
}

func TestRemove(t *testing.T) {
	x := New()
	mustUpdate(t, x, "c1", fixAt(1, aLat, aLng))
	mustUpdate(t, x, "c2", fixAt(1, aLat, aLng))
	if !x.Remove("c1") || x.Remove("c1") || x.Len() != 1 {
		t.Fatalf("remove: len %d", x.Len())
	}
	got := x.Nearest(aLat, aLng, Filter{}, 5, 100)
	if len(got) != 1 || got[0].ID != "c2" {
		t.Fatalf("after remove: %s", formatHits(got))
	}
}

func TestSnapshotRestore(t *testing.T) {
	rng := newRand(11)
	x := New()
	fillFleet(t, rng, x, 500, fleetUniform)
	x.SetShift("no-fix", true)
	snap := x.Snapshot()
	y := New()
	if err := y.Restore(snap); err != nil {
		t.Fatal(err)
	}
	if y.Len() != x.Len() {
		t.Fatalf("len %d, want %d", y.Len(), x.Len())
	}
	for _, c := range snap {
		got, ok := y.Get(c.ID)
		if !ok || got != c {
			t.Fatalf("restored %+v, want %+v", got, c)
		}
	}
	for range 50 {
		lat, lng := randCasa(rng)
		f := randFilter(rng, 500)
		if a, b := x.Nearest(lat, lng, f, 5, 2000), y.Nearest(lat, lng, f, 5, 2000); !hitsEqual(a, b) {
			t.Fatalf("restored index answers %s, original %s", formatHits(b), formatHits(a))
		}
	}
	bad := []Courier{{ID: ""}, {ID: "x", HasFix: true, Fix: fixAt(1, 0, 0)}, {ID: "y", Load: -1}}
	if err := y.Restore(bad); !errors.Is(err, ErrInvalid) || !errors.Is(err, ErrInvalidFix) {
		t.Fatalf("got %v", err)
	}
}

// recorder is an Observer that keeps every change.
type recorder struct {
	mu      sync.Mutex
	changes []string
	supply  map[Presence]int // net count per (cells, supply), to check against a scan
}

func (r *recorder) CourierChanged(id string, prev, next Presence) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.changes = append(r.changes, fmt.Sprintf("%s %d->%d cell8 changed=%v", id, prev.Supply, next.Supply, prev.Cell8 != next.Cell8))
	if r.supply == nil {
		r.supply = map[Presence]int{}
	}
	// The zero Presence (no position, or gone) counts nowhere.
	if prev != (Presence{}) {
		r.supply[prev]--
	}
	if next != (Presence{}) {
		r.supply[next]++
	}
}

func TestObserver(t *testing.T) {
	r := &recorder{}
	x := New(WithObserver(r))
	mustUpdate(t, x, "c1", fixAt(1, aLat, aLng))             // none -> none (off shift): cells appear
	x.SetShift("c1", true)                                   // -> available
	mustUpdate(t, x, "c1", fixAt(2, aLat+0.00003, aLng))     // same cell, same supply: silent
	if err := x.SetStatus("c1", StatusBusy, 1); err != nil { // -> busy
		t.Fatal(err)
	}
	mustUpdate(t, x, "c1", fixAt(3, bLat, bLng)) // busy, new cell
	x.Expire(t0.Add(time.Hour), time.Minute)     // -> none
	x.Remove("c1")                               // cells vanish
	want := []string{
		"c1 0->0 cell8 changed=true",
		"c1 0->1 cell8 changed=false",
		"c1 1->2 cell8 changed=false",
		"c1 2->2 cell8 changed=true",
		"c1 2->0 cell8 changed=false",
		"c1 0->0 cell8 changed=true",
	}
	if !slices.Equal(r.changes, want) {
		t.Fatalf("changes\n got %q\nwant %q", r.changes, want)
	}
}

// TestObserverNetMatchesState drives a random fleet with many goroutines and
// checks that the net of observed changes equals the final state: no change
// lost or reordered per courier.
func TestObserverNetMatchesState(t *testing.T) {
	r := &recorder{}
	x := New(WithObserver(r))
	const workers, couriers, steps = 4, 200, 2000
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			rng := newRand(uint64(w))
			for i := range steps {
				id := fmt.Sprintf("c%03d", rng.IntN(couriers))
				switch rng.IntN(5) {
				case 0:
					if err := x.SetStatus(id, Status(rng.IntN(int(numStatuses))), rng.IntN(2)); err != nil {
						t.Error(err)
					}
				case 1:
					x.SetShift(id, rng.IntN(2) == 0)
				case 2:
					x.SetOnline(id, rng.IntN(2) == 0, t0)
				default:
					lat, lng := randCasa(rng)
					if _, err := x.Update(id, fixAt(uint64(w*steps+i+1), lat, lng), t0); err != nil {
						t.Error(err)
					}
				}
				if i%50 == 0 {
					lat, lng := randCasa(rng)
					x.Nearest(lat, lng, Filter{Online: true}, 5, 3000)
				}
			}
		})
	}
	wg.Wait()
	want := map[Presence]int{}
	for i := range x.ids {
		x.ids[i].each(func(c *courier) bool {
			if p := c.presence(); p != (Presence{}) {
				want[p]++
			}
			return true
		})
	}
	if len(want) < 10 {
		t.Fatalf("only %d distinct presences: the test exercises too little", len(want))
	}
	for p, n := range r.supply {
		if n != want[p] {
			t.Fatalf("presence %+v: observed net %d, state %d", p, n, want[p])
		}
	}
	for p, n := range want {
		if r.supply[p] != n {
			t.Fatalf("presence %+v: observed net %d, state %d", p, r.supply[p], n)
		}
	}
}

// TestIDHashCollisions drives the id table with ids forced onto one hash.
func TestIDHashCollisions(t *testing.T) {
	var s idShard
	a, b, c := newCourier("a"), newCourier("b"), newCourier("c")
	for _, r := range []*courier{a, b, c} {
		s.put(7, r)
	}
	for _, r := range []*courier{a, b, c} {
		if got := s.get(7, r.id); got != r {
			t.Fatalf("get %s: %v", r.id, got)
		}
	}
	s.del(b) // middle of the run
	s.del(a) // its start
	if s.get(7, "b") != nil || s.get(7, "a") != nil || s.get(7, "c") != c {
		t.Fatal("run broken after deletes")
	}
	n := 0
	s.each(func(*courier) bool { n++; return true })
	if n != 1 {
		t.Fatalf("each saw %d records, want 1", n)
	}
	s.del(c)
	if s.n != 0 || s.get(7, "c") != nil {
		t.Fatal("record left in the table")
	}
}

// TestIDTableMatchesMap runs random puts, deletes and gets on the id table,
// with hashes from a small range (collisions, long runs, runs wrapping
// around the end of the table), against a Go map.
func TestIDTableMatchesMap(t *testing.T) {
	rng := newRand(11)
	var s idShard
	want := map[string]*courier{}
	hashOf := func(id string) uint64 { // few distinct homes (bits 8 and up)
		var h uint64
		for _, b := range []byte(id) {
			h = h*31 + uint64(b)
		}
		return (h%32 + 490) << 8 // past the end of a 512-slot table: runs wrap
	}
	for i := range 20000 {
		id := fmt.Sprintf("c%d", rng.IntN(300))
		h := hashOf(id)
		switch c := s.get(h, id); {
		case c != want[id]:
			t.Fatalf("op %d: get %s = %p, want %p", i, id, c, want[id])
		case c == nil:
			c = newCourier(id)
			s.put(h, c)
			want[id] = c
		case rng.IntN(2) == 0:
			s.del(c)
			delete(want, id)
		}
		if s.n != len(want) {
			t.Fatalf("op %d: %d records, want %d", i, s.n, len(want))
		}
	}
	seen := 0
	s.each(func(c *courier) bool {
		if want[c.id] != c {
			t.Fatalf("each: %s not in the map", c.id)
		}
		seen++
		return true
	})
	if seen != len(want) {
		t.Fatalf("each saw %d, want %d", seen, len(want))
	}
}

// TestVehicleKindsShared: couriers of one vehicle kind share one copy of
// its name (the kinds are a handful; a copy each is a cold line per
// courier in every answer), which no caller's buffer aliases; a new kind
// is still taken, past the kept ones too.
func TestVehicleKindsShared(t *testing.T) {
	x := New()
	buf := []byte("scooter")
	for _, id := range []string{"c1", "c2"} {
		if err := x.SetProfile(id, string(buf), 2); err != nil {
			t.Fatal(err)
		}
	}
	if err := x.Restore([]Courier{{ID: "c3", Vehicle: "scooter", Capacity: 1}}); err != nil {
		t.Fatal(err)
	}
	copy(buf, "bicycle") // the caller's bytes change; the index's must not
	c1, _ := x.Get("c1")
	c2, _ := x.Get("c2")
	c3, _ := x.Get("c3")
	if c1.Vehicle != "scooter" || c2.Vehicle != "scooter" || c3.Vehicle != "scooter" {
		t.Fatalf("vehicles %q %q %q, want scooter", c1.Vehicle, c2.Vehicle, c3.Vehicle)
	}
	if unsafe.StringData(c1.Vehicle) != unsafe.StringData(c2.Vehicle) || unsafe.StringData(c1.Vehicle) != unsafe.StringData(c3.Vehicle) {
		t.Error("couriers of one kind hold separate copies of its name")
	}
	for i := range maxVehicleKinds + 5 {
		kind := fmt.Sprintf("kind-%d", i)
		if err := x.SetProfile("c1", kind, 1); err != nil {
			t.Fatal(err)
		}
		if c, _ := x.Get("c1"); c.Vehicle != kind {
			t.Fatalf("vehicle %q, want %q", c.Vehicle, kind)
		}
	}
}
