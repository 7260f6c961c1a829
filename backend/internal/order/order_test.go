package order

import (
	"errors"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)

func mustBook(tb testing.TB) *Order {
	tb.Helper()
	o, err := Book(Booking{
		ID: "o1", MerchantID: "m1",
		Pickup:  Place{Lat: 33.5892, Lng: -7.6325, Address: "Twin Center"},
		Dropoff: Place{Lat: 33.5731, Lng: -7.5898, Address: "12 rue X, Maarif"},
		Size:    SizeM, CODAmountMAD: 250, CustomerName: "Salma B.", CustomerPhone: "+212612345678",
		Notes: "3e étage", PriceMAD: 25, Policy: Policy{AllowRelay: true},
	}, t0)
	if err != nil {
		tb.Fatalf("Book: %v", err)
	}
	return o
}

// orderIn returns an order put directly in status s, with the fields that
// status implies (courier c1, one failed attempt...).
func orderIn(tb testing.TB, s Status) *Order {
	tb.Helper()
	o := mustBook(tb)
	o.Status = s
	switch s {
	case StatusOffered:
		o.OfferedTo = "c1"
	case StatusBooked:
	default:
		o.CourierID = "c1"
	}
	if s == StatusFailedAttempt || s == StatusReattemptScheduled || s == StatusReturning {
		o.Attempts = []Attempt{{N: 1, Reason: "customer_unavailable", At: t0}}
	}
	return o
}

func actorFor(r Role) Actor {
	switch r {
	case RoleCourier:
		return Actor{Role: r, ID: "c1"}
	case RoleMerchant:
		return Actor{Role: r, ID: "m1"}
	}
	return Actor{Role: r, ID: string(r) + "-1"}
}

func actionFor(k Kind) Action {
	a := Action{Kind: k, At: t0.Add(10 * time.Minute), Where: &Point{Lat: 33.58, Lng: -7.60}, Note: "n"}
	switch k {
	case ActOffer, ActAssign:
		a.CourierID = "c1"
	case ActFail:
		a.Reason = "customer_unavailable"
	}
	return a
}

func TestApplyEveryTransition(t *testing.T) {
	for _, tr := range Transitions() {
		for _, r := range tr.Roles {
			t.Run(string(tr.From)+"/"+string(tr.Action)+"/"+string(r), func(t *testing.T) {
				o := orderIn(t, tr.From)
				o.Flags.NeedsDispatcher = true
				ver := o.Version
				a := actionFor(tr.Action)
				actor := actorFor(r)
				ev, err := Apply(o, a, actor)
				if err != nil {
					t.Fatalf("Apply: %v", err)
				}
				want := Event{
					OrderID: "o1", From: tr.From, To: tr.To, Action: tr.Action, Actor: actor,
					At: a.At, Note: "n", Reason: a.Reason, Version: ver + 1,
				}
				if ev.Lat == nil || *ev.Lat != 33.58 || ev.Lng == nil || *ev.Lng != -7.60 {
					t.Errorf("event position = %v,%v, want 33.58,-7.60", ev.Lat, ev.Lng)
				}
				ev.Lat, ev.Lng = nil, nil
				if ev != want {
					t.Errorf("event = %+v\nwant    %+v", ev, want)
				}
				if o.Status != tr.To || o.Version != ver+1 {
					t.Errorf("order status,version = %s,%d, want %s,%d", o.Status, o.Version, tr.To, ver+1)
				}
				if o.Flags.NeedsDispatcher {
					t.Error("needs_dispatcher survives the transition (resolved, delivered, returned, cancelled...)")
				}
			})
		}
	}
}

func TestApplyOutsideTableChangesNothing(t *testing.T) {
	roles := []Role{RoleMerchant, RoleDispatcher, RoleCourier, RoleAdmin, RoleSystem}
	n := 0
	for _, s := range Statuses() {
		for _, k := range Kinds() {
			if _, ok := Lookup(s, k); ok {
				continue
			}
			for _, r := range roles {
				n++
				o := orderIn(t, s)
				before := o.Clone()
				_, err := Apply(o, actionFor(k), actorFor(r))
				if !errors.Is(err, ErrInvalidTransition) {
					t.Errorf("%s/%s by %s: err = %v, want ErrInvalidTransition", s, k, r, err)
				}
				if !reflect.DeepEqual(o, before) {
					t.Errorf("%s/%s by %s changed the order", s, k, r)
				}
			}
		}
	}
	if n < 100 {
		t.Fatalf("only %d illegal pairs generated; table looks too permissive", n)
	}
}

func TestTerminalStatusesHaveNoWayOut(t *testing.T) {
	for _, tr := range Transitions() {
		if tr.From.Terminal() {
			t.Errorf("transition out of terminal %s: %s", tr.From, tr.Action)
		}
	}
}

func TestApplyForbidden(t *testing.T) {
	tests := []struct {
		name  string
		give  Status
		act   Kind
		actor Actor
	}{
		{"courier cancels", StatusAssigned, ActCancel, Actor{RoleCourier, "c1"}},
		{"merchant cancels after pickup", StatusPickedUp, ActCancel, Actor{RoleMerchant, "m1"}},
		{"merchant cancels other's order", StatusBooked, ActCancel, Actor{RoleMerchant, "m2"}},
		{"other courier accepts", StatusOffered, ActAccept, Actor{RoleCourier, "c2"}},
		{"other courier picks up", StatusAssigned, ActPickup, Actor{RoleCourier, "c2"}},
		{"courier without id", StatusAssigned, ActPickup, Actor{RoleCourier, ""}},
		{"merchant delivers", StatusPickedUp, ActDeliver, Actor{RoleMerchant, "m1"}},
		{"dispatcher accepts for courier", StatusOffered, ActAccept, Actor{RoleDispatcher, "d1"}},
		{"courier expires offer", StatusOffered, ActExpire, Actor{RoleCourier, "c1"}},
		{"courier reassigns itself", StatusFailedAttempt, ActReassign, Actor{RoleCourier, "c1"}},
		{"system cancels booked", StatusBooked, ActCancel, Actor{RoleSystem, "s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := orderIn(t, tt.give)
			before := o.Clone()
			_, err := Apply(o, actionFor(tt.act), tt.actor)
			if !errors.Is(err, ErrForbidden) {
				t.Fatalf("err = %v, want ErrForbidden", err)
			}
			if !reflect.DeepEqual(o, before) {
				t.Error("order changed")
			}
		})
	}
}

func TestApplyInvalidAction(t *testing.T) {
	tests := []struct {
		name  string
		give  Status
		patch func(*Action, *Order)
		want  error
	}{
		{"no time", StatusBooked, func(a *Action, _ *Order) { a.Kind = ActCancel; a.At = time.Time{} }, ErrInvalidAction},
		{"offer without courier", StatusBooked, func(a *Action, _ *Order) { a.Kind = ActOffer; a.CourierID = " " }, ErrInvalidAction},
		{"fail without reason", StatusPickedUp, func(a *Action, _ *Order) { a.Kind = ActFail; a.Reason = "" }, ErrInvalidAction},
		{"bad position", StatusAssigned, func(a *Action, _ *Order) { a.Kind = ActPickup; a.Where = &Point{Lat: 91} }, ErrInvalidAction},
		{"relay not allowed", StatusPickedUp, func(a *Action, o *Order) { a.Kind = ActDeliverRelay; o.Policy.AllowRelay = false }, ErrInvalidAction},
		{"wrong code", StatusPickedUp, func(a *Action, o *Order) {
			a.Kind = ActDeliver
			o.Policy.RequireHandoverCode = true
			a.Code = "x" + o.HandoverCode[1:]
		}, ErrHandoverCode},
		{"missing code", StatusPickedUp, func(a *Action, o *Order) { a.Kind = ActDeliver; o.Policy.RequireHandoverCode = true }, ErrHandoverCode},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := orderIn(t, tt.give)
			a := actionFor(ActCancel)
			tt.patch(&a, o)
			before := o.Clone()
			_, err := Apply(o, a, allowedActor(tt.give, a.Kind))
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if !reflect.DeepEqual(o, before) {
				t.Error("order changed")
			}
		})
	}
}

// allowedActor picks an actor allowed to take k from s (as orderIn builds it).
func allowedActor(s Status, k Kind) Actor {
	t, _ := Lookup(s, k)
	return actorFor(t.Roles[0])
}

func TestHappyPathWithCOD(t *testing.T) {
	o := mustBook(t)
	o.Policy.RequireHandoverCode = true
	steps := []struct {
		act   Action
		actor Actor
		want  Status
	}{
		{Action{Kind: ActOffer, CourierID: "c7"}, Actor{RoleSystem, "dispatch"}, StatusOffered},
		{Action{Kind: ActDecline}, Actor{RoleCourier, "c7"}, StatusBooked},
		{Action{Kind: ActOffer, CourierID: "c8"}, Actor{RoleSystem, "dispatch"}, StatusOffered},
		{Action{Kind: ActAccept}, Actor{RoleCourier, "c8"}, StatusAssigned},
		{Action{Kind: ActPickup}, Actor{RoleCourier, "c8"}, StatusPickedUp},
		{Action{Kind: ActFail, Reason: "customer_unavailable", Verified: true}, Actor{RoleCourier, "c8"}, StatusFailedAttempt},
		{Action{Kind: ActReattempt, Reason: "rule R2"}, Actor{RoleSystem, "rules"}, StatusReattemptScheduled},
		{Action{Kind: ActDeliver, Code: o.HandoverCode, CashMAD: 250}, Actor{RoleCourier, "c8"}, StatusDelivered},
	}
	at := t0
	for i, st := range steps {
		at = at.Add(5 * time.Minute)
		st.act.At = at
		if _, err := Apply(o, st.act, st.actor); err != nil {
			t.Fatalf("step %d %s: %v", i, st.act.Kind, err)
		}
		if o.Status != st.want {
			t.Fatalf("step %d: status %s, want %s", i, o.Status, st.want)
		}
	}
	if o.CourierID != "c8" || o.CashCollected != 250 || o.Version != 1+len(steps) {
		t.Errorf("courier %q cash %v version %d", o.CourierID, o.CashCollected, o.Version)
	}
	if len(o.Attempts) != 1 || o.Attempts[0].Decision != "reattempt" || !o.Attempts[0].Verified {
		t.Errorf("attempts = %+v", o.Attempts)
	}
	if o.Milestones.DeliveredAt != at || o.Milestones.AssignedAt.IsZero() || o.Milestones.PickedUpAt.IsZero() {
		t.Errorf("milestones = %+v", o.Milestones)
	}
}

func TestReassignGoesBackToDispatch(t *testing.T) {
	o := orderIn(t, StatusFailedAttempt)
	ev, err := Apply(o, Action{Kind: ActReassign, At: t0, Reason: "courier_incident"}, Actor{RoleSystem, "rules"})
	if err != nil {
		t.Fatal(err)
	}
	if ev.To != StatusBooked || o.CourierID != "" || o.Reassignments != 1 || o.Attempts[0].Decision != "reassign" {
		t.Errorf("after reassign: event %+v order courier %q reassignments %d", ev, o.CourierID, o.Reassignments)
	}
}

func TestRelayDelivery(t *testing.T) {
	o := orderIn(t, StatusPickedUp)
	if _, err := Apply(o, Action{Kind: ActDeliverRelay, At: t0}, Actor{RoleCourier, "c1"}); err != nil {
		t.Fatal(err)
	}
	if o.Status != StatusDelivered || !o.Relay {
		t.Errorf("status %s relay %v", o.Status, o.Relay)
	}
}

func TestHandoverCode(t *testing.T) {
	seen := map[string]bool{}
	re := regexp.MustCompile(`^[0-9]{6}$`)
	for range 200 {
		c, err := NewHandoverCode()
		if err != nil {
			t.Fatal(err)
		}
		if !re.MatchString(c) {
			t.Fatalf("code %q is not 6 digits", c)
		}
		seen[c] = true
	}
	if len(seen) < 190 {
		t.Errorf("only %d distinct codes in 200", len(seen))
	}
	tests := []struct {
		want, give string
		ok         bool
	}{
		{"012345", "012345", true},
		{"012345", "012346", false},
		{"012345", "01234", false},
		{"012345", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		if got := CheckHandoverCode(tt.want, tt.give); got != tt.ok {
			t.Errorf("CheckHandoverCode(%q,%q) = %v, want %v", tt.want, tt.give, got, tt.ok)
		}
	}
}

func TestMaskPhone(t *testing.T) {
	tests := []struct{ give, want string }{
		{"+212612345678", "+212 6•• ••• •78"},
		{"+212 6 12 34 56 78", "+212 6•• ••• •78"},
		{"0612345678", "06•• ••• •78"},
		{"612345678", "6•• ••• •78"},
		{"123", "•••"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := MaskPhone(tt.give); got != tt.want {
			t.Errorf("MaskPhone(%q) = %q, want %q", tt.give, got, tt.want)
		}
	}
}

func TestRedact(t *testing.T) {
	o := orderIn(t, StatusFailedAttempt)
	o.Attempts[0].Note = "called Salma at +212612345678"
	o.Redact()
	for name, v := range map[string]string{
		"name": o.CustomerName, "phone": o.CustomerPhone, "address": o.Dropoff.Address,
		"notes": o.Notes, "token": o.TrackingToken, "code": o.HandoverCode, "attempt note": o.Attempts[0].Note,
	} {
		if v != "" {
			t.Errorf("%s not blanked: %q", name, v)
		}
	}
	if o.CODAmountMAD != 250 || o.PriceMAD != 25 || o.Attempts[0].Reason != "customer_unavailable" || !o.Redacted {
		t.Errorf("figures lost: %+v", o)
	}
	if o.Dropoff.Lat != 33.573 || o.Dropoff.Lng != -7.590 {
		t.Errorf("dropoff coarsened to %v,%v, want 33.573,-7.59", o.Dropoff.Lat, o.Dropoff.Lng)
	}
}

func TestBookRejects(t *testing.T) {
	ok := Booking{
		ID: "o", MerchantID: "m", Size: SizeS, CustomerPhone: "0612345678",
		Pickup: Place{Lat: 33.5, Lng: -7.6}, Dropoff: Place{Lat: 33.6, Lng: -7.5},
	}
	tests := []struct {
		name string
		give func(*Booking)
	}{
		{"no id", func(b *Booking) { b.ID = "" }},
		{"no merchant", func(b *Booking) { b.MerchantID = "" }},
		{"size", func(b *Booking) { b.Size = "XL" }},
		{"cod", func(b *Booking) { b.CODAmountMAD = -1 }},
		{"phone", func(b *Booking) { b.CustomerPhone = " " }},
		{"pickup range", func(b *Booking) { b.Pickup.Lat = 95 }},
		{"dropoff null island", func(b *Booking) { b.Dropoff = Place{} }},
	}
	if _, err := Book(ok, t0); err != nil {
		t.Fatalf("valid booking refused: %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := ok
			tt.give(&b)
			if _, err := Book(b, t0); !errors.Is(err, ErrInvalidOrder) {
				t.Errorf("err = %v, want ErrInvalidOrder", err)
			}
		})
	}
	o, err := Book(ok, t0)
	if err != nil {
		t.Fatal(err)
	}
	if o.PromiseBy != t0.Add(time.Hour) || o.Status != StatusBooked || len(o.TrackingToken) < 20 || strings.TrimSpace(o.HandoverCode) == "" {
		t.Errorf("booked order = %+v", o)
	}
}

func BenchmarkApply(b *testing.B) {
	b.ReportAllocs()
	base := orderIn(b, StatusPickedUp)
	a := Action{Kind: ActDeliver, At: t0}
	actor := Actor{RoleCourier, "c1"}
	for b.Loop() {
		o := *base
		if _, err := Apply(&o, a, actor); err != nil {
			b.Fatal(err)
		}
	}
}
