package core

import (
	"testing"
	"time"

	"github.com/tawsil/tawsil/backend/internal/order"
	"github.com/tawsil/tawsil/shared/wire"
)

// A courier's shift ends: its open offer is withdrawn and the next courier
// offered; an order assigned and not picked up is unassigned ("shift
// ended") and dispatched again without it; a parcel on board stays.
func TestShiftEnded(t *testing.T) {
	c := mustCore(t)
	off := t0.Add(5 * time.Second)

	// The open offer.
	r := offered(t, c, mustBooked(t, order.Policy{}))
	g := mustStep(t, c, r.State, ShiftEnded{Courier: "near"}, Input{Now: off})
	if ev := appended(t, g); ev.Action != order.ActExpire || ev.Reason != ShiftEndedReason || ev.At != off || g.State.Status != order.StatusBooked {
		t.Fatalf("offer withdrawn: %+v, %s", ev, g.State.Status)
	}
	if ct := one[CancelTimer](t, g); ct.ID != OfferTimerID("o1", 1, "near") {
		t.Fatalf("cancelled %+v", ct)
	}
	if p := one[Publish](t, g); p.Courier != "near" || p.Task.Type != wire.TaskOfferExpired || p.Task.Reason != ShiftEndedReason {
		t.Fatalf("the device is told %+v", p)
	}
	d := one[FollowUp](t, g).Event.(Dispatch)
	if !d.Exclude["near"] {
		t.Fatalf("dispatched again with %+v", d)
	}
	if w := mustStep(t, c, g.State, d, Input{Now: off}); len(w.Effects) != 0 || !Awaiting(g.State) {
		t.Fatalf("the order waits for the next epoch: %#v", w.Effects)
	}
	off2 := epoch(t, c, g.State, off, near("near", 0.001), near("far", 0.01))
	if off2.State.OfferedTo != "far" || !one[ArmTimer](t, off2).Timer.Due.Equal(off.Add(30*time.Second)) {
		t.Fatalf("next offer to %q", off2.State.OfferedTo)
	}
	if o := mustStep(t, c, off2.State, ShiftEnded{Courier: "near"}, Input{Now: off}); len(o.Effects) != 0 {
		t.Fatalf("another courier's offer changed: %#v", o.Effects)
	}

	// The assignment not picked up.
	a := mustStep(t, c, assignedTo(t, c, order.Policy{}, "k1"), ShiftEnded{Courier: "k1"}, Input{Now: off})
	if ev := appended(t, a); ev.Action != order.ActUnassign || ev.Reason != ShiftEndedReason || ev.Actor != SystemActor ||
		a.State.Status != order.StatusBooked || a.State.CourierID != "" {
		t.Fatalf("unassigned: %+v, %+v", ev, a.State.Order)
	}
	if n := find[Notify](a); len(n) != 1 || n[0].Name != "order.unassigned" || n[0].Data["reason"] != ShiftEndedReason {
		t.Fatalf("stream %+v", n)
	}
	if w := one[Webhook](t, a); w.Name != "order.unassigned" {
		t.Fatalf("webhook %+v", w)
	}
	if p := one[Publish](t, a); p.Courier != "k1" || p.Task.Type != wire.TaskCancellation || p.Task.Reason != ShiftEndedReason {
		t.Fatalf("the device is told %+v", p)
	}
	if rel := one[Released](t, a); rel.Courier != "k1" {
		t.Fatalf("released %+v", rel)
	}
	d = one[FollowUp](t, a).Event.(Dispatch)
	x := mustStep(t, c, a.State, d, Input{Now: off})
	re := epoch(t, c, x.State, off, near("k1", 0.0005), near("k2", 0.002))
	if re.State.OfferedTo != "k2" {
		t.Fatalf("re-dispatched to %q, want k2 (k1 is off shift)", re.State.OfferedTo)
	}
	if o := mustStep(t, c, assignedTo(t, c, order.Policy{}, "k1"), ShiftEnded{Courier: "k2"}, Input{Now: off}); len(o.Effects) != 0 {
		t.Fatalf("another courier's assignment changed: %#v", o.Effects)
	}

	// On board: picked up, or between attempts: the courier finishes it.
	for _, st := range []State{pickedUp(t, c, order.Policy{}), failedAt(t, c, order.Policy{}, t0.Add(20*time.Minute))} {
		if o := mustStep(t, c, st, ShiftEnded{Courier: "k1"}, Input{Now: t0.Add(30 * time.Minute)}); len(o.Effects) != 0 || o.State.Version != st.Version {
			t.Fatalf("%s on board changed: %#v", st.Status, o.Effects)
		}
	}
}
