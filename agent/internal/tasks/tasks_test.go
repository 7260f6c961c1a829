package tasks

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/tawsil/tawsil/shared/wire"
)

type memSeq struct{ v uint64 }

func (m *memSeq) TaskSeq() (uint64, error)  { return m.v, nil }
func (m *memSeq) SetTaskSeq(v uint64) error { m.v = v; return nil }

var now = time.Date(2025, 6, 12, 9, 0, 0, 0, time.UTC)

func msg(tb testing.TB, t wire.Task) []byte {
	tb.Helper()
	t.V = wire.MessageVersion
	t.At = now
	b, err := json.Marshal(t)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func TestBook(t *testing.T) {
	later := now.Add(time.Minute)
	earlier := now.Add(-time.Minute)
	order := &wire.TaskOrder{ID: "o1", Pickup: wire.Place{Lat: 33.59, Lng: -7.61}, Dropoff: wire.Place{Lat: 33.58, Lng: -7.63}, PromiseBy: later}
	tests := []struct {
		name            string
		give            []wire.Task
		wantErrs        []error
		wantOffers      []string
		wantAssignments []string
		wantRouteVer    uint64
		wantLast        uint64
	}{
		{
			name:       "offer",
			give:       []wire.Task{{Seq: 1, Type: wire.TaskOffer, OrderID: "o1", ExpiresAt: &later, Order: order}},
			wantErrs:   []error{nil},
			wantOffers: []string{"o1"}, wantLast: 1,
		},
		{
			name: "offer then assignment",
			give: []wire.Task{
				{Seq: 1, Type: wire.TaskOffer, OrderID: "o1", ExpiresAt: &later, Order: order},
				{Seq: 2, Type: wire.TaskAssignment, OrderID: "o1", Order: order},
			},
			wantErrs:        []error{nil, nil},
			wantAssignments: []string{"o1"}, wantLast: 2,
		},
		{
			name: "stale redelivery ignored",
			give: []wire.Task{
				{Seq: 5, Type: wire.TaskAssignment, OrderID: "o1", Order: order},
				{Seq: 6, Type: wire.TaskCancellation, OrderID: "o1", Reason: "merchant_cancelled"},
				{Seq: 5, Type: wire.TaskAssignment, OrderID: "o1", Order: order},
			},
			wantErrs: []error{nil, nil, ErrStale}, wantLast: 6,
		},
		{
			name:     "expired offer hidden",
			give:     []wire.Task{{Seq: 1, Type: wire.TaskOffer, OrderID: "o1", ExpiresAt: &earlier, Order: order}},
			wantErrs: []error{nil}, wantLast: 1,
		},
		{
			name: "latest route plan",
			give: []wire.Task{
				{Seq: 3, Type: wire.TaskRoutePlan, Route: &wire.Route{Version: 2, Stops: []wire.Stop{{OrderID: "o1", Kind: wire.StopPickup, Lat: 33.59, Lng: -7.61, ETA: later}}}},
				{Seq: 4, Type: wire.TaskRoutePlan, Route: &wire.Route{Version: 3, Stops: []wire.Stop{}}},
			},
			wantErrs: []error{nil, nil}, wantRouteVer: 3, wantLast: 4,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := &memSeq{}
			b, err := NewBook(store, func() time.Time { return now })
			if err != nil {
				t.Fatal(err)
			}
			for i, task := range tt.give {
				if _, err := b.Apply(msg(t, task)); !errors.Is(err, tt.wantErrs[i]) {
					t.Fatalf("message %d: err %v, want %v", i, err, tt.wantErrs[i])
				}
			}
			v := b.View()
			if got := ids(v.Offers); !same(got, tt.wantOffers) {
				t.Errorf("offers %v, want %v", got, tt.wantOffers)
			}
			if got := ids(v.Assignments); !same(got, tt.wantAssignments) {
				t.Errorf("assignments %v, want %v", got, tt.wantAssignments)
			}
			if (v.Route == nil && tt.wantRouteVer != 0) || (v.Route != nil && v.Route.Version != tt.wantRouteVer) {
				t.Errorf("route %+v, want version %d", v.Route, tt.wantRouteVer)
			}
			if v.LastTaskSeq != tt.wantLast || store.v != tt.wantLast {
				t.Errorf("last seq %d (stored %d), want %d", v.LastTaskSeq, store.v, tt.wantLast)
			}
		})
	}
}

func TestBookResumesFromStoredSeq(t *testing.T) {
	b, err := NewBook(&memSeq{v: 10}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Apply(msg(t, wire.Task{Seq: 9, Type: wire.TaskOffer, OrderID: "o9"})); !errors.Is(err, ErrStale) {
		t.Fatalf("seq 9 after a restart at 10: %v, want ErrStale", err)
	}
	if _, err := b.Apply([]byte(`{"v":1,"seq":11,"type":"teleport"}`)); !errors.Is(err, wire.ErrTask) {
		t.Fatalf("bad type: %v, want wire.ErrTask", err)
	}
}

func ids(ts []wire.Task) []string {
	var out []string
	for _, t := range ts {
		out = append(out, t.OrderID)
	}
	return out
}

func same(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
