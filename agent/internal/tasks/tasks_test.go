package tasks

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/tawsil/tawsil/shared/wire"
)

type memSeq struct {
	v    uint64
	plan []byte
}

func (m *memSeq) TaskState() (uint64, []byte, error) { return m.v, m.plan, nil }
func (m *memSeq) SetTaskState(v uint64, plan []byte) error {
	m.v = v
	if plan != nil {
		m.plan = plan
	}
	return nil
}

func plan(seq, version uint64, orders ...string) wire.Task {
	r := &wire.Route{Version: version, Stops: []wire.Stop{}}
	for _, o := range orders {
		r.Stops = append(r.Stops, wire.Stop{OrderID: o, Kind: wire.StopDropoff, Lat: 33.58, Lng: -7.63, ETA: now})
	}
	return wire.Task{Seq: seq, Type: wire.TaskRoutePlan, Route: r}
}

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
		{
			// Two replicas re-planned at once: the older version got the
			// higher sequence number. It is not applied, nor counted.
			name:     "older plan with a higher seq",
			give:     []wire.Task{plan(3, 6, "o1", "o2"), plan(4, 5, "o1")},
			wantErrs: []error{nil, ErrOldPlan}, wantRouteVer: 6, wantLast: 3,
		},
		{
			// An offer overtook the newest plan on the way.
			name:     "newer plan overtaken by a task",
			give:     []wire.Task{plan(3, 1, "o1"), {Seq: 5, Type: wire.TaskOffer, OrderID: "o2", ExpiresAt: &later, Order: order}, plan(4, 2, "o1", "o2")},
			wantErrs: []error{nil, nil, nil}, wantOffers: []string{"o2"}, wantRouteVer: 2, wantLast: 5,
		},
		{
			name:     "plan redelivered",
			give:     []wire.Task{plan(3, 2, "o1"), plan(3, 2, "o1")},
			wantErrs: []error{nil, ErrOldPlan}, wantRouteVer: 2, wantLast: 3,
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

// The plan in force survives a restart: an older plan delivered after it
// (the broker's retained copy, another replica's late publish) is refused.
func TestBookResumesPlan(t *testing.T) {
	store := &memSeq{}
	b, err := NewBook(store, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Apply(msg(t, plan(20, 7, "o1", "o2"))); err != nil {
		t.Fatal(err)
	}
	b, err = NewBook(store, nil) // restarted
	if err != nil {
		t.Fatal(err)
	}
	if v := b.View(); v.Route == nil || v.Route.Version != 7 || len(v.Route.Stops) != 2 || v.RouteSeq != 20 || v.LastTaskSeq != 20 {
		t.Fatalf("after a restart: %+v, want plan 7 of seq 20 in force", v)
	}
	for _, old := range []wire.Task{plan(20, 7, "o1", "o2"), plan(21, 6, "o1")} {
		if _, err := b.Apply(msg(t, old)); !errors.Is(err, ErrOldPlan) {
			t.Fatalf("plan %d after a restart with plan 7: %v, want ErrOldPlan", old.Route.Version, err)
		}
	}
	if _, err := b.Apply(msg(t, plan(22, 8, "o2"))); err != nil {
		t.Fatal(err)
	}
	if v := b.View(); v.Route.Version != 8 {
		t.Fatalf("plan %d in force, want 8", v.Route.Version)
	}
}

func TestBookDropsUnreadablePlan(t *testing.T) {
	b, err := NewBook(&memSeq{v: 4, plan: []byte("{garbage")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if v := b.View(); v.Route != nil || v.LastTaskSeq != 4 {
		t.Fatalf("%+v: want no plan, seq 4", v)
	}
	if _, err := b.Apply(msg(t, plan(3, 1, "o1"))); err != nil {
		t.Fatalf("first plan after an unreadable one: %v", err)
	}
}

func TestBookRefusesBadTypes(t *testing.T) {
	b, err := NewBook(&memSeq{v: 10}, nil)
	if err != nil {
		t.Fatal(err)
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
