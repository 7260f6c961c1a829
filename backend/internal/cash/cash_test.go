package cash

import (
	"errors"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)

func mustHandover(tb testing.TB, h Handover) []Entry {
	tb.Helper()
	es, err := h.Entries()
	if err != nil {
		tb.Fatal(err)
	}
	return es
}

func TestFromMAD(t *testing.T) {
	tests := []struct {
		give    float64
		want    Centimes
		wantErr bool
	}{
		{give: 149.5, want: 14950},
		{give: 0.1 + 0.2, want: 30}, // float noise is not a third decimal
		{give: 12.345, wantErr: true},
		{give: -3, want: -300},
		{give: 1e9, wantErr: true},
	}
	for _, tt := range tests {
		got, err := FromMAD(tt.give)
		if (err != nil) != tt.wantErr || (!tt.wantErr && got != tt.want) {
			t.Errorf("FromMAD(%v) = %v, %v; want %v (error %v)", tt.give, got, err, tt.want, tt.wantErr)
		}
	}
	if s := Centimes(-1205).String(); s != "-12.05" {
		t.Errorf("String = %q", s)
	}
}

// A day of cash-on-delivery: three handovers (one with change), a hand-in,
// an admin correction; it balances to the centime and the settlement says
// what is still in hand.
func TestDayBalances(t *testing.T) {
	var es []Entry
	es = append(es, mustHandover(t, Handover{CourierID: "c1", OrderID: "o1", MerchantID: "m1", Due: 14950, Paid: 20000, Change: 5050, At: t0.Add(time.Hour)})...)
	es = append(es, mustHandover(t, Handover{CourierID: "c1", OrderID: "o2", MerchantID: "m1", Due: 8000, Paid: 8000, At: t0.Add(2 * time.Hour)})...)
	es = append(es, mustHandover(t, Handover{CourierID: "c1", OrderID: "o3", MerchantID: "m2", Due: 23525, Paid: 23525, At: t0.Add(3 * time.Hour)})...)
	es = append(es, Entry{CourierID: "c1", Kind: HandedIn, Amount: 30000, At: t0.Add(4 * time.Hour), By: "d1", Hub: "Maarif", Notes: 15, Key: "h1"})
	es = append(es, Entry{CourierID: "c1", Kind: Correction, Amount: -25, At: t0.Add(5 * time.Hour), By: "a1", Reason: "coin lost, agreed", Key: "k1"})
	for _, e := range es {
		if err := e.Validate(); err != nil {
			t.Fatal(err)
		}
	}
	// 149.50 + 80 + 235.25 - 300 - 0.25 = 164.50
	if got := Balance(es); got != 16450 {
		t.Fatalf("balance %s, want 164.50", got)
	}
	s := Settle("c1", 0, es, t0, t0.Add(8*time.Hour))
	want := Settlement{CourierID: "c1", From: t0, To: t0.Add(8 * time.Hour), Collected: 51525, Change: 5050, HandedIn: 30000, Corrections: -25, Deliveries: 3, Difference: 16450}
	if s != want {
		t.Errorf("settlement\n got %+v\nwant %+v", s, want)
	}
	// The next shift opens with what was left.
	next := Settle("c1", s.Difference, es, s.To, s.To.Add(8*time.Hour))
	if next.Difference != 16450 || next.Collected != 0 {
		t.Errorf("next settlement %+v", next)
	}

	days := Reconcile("m1", es, time.UTC)
	if len(days) != 1 || days[0].Collected != 14950+8000 || days[0].Orders != 2 || days[0].Outstanding != 22950 || days[0].Settled {
		t.Fatalf("m1 days %+v", days)
	}
	es = append(es, Entry{Kind: MerchantPayout, MerchantID: "m1", Amount: 22950, Day: "2026-12-01", At: t0.Add(10 * time.Hour), By: "a1", Key: "p1"})
	days = Reconcile("m1", es, time.UTC)
	if days[0].Outstanding != 0 || !days[0].Settled {
		t.Errorf("after payout %+v", days[0])
	}
	csv := CSV(days)
	if !strings.Contains(csv, "m1,2026-12-01,2,229.50,229.50,0.00,true\n") {
		t.Errorf("csv %q", csv)
	}
	if Balance(es) != 16450 {
		t.Error("a merchant payout changed a courier's cash in hand")
	}
}

func TestHandoverMustAddUp(t *testing.T) {
	_, err := Handover{CourierID: "c", OrderID: "o", MerchantID: "m", Due: 1000, Paid: 2000, Change: 500, At: t0}.Entries()
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("paid 20 - change 5 != 10 due: %v", err)
	}
	es := mustHandover(t, Handover{CourierID: "c", OrderID: "o", MerchantID: "m", Due: 1000, Paid: 1000, At: t0})
	if len(es) != 1 || es[0].Key != "collected:o" {
		t.Errorf("no change: one entry keyed by the order, got %+v", es)
	}
}

func TestValidate(t *testing.T) {
	bad := []Entry{
		{Kind: Correction, CourierID: "c", By: "a", Amount: 100, At: t0, Key: "k", Reason: "  "},
		{Kind: HandedIn, CourierID: "c", Amount: 100, At: t0, Key: "k"},
		{Kind: HandedIn, CourierID: "c", By: "d", Amount: -1, At: t0, Key: "k"},
		{Kind: MerchantPayout, MerchantID: "m", By: "a", Amount: 1, At: t0, Key: "k", Day: "yesterday"},
		{Kind: "bonus", CourierID: "c", Amount: 1, At: t0, Key: "k"},
		{Kind: Collected, CourierID: "c", OrderID: "o", MerchantID: "m", Amount: 1, At: t0},
	}
	for _, e := range bad {
		if err := e.Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: %v, want ErrInvalid", e, err)
		}
	}
}

func TestCap(t *testing.T) {
	c := Cap{Limit: 100000}
	tests := []struct {
		inHand, due Centimes
		want        bool
	}{
		{0, 5000, false},
		{95000, 5000, false}, // exactly at the cap after this one
		{95001, 5000, true},
		{100000, 0, false}, // prepaid orders always flow
		{200000, 1, true},
	}
	for _, tt := range tests {
		if got := c.Blocks(tt.inHand, tt.due); got != tt.want {
			t.Errorf("Blocks(%s, %s) = %v", tt.inHand, tt.due, got)
		}
	}
	if (Cap{}).Blocks(1<<40, 1) {
		t.Error("no cap blocks")
	}
}

func TestPseudonymise(t *testing.T) {
	e := Entry{CourierID: "c1", Kind: Collected, Amount: 100, Place: &Point{Lat: 33.5, Lng: -7.6}}
	p := e.Pseudonymise("erased-1")
	if p.CourierID != "erased-1" || p.Place != nil || p.Amount != 100 {
		t.Errorf("%+v", p)
	}
}

func TestCSVDefusesFormulas(t *testing.T) {
	got := CSV([]MerchantDay{{MerchantID: "=HYPERLINK(\"x\")", Day: "2026-12-01"}})
	if !strings.Contains(got, `"'=HYPERLINK(""x"")"`) {
		t.Errorf("%q", got)
	}
}
