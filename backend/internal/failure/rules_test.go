package failure

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func mustParse(tb testing.TB, src string) *RuleSet {
	tb.Helper()
	rs, err := Parse([]byte(src))
	if err != nil {
		tb.Fatalf("Parse: %v", err)
	}
	return rs
}

func TestParseReason(t *testing.T) {
	for _, r := range Reasons() {
		got, err := ParseReason(string(r))
		if err != nil || got != r {
			t.Errorf("ParseReason(%q) = %q, %v", r, got, err)
		}
	}
	_, err := ParseReason("customer_unavailable")
	if !errors.Is(err, ErrUnknownReason) {
		t.Fatalf("ParseReason(lower case) = %v, want ErrUnknownReason", err)
	}
	for _, r := range Reasons() {
		if !strings.Contains(err.Error(), string(r)) {
			t.Errorf("error %q does not list %s", err, r)
		}
	}
}

// bands of minutes left before the promise used by the scenario table.
var bands = []float64{45, 10, -5} // plenty, tight, already late

func TestDefaultScenarios(t *testing.T) {
	rs := Default()
	// want[reason][attempt-1] lists the deciding rule for cod=false in bands
	// 45, 10, -5, then cod=true in the same bands; merchant policy standard,
	// parcel size M, verified.
	const (
		ma = "max-attempts/standard"
		ca = "catch-all"
	)
	want := map[Reason][3][6]string{
		Damaged: {
			{"damaged", "damaged", "damaged", "damaged", "damaged", "damaged"},
			{"damaged", "damaged", "damaged", "damaged", "damaged", "damaged"},
			{"damaged", "damaged", "damaged", "damaged", "damaged", "damaged"},
		},
		CourierIncident: {
			{"courier-incident", "courier-incident", "courier-incident", "courier-incident", "courier-incident", "courier-incident"},
			{"courier-incident", "courier-incident", "courier-incident", "courier-incident", "courier-incident", "courier-incident"},
			{ma, ma, ma, ma, ma, ma},
		},
		UnsafeLocation: {
			{"unsafe-location", "unsafe-location", "unsafe-location", "unsafe-location", "unsafe-location", "unsafe-location"},
			{"unsafe-location", "unsafe-location", "unsafe-location", "unsafe-location", "unsafe-location", "unsafe-location"},
			{ma, ma, ma, ma, ma, ma},
		},
		CustomerRefused: {
			{"refused", "refused", "refused", "refused", "refused", "refused"},
			{"refused", "refused", "refused", "refused", "refused", "refused"},
			{"refused", "refused", "refused", "refused", "refused", "refused"},
		},
		CODNotAvailable: {
			{ca, ca, ca, "cod-cash-soon", "cod-next-wave", "cod-next-wave"},
			{ca, ca, ca, "cod-no-cash-again", "cod-no-cash-again", "cod-no-cash-again"},
			{ca, ca, ca, "cod-no-cash-again", "cod-no-cash-again", "cod-no-cash-again"},
		},
		BusinessClosed: {
			{"business-closed", "business-closed", "business-closed", "business-closed", "business-closed", "business-closed"},
			{ca, ca, ca, ca, ca, ca},
			{ca, ca, ca, ca, ca, ca},
		},
		AddressNotFound: {
			{"address-call", "address-call", "address-call", "address-call", "address-call", "address-call"},
			{"address-return", "address-return", "address-return", "address-return", "address-return", "address-return"},
			{"address-return", "address-return", "address-return", "address-return", "address-return", "address-return"},
		},
		AddressInaccessible: {
			{"address-call", "address-call", "address-call", "address-call", "address-call", "address-call"},
			{"address-return", "address-return", "address-return", "address-return", "address-return", "address-return"},
			{"address-return", "address-return", "address-return", "address-return", "address-return", "address-return"},
		},
		CustomerUnavailable: {
			{"unavailable-same-route", "unavailable-call", "unavailable-call", "unavailable-same-route", "unavailable-call", "unavailable-call"},
			{"unavailable-next-wave", "unavailable-next-wave", "unavailable-next-wave", "unavailable-next-wave", "unavailable-next-wave", "unavailable-next-wave"},
			{ca, ca, ca, ca, ca, ca},
		},
	}
	actionOf := map[string]Action{
		"damaged": ReturnToMerchant, "courier-incident": Reassign, "unsafe-location": ContactCustomer,
		"refused": ReturnToMerchant, "cod-cash-soon": RetryLater, "cod-next-wave": RetryLater,
		"cod-no-cash-again": ReturnToMerchant, "business-closed": RetryLater, "address-call": ContactCustomer,
		"address-return": ReturnToMerchant, "unavailable-same-route": RetryLater, "unavailable-call": ContactCustomer,
		"unavailable-next-wave": RetryLater, ca: ReturnToMerchant, ma: ReturnToMerchant,
	}
	if len(want) != len(Reasons()) {
		t.Fatalf("table covers %d reasons, want %d", len(want), len(Reasons()))
	}
	for reason, byAttempt := range want {
		for a, row := range byAttempt {
			for i, wantRule := range row {
				s := Situation{Reason: reason, Attempt: a + 1, MinutesLeft: bands[i%3], MerchantPolicy: "standard",
					COD: i >= 3, ParcelSize: "M", Verified: true}
				d := rs.Decide(s)
				if d.Rule != wantRule || d.Action != actionOf[wantRule] {
					t.Errorf("%+v: got %s by %q, want %s by %q\n%s", s, d.Action, d.Rule, actionOf[wantRule], wantRule, strings.Join(d.Explain, "\n"))
				}
				s.Verified = false
				if d := rs.Decide(s); d.Action != DispatcherReview || d.Rule != RuleUnverified {
					t.Errorf("unverified %+v: got %s by %q, want %s by %q", s, d.Action, d.Rule, DispatcherReview, RuleUnverified)
				}
			}
		}
	}
}

func TestDefaultPolicies(t *testing.T) {
	rs := Default()
	tests := []struct {
		name           string
		give           Situation
		wantAction     Action
		wantRule       string
		wantOverridden string
	}{
		{"relay small parcel", Situation{Reason: CustomerUnavailable, Attempt: 2, MinutesLeft: -20, MerchantPolicy: "relay_ok", ParcelSize: "S", Verified: true},
			RelayPoint, "unavailable-relay", ""},
		{"relay refuses large", Situation{Reason: CustomerUnavailable, Attempt: 2, MinutesLeft: -20, MerchantPolicy: "relay_ok", ParcelSize: "L", Verified: true},
			ReturnToMerchant, "catch-all", ""},
		{"relay_ok final action", Situation{Reason: CourierIncident, Attempt: 3, MinutesLeft: 5, MerchantPolicy: "relay_ok", ParcelSize: "M", Verified: true},
			RelayPoint, "max-attempts/relay_ok", "courier-incident"},
		{"strict return after two", Situation{Reason: AddressNotFound, Attempt: 2, MinutesLeft: 30, MerchantPolicy: "strict_return", ParcelSize: "M", Verified: true},
			ReturnToMerchant, "address-return", ""},
		{"strict return limit", Situation{Reason: CourierIncident, Attempt: 2, MinutesLeft: 30, MerchantPolicy: "strict_return", ParcelSize: "M", Verified: true},
			ReturnToMerchant, "max-attempts/strict_return", "courier-incident"},
		{"unsafe relay", Situation{Reason: UnsafeLocation, Attempt: 1, MinutesLeft: 30, MerchantPolicy: "relay_ok", ParcelSize: "M", Verified: true},
			RelayPoint, "unsafe-location-relay", ""},
		{"unknown policy uses global limits", Situation{Reason: CourierIncident, Attempt: 3, MinutesLeft: 30, MerchantPolicy: "vip", ParcelSize: "M", Verified: true},
			ReturnToMerchant, RuleMaxAttempts, "courier-incident"},
		{"unknown size", Situation{Reason: UnsafeLocation, Attempt: 1, MinutesLeft: 30, MerchantPolicy: "relay_ok", Verified: true},
			ContactCustomer, "unsafe-location", ""},
		{"attempt zero", Situation{Reason: Damaged, Attempt: 0, Verified: true}, DispatcherReview, RuleInvalid, ""},
		{"unknown reason", Situation{Reason: "LOST", Attempt: 1, Verified: true}, DispatcherReview, RuleInvalid, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := rs.Decide(tt.give)
			if d.Action != tt.wantAction || d.Rule != tt.wantRule || d.Overridden != tt.wantOverridden {
				t.Fatalf("got %s by %q (overrode %q), want %s by %q (overrode %q)\n%s",
					d.Action, d.Rule, d.Overridden, tt.wantAction, tt.wantRule, tt.wantOverridden, strings.Join(d.Explain, "\n"))
			}
		})
	}
}

func TestDecideParamsAndExplain(t *testing.T) {
	d := Default().Decide(Situation{Reason: CustomerUnavailable, Attempt: 1, MinutesLeft: 10, MerchantPolicy: "standard", COD: true, ParcelSize: "M", Verified: true})
	want := Params{ReplyWindowMinutes: 15, Then: RetryLater, RetryAfterMinutes: 60, NotifyCustomer: true}
	if d.Params != want {
		t.Fatalf("params %+v, want %+v", d.Params, want)
	}
	if got, want := d.Explain[0], `rule 1 "damaged": reason CUSTOMER_UNAVAILABLE not in [DAMAGED]`; got != want {
		t.Errorf("explain[0] = %q, want %q", got, want)
	}
	if got, want := d.Explain[len(d.Explain)-2], `rule 13 "unavailable-same-route": minutes left 10.0 not in [15, ∞)`; got != want {
		t.Errorf("explain[-2] = %q, want %q", got, want)
	}
	if got, want := d.Explain[len(d.Explain)-1], `rule 14 "unavailable-call" matched: contact_customer`; got != want {
		t.Errorf("explain[-1] = %q, want %q", got, want)
	}
}

const customRules = `
max_attempts: 2
final_action: cancel
rules:
  - name: unverified-late
    match: {verified: false, minutes_left: {max: -30}}
    action: return_to_merchant
  - name: verified-any
    match: {verified: true}
    action: retry_later
    after_next_stops: 3
  - name: catch-all
    action: cancel
`

func TestDecideUnverifiedRule(t *testing.T) {
	rs := mustParse(t, customRules)
	tests := []struct {
		name       string
		give       Situation
		wantAction Action
		wantRule   string
	}{
		{"unverified matched", Situation{Reason: CustomerUnavailable, Attempt: 1, MinutesLeft: -40}, ReturnToMerchant, "unverified-late"},
		{"unverified unmatched", Situation{Reason: CustomerUnavailable, Attempt: 1, MinutesLeft: -10}, DispatcherReview, RuleUnverified},
		{"verified", Situation{Reason: CustomerUnavailable, Attempt: 1, MinutesLeft: -40, Verified: true}, RetryLater, "verified-any"},
		{"verified at the limit", Situation{Reason: CustomerUnavailable, Attempt: 2, MinutesLeft: -40, Verified: true}, Cancel, RuleMaxAttempts},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := rs.Decide(tt.give)
			if d.Action != tt.wantAction || d.Rule != tt.wantRule {
				t.Fatalf("got %s by %q, want %s by %q\n%s", d.Action, d.Rule, tt.wantAction, tt.wantRule, strings.Join(d.Explain, "\n"))
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	const head = "max_attempts: 3\nfinal_action: return_to_merchant\npolicies: [{name: standard}]\nrules:\n"
	tests := []struct {
		name string
		give string
		want []string // substrings of the error
	}{
		{"empty", "", []string{"empty file"}},
		{"not yaml", "rules: [", []string{"yaml"}},
		{"unknown field", head + "  - name: a\n    actoin: cancel\n", []string{"field actoin not found"}},
		{"unknown action", head + "  - name: first\n    match: {reasons: [DAMAGED]}\n    action: cancel\n  - name: boom\n    action: explode\n",
			[]string{`rule 2 "boom": action: unknown action "explode"`}},
		{"no catch-all", head + "  - name: only\n    match: {reasons: [DAMAGED]}\n    action: cancel\n",
			[]string{`rule 1 "only": match: the last rule must be a catch-all`}},
		{"unreachable", head + "  - name: all\n    action: cancel\n  - name: never\n    action: cancel\n",
			[]string{`rule 2 "never": match: unreachable: rule 1`}},
		{"unknown reason", head + "  - name: r\n    match: {reasons: [LOST]}\n    action: cancel\n  - name: c\n    action: cancel\n",
			[]string{`rule 1 "r": match.reasons: unknown failure reason "LOST"`}},
		{"unknown policy", head + "  - name: p\n    match: {merchant_policy: [vip]}\n    action: cancel\n  - name: c\n    action: cancel\n",
			[]string{`rule 1 "p": match.merchant_policy: unknown policy "vip"`}},
		{"retry without params", head + "  - name: c\n    action: retry_later\n",
			[]string{`rule 1 "c": retry_after_minutes: retry_later needs exactly one`}},
		{"params on the wrong action", head + "  - name: c\n    action: cancel\n    reply_window_minutes: 5\n",
			[]string{`rule 1 "c": reply_window_minutes: only for contact_customer`}},
		{"contact without then", head + "  - name: c\n    action: contact_customer\n    reply_window_minutes: 5\n",
			[]string{`rule 1 "c": then:`}},
		{"attempt inverted", head + "  - name: a\n    match: {attempt: {min: 3, max: 2}}\n    action: cancel\n  - name: c\n    action: cancel\n",
			[]string{`rule 1 "a": match.attempt: min 3 > max 2`}},
		{"attempt unknown key", head + "  - name: a\n    match: {attempt: {from: 3}}\n    action: cancel\n  - name: c\n    action: cancel\n",
			[]string{`unknown key "from"`}},
		{"minutes inverted", head + "  - name: m\n    match: {minutes_left: {min: 10, max: 10}}\n    action: cancel\n  - name: c\n    action: cancel\n",
			[]string{`rule 1 "m": match.minutes_left: min 10 must be < max 10`}},
		{"bad size", head + "  - name: s\n    match: {parcel_size: [XL]}\n    action: cancel\n  - name: c\n    action: cancel\n",
			[]string{`rule 1 "s": match.parcel_size: unknown size "XL"`}},
		{"duplicate name", head + "  - name: c\n    match: {cod: true}\n    action: cancel\n  - name: c\n    action: cancel\n",
			[]string{`rule 2 "c": name: same name as rule 1`}},
		{"several at once", "max_attempts: 0\nfinal_action: retry_later\nrules:\n  - name: \"\"\n    action: nope\n",
			[]string{"max_attempts: must be >= 1", "final_action: must be one of", `rule 1 "": name: must not be empty`, `rule 1 "": action: unknown action "nope"`}},
		{"bad policy", "max_attempts: 3\nfinal_action: cancel\npolicies: [{name: x, final_action: retry_later}]\nrules:\n  - name: c\n    action: cancel\n",
			[]string{"policies[0].final_action"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs, err := Parse([]byte(tt.give))
			if err == nil {
				t.Fatalf("Parse succeeded with %d rules, want an error", len(rs.Rules))
			}
			if !errors.Is(err, ErrInvalidRules) {
				t.Errorf("error %v does not wrap ErrInvalidRules", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestDefaultRulesValid(t *testing.T) {
	rs, err := Parse(defaultRules)
	if err != nil {
		t.Fatalf("default_rules.yaml: %v", err)
	}
	if last := rs.Rules[len(rs.Rules)-1]; !last.Match.empty() {
		t.Fatalf("last default rule %q is not a catch-all", last.Name)
	}
}

func writeFile(tb testing.TB, dir, name, content string) string {
	tb.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		tb.Fatal(err)
	}
	return p
}

func TestEngineReload(t *testing.T) {
	dir := t.TempDir()
	e := NewEngine(nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	s := Situation{Reason: CustomerUnavailable, Attempt: 1, MinutesLeft: 45, MerchantPolicy: "standard", ParcelSize: "M", Verified: true}
	if d := e.Decide(s); d.Rule != "unavailable-same-route" {
		t.Fatalf("default engine decided by %q", d.Rule)
	}

	if err := e.Reload(writeFile(t, dir, "good.yaml", customRules)); err != nil {
		t.Fatalf("Reload(good): %v", err)
	}
	if d := e.Decide(s); d.Rule != "verified-any" {
		t.Fatalf("after reload decided by %q, want verified-any", d.Rule)
	}
	before := e.Rules()

	bad := writeFile(t, dir, "bad.yaml", "max_attempts: 3\nfinal_action: cancel\nrules:\n  - name: x\n    action: explode\n")
	if err := e.Reload(bad); !errors.Is(err, ErrInvalidRules) {
		t.Fatalf("Reload(bad) = %v, want ErrInvalidRules", err)
	}
	if err := e.Reload(filepath.Join(dir, "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Reload(missing) = %v, want ErrNotExist", err)
	}
	if e.Rules() != before {
		t.Fatal("a failed reload replaced the rules")
	}
	if d := e.Decide(s); d.Rule != "verified-any" {
		t.Fatalf("after failed reloads decided by %q, want verified-any", d.Rule)
	}
}

func FuzzParseRules(f *testing.F) {
	f.Add(defaultRules)
	f.Add([]byte(customRules))
	f.Add([]byte("max_attempts: 3\nfinal_action: cancel\nrules:\n  - name: a\n    match: {attempt: 2, minutes_left: {min: -5.5}}\n    action: cancel\n  - name: c\n    action: cancel\n"))
	f.Add([]byte("rules: [{name: a, match: {attempt: {min: 1, max: 0}}, action: contact_customer, then: retry_later}]"))
	f.Add([]byte("&a [*a]"))
	f.Add([]byte("max_attempts: 1e9\nrules: !!binary AAAA"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrInvalidRules) {
				t.Fatalf("error %v does not wrap ErrInvalidRules", err)
			}
			return
		}
		if err := rs.Validate(); err != nil {
			t.Fatalf("parsed rules fail validation: %v", err)
		}
		for _, r := range Reasons() {
			for _, verified := range []bool{true, false} {
				d := rs.Decide(Situation{Reason: r, Attempt: 2, MinutesLeft: 5, MerchantPolicy: "standard", COD: true, ParcelSize: "S", Verified: verified})
				if d.Action == "" || d.Rule == "" {
					t.Fatalf("empty decision for %s: %+v", r, d)
				}
				if verified && d.Action == DispatcherReview {
					t.Fatalf("verified %s went to dispatcher review despite the catch-all", r)
				}
			}
		}
	})
}

func BenchmarkDecide(b *testing.B) {
	rs := Default()
	s := Situation{Reason: CustomerUnavailable, Attempt: 2, MinutesLeft: -10, MerchantPolicy: "standard", COD: true, ParcelSize: "M", Verified: true}
	b.ReportAllocs()
	for b.Loop() {
		if d := rs.Decide(s); d.Action == "" {
			b.Fatal("empty decision")
		}
	}
}

func TestEngineConcurrentReload(t *testing.T) {
	dir := t.TempDir()
	good := writeFile(t, dir, "good.yaml", customRules)
	bad := writeFile(t, dir, "bad.yaml", "rules: []")
	e := NewEngine(nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 50 {
			path := good
			if i%2 == 1 {
				path = bad
			}
			_ = e.Reload(path) // half of them fail on purpose
		}
	}()
	s := Situation{Reason: Damaged, Attempt: 1, MinutesLeft: 10, MerchantPolicy: "standard", ParcelSize: "S", Verified: true}
	for range 500 {
		if d := e.Decide(s); d.Rule != "damaged" && d.Rule != "verified-any" {
			t.Fatalf("decided by %q, want a rule of either file", d.Rule)
		}
	}
	<-done
	if d := e.Decide(s); d.Rule != "verified-any" {
		t.Fatalf("after the reloads decided by %q, want the last good file's verified-any", d.Rule)
	}
}
