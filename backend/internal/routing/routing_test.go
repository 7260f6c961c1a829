package routing

import (
	"context"
	"errors"
	"fmt"
	"github.com/tawsil/tawsil/backend/internal/geo"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 14, 18, 0, 0, 0, time.UTC)

// casa is a point in central Casablanca (around the Twin Center).
var casa = Point{Lat: 33.5883, Lng: -7.6326}

// gridTimer is a travel model for hand-checked tests: one minute per 0.01
// degree of Manhattan distance, whatever the time.
type gridTimer struct{}

func (gridTimer) Travel(a, b Point, _ time.Time) time.Duration {
	d := abs(a.Lat-b.Lat) + abs(a.Lng-b.Lng)
	return time.Duration(d * 100 * float64(time.Minute)).Round(time.Second)
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

func at(min int) time.Time { return t0.Add(time.Duration(min) * time.Minute) }

func pt(lat, lng float64) Point { return Point{Lat: lat, Lng: lng} }

func keys(stops []Stop) []string {
	out := make([]string, len(stops))
	for i, s := range stops {
		out[i] = s.key()
	}
	return out
}

func mustPlan(tb testing.TB, p Problem) Solution {
	tb.Helper()
	sol, err := Plan(context.Background(), p)
	if err != nil {
		tb.Fatalf("Plan: %v", err)
	}
	return sol
}

func mustEvaluate(tb testing.TB, p Problem, order []Stop) Solution {
	tb.Helper()
	sol, err := Evaluate(p, order)
	if err != nil {
		tb.Fatalf("Evaluate: %v", err)
	}
	return sol
}

func TestEvaluate(t *testing.T) {
	p := Problem{
		Start: pt(0.5, 0.5), StartTime: t0, Travel: gridTimer{},
		Stops: []Stop{
			{OrderID: "a", Kind: Pickup, Loc: pt(0.5, 0.55), Service: 2 * time.Minute, Earliest: at(10)},
			{OrderID: "a", Kind: Dropoff, Loc: pt(0.5, 0.60), Service: time.Minute, Latest: at(15)},
			{OrderID: "b", Kind: Return, Loc: pt(0.5, 0.50), Latest: at(40)},
		},
	}
	sol := mustEvaluate(t, p, p.Stops)
	// a/pickup: arrive 5, wait to 10, leave 12; a/dropoff: arrive 17 (2 late),
	// leave 18; b/return: arrive 28, on time.
	want := []struct{ arrive, depart, late int }{{5, 12, 0}, {17, 18, 2}, {28, 28, 0}}
	for i, w := range want {
		v := sol.Visits[i]
		if !v.Arrival.Equal(at(w.arrive)) || !v.Depart.Equal(at(w.depart)) || v.Lateness != time.Duration(w.late)*time.Minute {
			t.Errorf("visit %d (%s): arrival %v depart %v late %v, want %d %d %d min",
				i, v.key(), v.Arrival.Sub(t0), v.Depart.Sub(t0), v.Lateness, w.arrive, w.depart, w.late)
		}
	}
	if sol.TotalLateness != 2*time.Minute || sol.MaxLateness != 2*time.Minute {
		t.Errorf("lateness total %v max %v, want 2m 2m", sol.TotalLateness, sol.MaxLateness)
	}
	if sol.TravelTime != 20*time.Minute {
		t.Errorf("travel %v, want 20m", sol.TravelTime)
	}
	if !sol.Finish.Equal(at(28)) {
		t.Errorf("finish %v, want +28m", sol.Finish.Sub(t0))
	}
	if sol.DistanceM < 22000 || sol.DistanceM > 22500 {
		t.Errorf("distance %.0f m, want about 22.2 km (0.2 degree of longitude near the equator)", sol.DistanceM)
	}
}

func TestValidate(t *testing.T) {
	ok := Stop{OrderID: "a", Kind: Dropoff, Loc: casa}
	tests := []struct {
		name string
		give Problem
		want error
	}{
		{"valid", Problem{StartTime: t0, Start: casa, Stops: []Stop{{OrderID: "a", Kind: Pickup, Loc: casa}, ok}}, nil},
		{"empty", Problem{StartTime: t0, Start: casa}, nil},
		{"no start time", Problem{Start: casa, Stops: []Stop{ok}}, ErrInvalidProblem},
		{"bad kind", Problem{StartTime: t0, Start: casa, Stops: []Stop{{OrderID: "a", Kind: "teleport", Loc: casa}}}, ErrInvalidProblem},
		{"no order id", Problem{StartTime: t0, Start: casa, Stops: []Stop{{Kind: Dropoff, Loc: casa}}}, ErrInvalidProblem},
		{"lat out of range", Problem{StartTime: t0, Start: casa, Stops: []Stop{{OrderID: "a", Kind: Dropoff, Loc: pt(91, 0)}}}, ErrInvalidProblem},
		{"two drops", Problem{StartTime: t0, Start: casa, Stops: []Stop{ok, {OrderID: "a", Kind: Relay, Loc: casa}}}, ErrInvalidProblem},
		{"pickup only", Problem{StartTime: t0, Start: casa, Stops: []Stop{{OrderID: "a", Kind: Pickup, Loc: casa}}}, ErrInvalidProblem},
		{"pickup after drop", Problem{StartTime: t0, Start: casa, Stops: []Stop{ok, {OrderID: "a", Kind: Pickup, Loc: casa}}}, ErrPrecedence},
		{"window inverted", Problem{StartTime: t0, Start: casa, Stops: []Stop{{OrderID: "a", Kind: Dropoff, Loc: casa, Earliest: at(10), Latest: at(5)}}}, ErrInvalidProblem},
		{"negative service", Problem{StartTime: t0, Start: casa, Stops: []Stop{{OrderID: "a", Kind: Dropoff, Loc: casa, Service: -1}}}, ErrInvalidProblem},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.give.Validate()
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("Validate() = %v, want %v", err, tt.want)
			}
			if _, perr := Plan(context.Background(), tt.give); (perr == nil) != (tt.want == nil) {
				t.Fatalf("Plan error %v, want %v", perr, tt.want)
			}
		})
	}
}

func TestPlanReordersForDeadlines(t *testing.T) {
	// Two parcels on board: the input goes to the far one (due late) first;
	// the near one is due soon. The plan must serve the near one first.
	p := Problem{
		Start: pt(0, 0), StartTime: t0, Travel: gridTimer{},
		Stops: []Stop{
			{OrderID: "far", Kind: Dropoff, Loc: pt(0, 0.20), Latest: at(60)},
			{OrderID: "near", Kind: Dropoff, Loc: pt(0, 0.05), Latest: at(10)},
		},
	}
	sol := mustPlan(t, p)
	if got, want := keys(sol.Stops()), []string{"near/dropoff", "far/dropoff"}; !slices.Equal(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
	if sol.TotalLateness != 0 || sol.Algorithm != AlgorithmHeuristic {
		t.Fatalf("lateness %v algorithm %q, want 0 and %q", sol.TotalLateness, sol.Algorithm, AlgorithmHeuristic)
	}
}

func TestPlanKeepsGoodInput(t *testing.T) {
	p := Problem{
		Start: pt(0, 0), StartTime: t0, Travel: gridTimer{},
		Stops: []Stop{
			{OrderID: "a", Kind: Pickup, Loc: pt(0, 0.05)},
			{OrderID: "a", Kind: Dropoff, Loc: pt(0, 0.10), Latest: at(60)},
		},
	}
	sol := mustPlan(t, p)
	if sol.Algorithm != AlgorithmInput {
		t.Fatalf("algorithm %q, want %q for an already optimal input", sol.Algorithm, AlgorithmInput)
	}
	if got, want := keys(sol.Stops()), keys(p.Stops); !slices.Equal(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
}

func TestPlanBatchesPickups(t *testing.T) {
	// Two orders from the same dark store to the same street: collect both,
	// then deliver both, rather than two round trips.
	store, street := pt(0, 0.10), pt(0, 0.20)
	p := Problem{
		Start: pt(0, 0), StartTime: t0, Travel: gridTimer{},
		Stops: []Stop{
			{OrderID: "a", Kind: Pickup, Loc: store},
			{OrderID: "a", Kind: Dropoff, Loc: street, Latest: at(60)},
			{OrderID: "b", Kind: Pickup, Loc: store},
			{OrderID: "b", Kind: Dropoff, Loc: pt(0, 0.21), Latest: at(60)},
		},
	}
	sol := mustPlan(t, p)
	if sol.TravelTime != 21*time.Minute {
		t.Fatalf("travel %v (order %v), want 21m", sol.TravelTime, keys(sol.Stops()))
	}
}

func TestInsertRemove(t *testing.T) {
	p := Problem{
		Start: pt(0, 0), StartTime: t0, Travel: gridTimer{},
		Stops: []Stop{{OrderID: "a", Kind: Dropoff, Loc: pt(0, 0.3), Latest: at(60)}},
	}
	sol, err := Insert(context.Background(), p, []Stop{
		{OrderID: "b", Kind: Pickup, Loc: pt(0, 0.1)},
		{OrderID: "b", Kind: Dropoff, Loc: pt(0, 0.2), Latest: at(60)},
	})
	if err != nil {
		t.Fatalf("Insert: %v", err)
	}
	if got, want := keys(sol.Stops()), []string{"b/pickup", "b/dropoff", "a/dropoff"}; !slices.Equal(got, want) {
		t.Fatalf("after insert %v, want %v", got, want)
	}
	if _, err := Insert(context.Background(), p, []Stop{{OrderID: "a", Kind: Relay, Loc: casa}}); !errors.Is(err, ErrInvalidProblem) {
		t.Fatalf("Insert of a second terminal stop: %v, want ErrInvalidProblem", err)
	}

	p.Stops = sol.Stops()
	sol, err = Remove(context.Background(), p, "b")
	if err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if got, want := keys(sol.Stops()), []string{"a/dropoff"}; !slices.Equal(got, want) {
		t.Fatalf("after remove %v, want %v", got, want)
	}
	if _, err := Remove(context.Background(), p, "zz"); !errors.Is(err, ErrUnknownOrder) {
		t.Fatalf("Remove unknown: %v, want ErrUnknownOrder", err)
	}
}

func TestPlanCancelledContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Plan(ctx, randomProblem(rand.New(rand.NewPCG(1, 2)), 4))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Plan with a cancelled context: %v, want context.Canceled", err)
	}
}

func TestCheck(t *testing.T) {
	p := randomProblem(rand.New(rand.NewPCG(3, 4)), 3)
	sol := mustPlan(t, p)
	if err := Check(p, sol); err != nil {
		t.Fatalf("Check(plan): %v", err)
	}
	dup := sol
	dup.Visits = append(slices.Clone(sol.Visits[:len(sol.Visits)-1]), sol.Visits[0])
	if err := Check(p, dup); !errors.Is(err, ErrInvalidPlan) {
		t.Fatalf("Check(duplicate stop): %v, want ErrInvalidPlan", err)
	}
	if err := Check(p, Solution{Visits: sol.Visits[1:]}); !errors.Is(err, ErrInvalidPlan) {
		t.Fatalf("Check(missing stop): %v, want ErrInvalidPlan", err)
	}
}

// randomProblem builds a route of orders in and around central Casablanca:
// a mix of parcels on board (drop-off, return or relay only) and orders still
// to collect, with one-hour promises booked up to 50 minutes ago, and a valid
// random input order.
func randomProblem(r *rand.Rand, orders int) Problem {
	jitter := func() Point {
		return Point{Lat: casa.Lat + (r.Float64()-0.5)*0.08, Lng: casa.Lng + (r.Float64()-0.5)*0.08}
	}
	p := Problem{Start: jitter(), StartTime: t0}
	var stops []Stop
	for o := range orders {
		id := fmt.Sprintf("o%02d", o)
		booked := t0.Add(-time.Duration(r.IntN(50)) * time.Minute)
		promise := booked.Add(time.Hour)
		if r.IntN(10) < 4 { // on board
			kind := []Kind{Dropoff, Dropoff, Dropoff, Return, Relay}[r.IntN(5)]
			stops = append(stops, Stop{OrderID: id, Kind: kind, Loc: jitter(), Service: time.Duration(1+r.IntN(4)) * time.Minute, Latest: promise})
			continue
		}
		pu := Stop{OrderID: id, Kind: Pickup, Loc: jitter(), Service: time.Duration(1+r.IntN(3)) * time.Minute}
		if r.IntN(2) == 0 {
			pu.Earliest = t0.Add(time.Duration(r.IntN(15)) * time.Minute)
		}
		stops = append(stops, pu, Stop{OrderID: id, Kind: Dropoff, Loc: jitter(), Service: 2 * time.Minute, Latest: promise})
	}
	r.Shuffle(len(stops), func(i, j int) { stops[i], stops[j] = stops[j], stops[i] })
	// Restore precedence: put each order's pickup at the first of its two places.
	first := map[string]int{}
	for i, s := range stops {
		if j, ok := first[s.OrderID]; ok {
			if s.Kind == Pickup {
				stops[i], stops[j] = stops[j], stops[i]
			}
			continue
		}
		first[s.OrderID] = i
	}
	p.Stops = stops
	return p
}

func TestPlanProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(20260314, 1))
	improved := 0
	const instances = 300
	for i := range instances {
		p := randomProblem(r, 1+r.IntN(12))
		if err := p.Validate(); err != nil {
			t.Fatalf("instance %d: generator made an invalid problem: %v", i, err)
		}
		sol := mustPlan(t, p)
		if err := Check(p, sol); err != nil {
			t.Fatalf("instance %d: %v\nplan %v", i, err, keys(sol.Stops()))
		}
		input := mustEvaluate(t, p, p.Stops)
		if sol.TotalLateness > input.TotalLateness || input.Better(sol) {
			t.Fatalf("instance %d: plan (late %v, travel %v) worse than input (late %v, travel %v)",
				i, sol.TotalLateness, sol.TravelTime, input.TotalLateness, input.TravelTime)
		}
		again := mustEvaluate(t, p, sol.Stops())
		if again.TotalLateness != sol.TotalLateness || again.TravelTime != sol.TravelTime || again.MaxLateness != sol.MaxLateness {
			t.Fatalf("instance %d: reported costs differ from a re-evaluation", i)
		}
		sol2 := mustPlan(t, p)
		if !slices.Equal(keys(sol.Stops()), keys(sol2.Stops())) || sol.Algorithm != sol2.Algorithm {
			t.Fatalf("instance %d: not deterministic:\n%v\n%v", i, keys(sol.Stops()), keys(sol2.Stops()))
		}
		if sol.Algorithm == AlgorithmHeuristic {
			improved++
		}
	}
	t.Logf("%d/%d random routes improved over their input order", improved, instances)
	if improved == 0 {
		t.Fatal("the planner never improved a random input order")
	}
}

// bruteForce returns the lexicographically best plan over all precedence-
// respecting permutations of p's stops.
func bruteForce(tb testing.TB, p Problem) Solution {
	tb.Helper()
	best := Solution{TotalLateness: 1 << 62}
	perm := slices.Clone(p.Stops)
	var rec func(k int)
	rec = func(k int) {
		if k == len(perm) {
			if sol, err := Evaluate(p, perm); err == nil && sol.Better(best) {
				best = sol
			}
			return
		}
		for i := k; i < len(perm); i++ {
			perm[k], perm[i] = perm[i], perm[k]
			rec(k + 1)
			perm[k], perm[i] = perm[i], perm[k]
		}
	}
	rec(0)
	return best
}

func TestPlanAgainstBruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	const instances = 200
	optLate, optBoth := 0, 0
	for i := range instances {
		p := randomProblem(r, 1+r.IntN(4))
		sol := mustPlan(t, p)
		opt := bruteForce(t, p)
		input := mustEvaluate(t, p, p.Stops)
		if sol.TotalLateness < opt.TotalLateness {
			t.Fatalf("instance %d: plan lateness %v below the optimum %v: evaluation is inconsistent", i, sol.TotalLateness, opt.TotalLateness)
		}
		if sol.TotalLateness > input.TotalLateness {
			t.Fatalf("instance %d: plan lateness %v above the input's %v", i, sol.TotalLateness, input.TotalLateness)
		}
		if sol.TotalLateness == opt.TotalLateness {
			optLate++
			if sol.TravelTime == opt.TravelTime {
				optBoth++
			}
		}
	}
	t.Logf("optimal lateness in %d/%d instances of 1-4 orders; optimal lateness and travel in %d/%d", optLate, instances, optBoth, instances)
	if optLate*100 < instances*95 {
		t.Fatalf("optimal lateness in only %d/%d instances, want at least 95%%", optLate, instances)
	}
}

func TestPlanTinyBudgetStillValid(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	p := randomProblem(r, 12)
	p.Options = Options{TimeBudget: time.Nanosecond, MaxIterations: 1}
	sol := mustPlan(t, p)
	if err := Check(p, sol); err != nil {
		t.Fatal(err)
	}
	if input := mustEvaluate(t, p, p.Stops); input.Better(sol) {
		t.Fatalf("plan worse than input under a tiny budget")
	}
}

func TestHaversine(t *testing.T) {
	tests := []struct {
		name string
		a, b Point
		want float64 // metres
	}{
		{"same point", casa, casa, 0},
		{"one degree of latitude", pt(33, -7), pt(34, -7), 111195},
		{"Casablanca to Rabat", pt(33.5731, -7.5898), pt(34.0209, -6.8416), 85200}, // flat-earth check: hypot(49.8 km, 69.1 km)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := geo.DistanceM(tt.a, tt.b)
			if abs(got-tt.want) > tt.want*0.01+1 {
				t.Fatalf("HaversineM = %.0f, want %.0f ± 1%%", got, tt.want)
			}
		})
	}
	tm := DefaultTravel().Travel(pt(33, -7), pt(34, -7), t0)
	if want := time.Duration(111195 * 1.3 / DefaultSpeedMPS * float64(time.Second)); tm < want-time.Second || tm > want+time.Second {
		t.Fatalf("ConstantSpeed travel %v, want %v", tm, want)
	}
}

func BenchmarkPlan(b *testing.B) {
	for _, stops := range []int{5, 10, 20} {
		b.Run(fmt.Sprintf("stops=%d", stops), func(b *testing.B) {
			r := rand.New(rand.NewPCG(uint64(stops), 42))
			// A pool of instances with exactly the wanted number of stops.
			var pool []Problem
			for len(pool) < 64 {
				p := randomProblem(r, 1+r.IntN(stops))
				if len(p.Stops) == stops {
					pool = append(pool, p)
				}
			}
			ctx := context.Background()
			durs := make([]time.Duration, 0, b.N)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				start := time.Now()
				if _, err := Plan(ctx, pool[i%len(pool)]); err != nil {
					b.Fatal(err)
				}
				durs = append(durs, time.Since(start))
			}
			b.StopTimer()
			// Candidate evaluations per plan: a load-independent work figure
			// (the machine running the benchmark is often shared).
			evals := 0
			for _, p := range pool {
				s := newSearch(ctx, p)
				s.run()
				evals += s.evals
			}
			b.ReportMetric(float64(evals)/float64(len(pool)), "evals/plan")
			sort.Slice(durs, func(i, j int) bool { return durs[i] < durs[j] })
			b.ReportMetric(float64(durs[len(durs)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(durs[len(durs)*99/100].Microseconds()), "p99-µs")
		})
	}
}
