package dispatch

import (
	"testing"
	"time"
)

// A parcel not ready until later is handed to the courier then: the
// courier waits at the pick-up, and the predicted handover moves with it.
func TestReadyAtDelaysPickup(t *testing.T) {
	d := mustDispatcher(t, nil)
	drop := move(store, 1000, 0)
	job := newJob(drop)
	at := idle("c", store, 0)
	base, _ := d.Score(job, []Candidate{at}, now)
	job.ReadyAt = now.Add(20 * time.Minute)
	late, _ := d.Score(job, []Candidate{at}, now)
	if len(base) != 1 || len(late) != 1 {
		t.Fatalf("ranked %d and %d, want 1 and 1", len(base), len(late))
	}
	if got := late[0].DeliveryAt.Sub(base[0].DeliveryAt); got != 20*time.Minute {
		t.Errorf("a parcel ready 20 min later is handed over %v later, want 20m", got)
	}
	if p := late[0].Plan[0]; p.Kind != StopPickup || !p.ReadyAt.Equal(job.ReadyAt) {
		t.Errorf("the planned pick-up %+v does not carry the ready time", p)
	}
	// The ready time of a pick-up already on a route holds too, and the
	// wait is used: a parcel ready now goes out first.
	busy := idle("b", store, 0)
	busy.Route = late[0].Plan
	next := Job{OrderID: "M", Pickup: store, Dropoff: move(store, 0, 800), PromiseBy: now.Add(90 * time.Minute)}
	r, _ := d.Score(next, []Candidate{busy}, now)
	if len(r) != 1 || r[0].Plan[0].OrderID != "M" {
		t.Fatalf("want M delivered while N is prepared, got %+v", r)
	}
	n, ok := d.PredictDelivery("N", store, r[0].Plan, now)
	if !ok || n.Before(job.ReadyAt.Add(d.Config().PickupService)) {
		t.Errorf("N handed over at %v, before it is ready (%v) and picked up", n, job.ReadyAt)
	}
}

// A courier still busy where it is (a handover, a leg it cannot leave)
// starts on the job when it is free.
func TestFreeAtDelaysStart(t *testing.T) {
	d := mustDispatcher(t, nil)
	job := newJob(move(store, 1000, 0))
	c := idle("c", move(store, 500, 0), 0)
	base, _ := d.Score(job, []Candidate{c}, now)
	c.FreeAt = now.Add(7 * time.Minute)
	busy, _ := d.Score(job, []Candidate{c}, now)
	if got := busy[0].PickupAt.Sub(base[0].PickupAt); got != 7*time.Minute {
		t.Errorf("free 7 min later reaches the pick-up %v later, want 7m", got)
	}
	c.FreeAt = now.Add(-time.Minute) // in the past: now
	past, _ := d.Score(job, []Candidate{c}, now)
	if !past[0].PickupAt.Equal(base[0].PickupAt) {
		t.Errorf("a FreeAt in the past changed the pick-up: %v vs %v", past[0].PickupAt, base[0].PickupAt)
	}
}
