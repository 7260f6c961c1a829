package mongostore

import (
	"fmt"
	"testing"
	"time"
)

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
