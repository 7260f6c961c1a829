package dispatch

import (
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"
)

// Hold defers a job whose parcel is ready long after its best courier
// would arrive, and nothing else.
func TestHold(t *testing.T) {
	d := mustDispatcher(t, func(c *Config) { c.CommitLead = 10 * time.Minute })
	job := newJob(move(store, 1000, 0))
	c := idle("c", move(store, 0, 1000), 0) // 1 km at 18 km/h with the detour: 4.3 min away
	for _, tt := range []struct {
		name  string
		ready time.Duration // after now; 0: no ready time
		want  bool
	}{
		{"no-ready-time", 0, false},
		{"ready-in-14", 14 * time.Minute, false}, // arrives 9.7 min before: within the lead
		{"ready-in-30", 30 * time.Minute, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			j := job
			if tt.ready > 0 {
				j.ReadyAt = now.Add(tt.ready)
			}
			r, _ := d.Score(j, []Candidate{c}, now)
			if got := d.Hold(j, r[0]); got != tt.want {
				t.Errorf("Hold = %v (arrives %v, ready %v), want %v", got, r[0].PickupAt.Sub(now), tt.ready, tt.want)
			}
		})
	}
	if mustDispatcher(t, func(c *Config) { c.CommitLead = 0 }).Hold(Job{ReadyAt: now.Add(time.Hour)}, Ranked{PickupAt: now}) {
		t.Error("held with CommitLead 0")
	}
}

func epochJob(id string, pickup, drop Point, ready time.Duration) EpochJob {
	return EpochJob{Job: Job{OrderID: id, Pickup: pickup, Dropoff: drop, PromiseBy: now.Add(time.Hour), ReadyAt: now.Add(ready)}, PlacedAt: now}
}

// One epoch: two orders of one store ready together go to the courier
// there as one bundle; an order ready in 40 min is held and takes nobody;
// an order the caller refuses for its nearest courier goes to the next.
func TestEpoch(t *testing.T) {
	d := mustDispatcher(t, func(c *Config) { c.CommitLead = 10 * time.Minute; c.BatchRadiusM = 1 })
	far := move(store, 3000, 0)
	jobs := []EpochJob{
		epochJob("A", store, move(store, 800, 0), 5*time.Minute),
		epochJob("B", store, move(store, 900, 100), 5*time.Minute),
		epochJob("L", far, move(far, 500, 0), 40*time.Minute),
		epochJob("R", far, move(far, 0, 500), 0),
	}
	cands := []Candidate{idle("s", store, 0), idle("f1", move(far, 100, 0), 0), idle("f2", move(far, 900, 0), 0)}
	refused := 0
	accept := func(j, c int, _ time.Time, _ Ranked) bool {
		if jobs[j].OrderID == "R" && cands[c].CourierID == "f1" {
			refused++
			return false
		}
		return true
	}
	commits := d.Epoch(jobs, cands, now, 0, accept)
	got := map[string]string{}
	var plan []Stop
	for _, c := range commits {
		got[jobs[c.Job].OrderID] = cands[c.Cand].CourierID
		if cands[c.Cand].CourierID == "s" {
			plan = c.Ranked.Plan
		}
	}
	if got["A"] != "s" || got["B"] != "s" || got["R"] != "f2" || len(got) != 3 {
		t.Fatalf("commits %v, want A and B to s, R to f2, L held", got)
	}
	if refused == 0 {
		t.Error("the caller was never asked about R and f1")
	}
	if len(plan) != 4 || plan[0].Kind != StopPickup || plan[1].Kind != StopPickup {
		t.Errorf("s's plan %+v, want both pick-ups first (one visit), then the drop-offs", plan)
	}
	if len(cands[0].Route) != 0 {
		t.Error("Epoch modified the candidates' routes")
	}
}

// The cheapest commit is made first: with one courier of capacity one, the
// order near it wins over an older far one; a large enough WaitMin gives
// it to the order that waited longer.
func TestEpochCheapestFirst(t *testing.T) {
	far := move(store, 2500, 0)
	jobs := []EpochJob{
		epochJob("old-far", far, move(far, 500, 0), 0),
		epochJob("near", store, move(store, 500, 0), 0),
	}
	jobs[0].PlacedAt = now.Add(-20 * time.Minute)
	c := idle("c", store, 0)
	c.Capacity = 1
	for _, tt := range []struct {
		wait float64
		want string
	}{{0, "near"}, {5, "old-far"}} {
		d := mustDispatcher(t, func(c *Config) { c.Weights.WaitMin = tt.wait })
		commits := d.Epoch(jobs, []Candidate{c}, now, 0, nil)
		if len(commits) != 1 || jobs[commits[0].Job].OrderID != tt.want {
			t.Errorf("wait_min %v: commits %+v, want only %s", tt.wait, commits, tt.want)
		}
	}
}

// A job no courier can hand over by its promise goes under LatestBy, and
// one no courier can bring by LatestBy either waits unless AnyTime. The
// courier is busy 40 min: a promise in 30 min is out of reach.
func TestEpochTiers(t *testing.T) {
	d := mustDispatcher(t, func(c *Config) { c.CommitHorizon = 0 })
	c := idle("c", store, 0)
	c.FreeAt = now.Add(40 * time.Minute)
	job := epochJob("J", store, move(store, 500, 0), 0)
	job.PromiseBy = now.Add(30 * time.Minute)
	for _, tt := range []struct {
		name    string
		latest  time.Duration // 0: none
		anyTime bool
		want    time.Time // the promise committed under; zero with ok false: no commit
		ok      bool
	}{
		{"latest-by-holds", 60 * time.Minute, false, now.Add(60 * time.Minute), true},
		{"nothing-holds", 41 * time.Minute, false, time.Time{}, false},
		{"any-time", 41 * time.Minute, true, time.Time{}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			j := job
			j.LatestBy, j.AnyTime = now.Add(tt.latest), tt.anyTime
			cs := d.Epoch([]EpochJob{j}, []Candidate{c}, now, 0, nil)
			if len(cs) == 1 != tt.ok || tt.ok && !cs[0].PromiseBy.Equal(tt.want) {
				t.Errorf("commits %+v, want ok %v under %v", cs, tt.ok, tt.want)
			}
		})
	}
}

// A job whose only courier is busy for 40 min is held under a 25 min
// commit horizon (a later epoch may find a courier free sooner), and taken
// by it with no horizon, or when it may go to anyone at any time.
func TestEpochCommitHorizon(t *testing.T) {
	c := idle("c", store, 0)
	c.FreeAt = now.Add(40 * time.Minute)
	job := epochJob("J", store, move(store, 500, 0), 0)
	job.PromiseBy = now.Add(2 * time.Hour)
	for _, tt := range []struct {
		name    string
		horizon time.Duration
		anyTime bool
		want    bool
	}{{"held", 25 * time.Minute, false, false}, {"no-horizon", 0, false, true}, {"any-time", 25 * time.Minute, true, true}} {
		t.Run(tt.name, func(t *testing.T) {
			d := mustDispatcher(t, func(cfg *Config) { cfg.CommitHorizon = tt.horizon })
			j := job
			j.AnyTime = tt.anyTime
			if tt.anyTime {
				j.PromiseBy = now.Add(30 * time.Minute) // out of reach: only the any-time tier takes it
			}
			cs, held := d.EpochHeld([]EpochJob{j}, []Candidate{c}, now, 0, nil)
			if len(cs) == 1 != tt.want || !tt.want && !held[0] {
				t.Errorf("commits %+v held %v, want committed %v", cs, held, tt.want)
			}
		})
	}
}

// The candidate offered to accept is the one Score ranks first, plan
// included (a caller such as mdrp checks the plan before saying yes),
// though an epoch builds plans only for the candidates it offers.
func TestEpochAcceptSeesScorePlan(t *testing.T) {
	d := mustDispatcher(t, func(c *Config) { c.BatchRadiusM = 1 })
	job := epochJob("N", store, move(store, 1500, 0), 0)
	cands := []Candidate{
		carrying("c1", move(store, 200, 0), store, move(store, 1200, 300), now.Add(50*time.Minute)),
		idle("c2", move(store, 0, 400), 0),
		carrying("c3", move(store, -300, 0), store, move(store, 900, 0), now.Add(40*time.Minute)),
	}
	want, _ := d.Score(job.Job, cands, now)
	if len(want) < 2 {
		t.Fatalf("Score ranks %d candidates, want several", len(want))
	}
	var got []Ranked
	d.Epoch([]EpochJob{job}, cands, now, 0, func(_, _ int, _ time.Time, r Ranked) bool {
		got = append(got, r)
		return false // refuse all: every ranked candidate is offered in turn
	})
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("offered %+v\nwant Score's %+v", got, want)
	}
}

// Epochs reuse scratch (epochPool): epochs run at once on several
// goroutines, of different sizes one after the other, each give what the
// same epoch gives alone, and leave their inputs unchanged.
func TestEpochConcurrentScratch(t *testing.T) {
	d := mustDispatcher(t, func(c *Config) { c.BatchRadiusM = 500 })
	type scenario struct {
		jobs  []EpochJob
		cands []Candidate
	}
	mk := func(nj, nc int) scenario {
		var s scenario
		for i := range nj {
			p := move(store, float64(i%5)*400, float64(i/5)*300)
			s.jobs = append(s.jobs, epochJob(fmt.Sprint("J", i), p, move(p, 1000, 200), 0))
		}
		for i := range nc {
			p := move(store, float64(i%7)*350-500, float64(i/7)*250)
			if i%3 == 0 {
				s.cands = append(s.cands, carrying(fmt.Sprint("c", i), p, p, move(p, 800, 0), now.Add(45*time.Minute)))
			} else {
				s.cands = append(s.cands, idle(fmt.Sprint("c", i), p, time.Duration(i)*time.Minute))
			}
		}
		return s
	}
	scs := []scenario{mk(12, 30), mk(2, 3), mk(6, 14)}
	type result struct {
		commits []Commit
		held    []bool
	}
	want := make([]result, len(scs))
	for i, s := range scs {
		want[i].commits, want[i].held = d.EpochHeld(s.jobs, s.cands, now, 8, nil)
		if len(want[i].commits) == 0 {
			t.Fatalf("scenario %d: no commit", i)
		}
	}
	before := make([]scenario, len(scs))
	for i, s := range scs {
		before[i] = scenario{slices.Clone(s.jobs), slices.Clone(s.cands)}
	}
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range 30 {
				i := (g + n) % len(scs)
				var got result
				got.commits, got.held = d.EpochHeld(scs[i].jobs, scs[i].cands, now, 8, nil)
				if !reflect.DeepEqual(got, want[i]) {
					errs <- fmt.Sprintf("goroutine %d, epoch %d (scenario %d): differs from alone", g, n, i)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	for i := range scs {
		if !reflect.DeepEqual(scs[i], before[i]) {
			t.Errorf("scenario %d: inputs modified", i)
		}
	}
}
