package topic

import "testing"

func TestParse(t *testing.T) {
	tests := []struct {
		give     string
		wantID   string
		wantKind Kind
		wantOK   bool
	}{
		{give: "tawsil/v1/couriers/c42/pos", wantID: "c42", wantKind: Pos, wantOK: true},
		{give: "tawsil/v1/couriers/c-1_x/state", wantID: "c-1_x", wantKind: State, wantOK: true},
		{give: "tawsil/v1/couriers/c42/tasks", wantID: "c42", wantKind: Tasks, wantOK: true},
		{give: "tawsil/v1/couriers/c42/config", wantID: "c42", wantKind: Config, wantOK: true},
		{give: "tawsil/v1/couriers/c42/ack", wantID: "c42", wantKind: Ack, wantOK: true},
		{give: "owntracks/c42/phone", wantID: "c42", wantKind: OwnTracks, wantOK: true},
		{give: "owntracks/c42/Ali's iPhone", wantID: "c42", wantKind: OwnTracks, wantOK: true},
		{give: "owntracks/c42/téléphone", wantID: "c42", wantKind: OwnTracks, wantOK: true},
		{give: "owntracks/c42/a+b", wantOK: false},
		{give: "owntracks/c42/a#", wantOK: false},
		{give: "owntracks/c42/", wantOK: false},
		{give: "owntracks/c 42/phone", wantOK: false},
		{give: "owntracks/c42/a\x00b", wantOK: false},
		{give: "owntracks/c42", wantOK: false},
		{give: "owntracks/c42/phone/extra", wantOK: false},
		{give: "tawsil/v1/couriers/+/pos", wantOK: false},
		{give: "tawsil/v1/couriers/#", wantOK: false},
		{give: "tawsil/v1/couriers//pos", wantOK: false},
		{give: "tawsil/v1/couriers/c42/pos/x", wantOK: false},
		{give: "tawsil/v1/couriers/c42/other", wantOK: false},
		{give: "tawsil/v2/couriers/c42/pos", wantOK: false},
		{give: "$SYS/broker", wantOK: false},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			id, kind, ok := Parse(DefaultPrefix, tt.give)
			if ok != tt.wantOK || id != tt.wantID || kind != tt.wantKind {
				t.Fatalf("Parse(%q) = %q, %q, %v; want %q, %q, %v", tt.give, id, kind, ok, tt.wantID, tt.wantKind, tt.wantOK)
			}
		})
	}
}

func TestParseOwnTracksSub(t *testing.T) {
	tests := []struct {
		give                 string
		wantUser, wantDevice string
		wantSub              string
		wantOK               bool
	}{
		{give: "owntracks/c42/phone/event", wantUser: "c42", wantDevice: "phone", wantSub: "event", wantOK: true},
		{give: "owntracks/c42/phone/cmd", wantUser: "c42", wantDevice: "phone", wantSub: "cmd", wantOK: true},
		{give: "owntracks/c42/Ali's iPhone/event", wantUser: "c42", wantDevice: "Ali's iPhone", wantSub: "event", wantOK: true},
		{give: "owntracks/c42/phone", wantOK: false},
		{give: "owntracks/c42/phone/event/x", wantOK: false},
		{give: "owntracks/+/+/event", wantOK: false},
		{give: "owntracks/c42/phone/#", wantOK: false},
		{give: "tawsil/v1/couriers/c42/pos", wantOK: false},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			u, d, s, ok := ParseOwnTracksSub(tt.give)
			if ok != tt.wantOK || u != tt.wantUser || d != tt.wantDevice || s != tt.wantSub {
				t.Fatalf("ParseOwnTracksSub(%q) = %q %q %q %v", tt.give, u, d, s, ok)
			}
		})
	}
}

func TestCourierRoundTrip(t *testing.T) {
	for _, k := range []Kind{Pos, State, Tasks, Config, Ack} {
		id, kind, ok := Parse(DefaultPrefix, Courier(DefaultPrefix, "abc", k))
		if !ok || id != "abc" || kind != k {
			t.Fatalf("round trip of %s: %q %q %v", k, id, kind, ok)
		}
	}
}

func TestValidID(t *testing.T) {
	long := make([]byte, MaxIDLen+1)
	for i := range long {
		long[i] = 'a'
	}
	for _, bad := range []string{"", "a/b", "+", "#", "a b", "$x", "é", string(long)} {
		if ValidID(bad) {
			t.Errorf("ValidID(%q) = true", bad)
		}
	}
	for _, good := range []string{"a", "C-42", "665f1c2e9b1e8a0001a1b2c3", string(long[:MaxIDLen])} {
		if !ValidID(good) {
			t.Errorf("ValidID(%q) = false", good)
		}
	}
}

func TestFilters(t *testing.T) {
	if got := Filter(DefaultPrefix, Pos); got != "tawsil/v1/couriers/+/pos" {
		t.Fatal(got)
	}
	if got := Filter(DefaultPrefix, OwnTracks); got != "owntracks/+/+" {
		t.Fatal(got)
	}
	if got := Shared("backend", "a/+/b"); got != "$share/backend/a/+/b" {
		t.Fatal(got)
	}
}

func TestCompact(t *testing.T) {
	id := "5f2b3c4d5e6f708192a3b4c5" // a courier id as the backend issues them
	if got := CompactCourier(DefaultPrefix, id, Pos); got != "t/"+id {
		t.Fatalf("compact pos %q", got)
	}
	if got := CompactCourier(DefaultPrefix, id, Ack); got != "t/"+id+"/a" {
		t.Fatalf("compact ack %q", got)
	}
	if got := CompactCourier(DefaultPrefix, id, Tasks); got != Courier(DefaultPrefix, id, Tasks) {
		t.Fatalf("tasks have no compact form, got %q", got)
	}
	tests := []struct {
		prefix, give string
		id           string
		kind         Kind
		ok, compact  bool
	}{
		{DefaultPrefix, "t/" + id, id, Pos, true, true},
		{DefaultPrefix, "t/" + id + "/a", id, Ack, true, true},
		{DefaultPrefix, "t/" + id + "/b", "", "", false, false},
		{DefaultPrefix, "t/" + id + "/a/x", "", "", false, false},
		{DefaultPrefix, "t/+", "", "", false, false},
		{DefaultPrefix, "t/", "", "", false, false},
		{DefaultPrefix, "tawsil/v1/couriers/" + id + "/pos", id, Pos, true, false},
		{"acme/x", "acme/x/" + id, id, Pos, true, true},
		{"acme/x", "acme/x/couriers/a", "couriers", Ack, true, true},
		{"acme/x", "acme/x/couriers/c1/pos", "c1", Pos, true, false},
		{"acme/x", "t/" + id, "", "", false, false}, // another deployment's compact topic
	}
	for _, tt := range tests {
		id, kind, ok := Parse(tt.prefix, tt.give)
		if id != tt.id || kind != tt.kind || ok != tt.ok {
			t.Errorf("Parse(%q, %q) = %q, %q, %v; want %q, %q, %v", tt.prefix, tt.give, id, kind, ok, tt.id, tt.kind, tt.ok)
		}
		if c := IsCompact(tt.prefix, tt.give); c != tt.compact {
			t.Errorf("IsCompact(%q, %q) = %v", tt.prefix, tt.give, c)
		}
	}
	if f := CompactFilter(DefaultPrefix); f != "t/+" {
		t.Fatalf("filter %q", f)
	}
}
