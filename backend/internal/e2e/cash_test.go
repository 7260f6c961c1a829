package e2e

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/tawsil/tawsil/backend/internal/config"
	"github.com/tawsil/tawsil/shared/wire"
)

func codBody(drop [2]float64, name string, cod float64) map[string]any {
	b := bookBody(drop, name)
	b["cod_amount_mad"] = cod
	return b
}

type cashOut struct {
	InHandMAD float64  `json:"in_hand_mad"`
	CapMAD    *float64 `json:"cap_mad"`
	OverCap   bool     `json:"over_cap"`
	Entries   []struct {
		Kind      string  `json:"kind"`
		AmountMAD float64 `json:"amount_mad"`
		OrderID   string  `json:"order_id"`
	} `json:"entries"`
}

// A day of cash on delivery: three COD handovers (one with change), a
// hand-in, an admin's correction; the ledger balances to the centime, the
// settlement and the merchant's reconciliation say the same, the cap stops
// COD offers to a courier holding too much cash until it hands cash in, and
// an erased courier's amounts stay for accounting.
func TestCashOnDeliveryDay(t *testing.T) {
	b := mustBackend(t, func(c *config.Config) { c.WebhookAllowPrivate = true; c.CashCapMAD = 500 })
	admin, _ := b.login(t, adminEmail, adminPass)
	merchant := b.mustUser(t, admin, "merchant")
	other := b.mustUser(t, admin, "merchant")
	dispatcher := b.mustUser(t, admin, "dispatcher")
	sink := newSink(t)
	b.mustStatus(t, 201, "POST", "/v1/webhooks", merchant.Token, map[string]any{"url": sink.srv.URL, "events": []string{"cod.settlement_closed"}})
	ca := b.mustCourierDevice(t, admin)
	clock := time.Now().Add(-45 * time.Minute)
	tick := func() time.Time { clock = clock.Add(3 * time.Minute); return clock }
	ca.at(t, store, tick())

	deliver := func(name string, drop [2]float64, cod, paid, change float64) orderOut {
		t.Helper()
		o := b.book(t, merchant, "cod-"+name, codBody(drop, name, cod))
		if off := ca.waitTask(t, wire.TaskOffer); off.OrderID != o.ID {
			t.Fatalf("offer %s, want %s", off.OrderID, o.ID)
		}
		b.mustStatus(t, 200, "POST", "/v1/orders/"+o.ID+"/accept", ca.Token, nil)
		b.mustStatus(t, 200, "POST", "/v1/orders/"+o.ID+"/pickup", ca.Token, nil)
		ca.at(t, drop, tick())
		body := map[string]any{"handover_code": o.HandoverCode, "cash_collected_mad": paid, "change_given_mad": change}
		if change > 0 { // change that does not add up is refused and changes nothing
			bad := map[string]any{"handover_code": o.HandoverCode, "cash_collected_mad": paid, "change_given_mad": change - 10}
			b.mustStatus(t, 400, "POST", "/v1/orders/"+o.ID+"/deliver", ca.Token, bad)
		}
		b.mustStatus(t, 200, "POST", "/v1/orders/"+o.ID+"/deliver", ca.Token, body)
		ca.at(t, store, tick())
		return o
	}
	o1 := deliver("Amina", custA, 149.50, 200, 50.50)
	deliver("Brahim", custB, 120, 120, 0)
	deliver("Chaimae", custC, 180.25, 180.25, 0)

	var st cashOut
	b.mustStatus(t, 200, "GET", "/v1/couriers/"+ca.CourierID+"/cash", dispatcher.Token, nil).json(t, &st)
	if st.InHandMAD != 449.75 || st.CapMAD == nil || *st.CapMAD != 500 || st.OverCap || len(st.Entries) != 4 {
		t.Fatalf("after three COD deliveries: %+v", st)
	}
	if e := st.Entries[0]; e.Kind != "collected" || e.AmountMAD != 200 || e.OrderID != o1.ID || st.Entries[1].Kind != "change_given" || st.Entries[1].AmountMAD != 50.5 {
		t.Fatalf("first handover entries: %+v", st.Entries[:2])
	}

	// 449.75 + 100 would pass the 500 cap: the COD order goes to courier B,
	// 1.8 km away, though A is at the store; a prepaid order still goes to A.
	cb := b.mustCourierDevice(t, admin)
	cb.at(t, custA, time.Now())
	x := b.book(t, merchant, "cod-x", codBody(custB, "Xavier", 100))
	if off := cb.waitTask(t, wire.TaskOffer); off.OrderID != x.ID {
		t.Fatalf("B offered %s, want the COD order %s", off.OrderID, x.ID)
	}
	if got := b.mustStatus(t, 200, "GET", "/v1/orders/"+x.ID, dispatcher.Token, nil).m(t)["offered_to"]; got != cb.CourierID {
		t.Fatalf("COD order offered to %v, want B %s", got, cb.CourierID)
	}
	y := b.book(t, merchant, "prepaid-y", bookBody(custC, "Yasmine"))
	if off := ca.waitTask(t, wire.TaskOffer); off.OrderID != y.ID {
		t.Fatalf("A offered %s, want the prepaid order %s", off.OrderID, y.ID)
	}
	b.mustStatus(t, 200, "POST", "/v1/orders/"+y.ID+"/decline", ca.Token, map[string]any{"reason": "busy"})

	// A hands 400 in (a retry with the same key records nothing new): under
	// the cap again, the next COD order is A's.
	handIn := map[string]any{"amount_mad": 400, "hub": "Maarif", "notes_count": 20}
	b.mustStatus(t, 201, "POST", "/v1/couriers/"+ca.CourierID+"/cash/hand-ins", dispatcher.Token, handIn, "Idempotency-Key", "hand-in-1")
	r := b.mustStatus(t, 201, "POST", "/v1/couriers/"+ca.CourierID+"/cash/hand-ins", dispatcher.Token, handIn, "Idempotency-Key", "hand-in-1")
	if r.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replayed hand-in was not replayed: %v", r.header)
	}
	for _, bad := range []map[string]any{{"amount_mad": 12.345}, {"amount_mad": -5}, {"amount_mad": 10, "surprise": 1}} {
		b.mustStatus(t, 400, "POST", "/v1/couriers/"+ca.CourierID+"/cash/hand-ins", dispatcher.Token, bad)
	}
	z := b.book(t, merchant, "cod-z", codBody(custC, "Zineb", 100))
	if off := ca.waitTask(t, wire.TaskOffer); off.OrderID != z.ID {
		t.Fatalf("A offered %s after the hand-in, want the COD order %s", off.OrderID, z.ID)
	}

	// An admin's correction, with its reason; a dispatcher may not correct.
	b.mustStatus(t, 403, "POST", "/v1/couriers/"+ca.CourierID+"/cash/corrections", dispatcher.Token, map[string]any{"amount_mad": -0.25, "reason": "x"})
	b.mustStatus(t, 400, "POST", "/v1/couriers/"+ca.CourierID+"/cash/corrections", admin, map[string]any{"amount_mad": -0.25, "reason": " "})
	b.mustStatus(t, 201, "POST", "/v1/couriers/"+ca.CourierID+"/cash/corrections", admin, map[string]any{"amount_mad": -0.25, "reason": "25 centimes short at count"})

	// 200 - 50.50 + 120 + 180.25 - 400 - 0.25 = 49.50, for the courier and for staff.
	b.mustStatus(t, 200, "GET", "/v1/me/cash", ca.Token, nil).json(t, &st)
	if st.InHandMAD != 49.5 || len(st.Entries) != 6 {
		t.Fatalf("courier's own cash: %+v", st)
	}
	b.mustStatus(t, 403, "GET", "/v1/couriers/"+ca.CourierID+"/cash", ca.Token, nil)

	// The end-of-shift settlement, confirmed by the dispatcher.
	var set struct {
		N             int     `json:"n"`
		CollectedMAD  float64 `json:"collected_mad"`
		ChangeMAD     float64 `json:"change_given_mad"`
		HandedInMAD   float64 `json:"handed_in_mad"`
		CorrectionMAD float64 `json:"corrections_mad"`
		Deliveries    int     `json:"deliveries"`
		DifferenceMAD float64 `json:"difference_mad"`
		ConfirmedBy   string  `json:"confirmed_by"`
	}
	b.mustStatus(t, 201, "POST", "/v1/couriers/"+ca.CourierID+"/cash/settlements", dispatcher.Token, nil).json(t, &set)
	if set.N != 1 || set.CollectedMAD != 500.25 || set.ChangeMAD != 50.5 || set.HandedInMAD != 400 || set.CorrectionMAD != -0.25 ||
		set.Deliveries != 3 || set.DifferenceMAD != 49.5 || set.ConfirmedBy != dispatcher.ID {
		t.Fatalf("settlement: %+v", set)
	}
	b.mustStatus(t, 200, "GET", "/v1/couriers/"+ca.CourierID+"/cash", dispatcher.Token, nil).json(t, &st)
	if st.InHandMAD != 49.5 || len(st.Entries) != 0 {
		t.Fatalf("after the settlement the open account starts from its difference: %+v", st)
	}

	// The merchant's days (the test may run across midnight in Casablanca:
	// ask for yesterday and today): 449.75 collected for three orders,
	// outstanding until payouts close the days (once each) and the
	// merchant's webhook hears of it.
	loc, err := time.LoadLocation("Africa/Casablanca")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().In(loc)
	span := "?from=" + now.AddDate(0, 0, -1).Format(time.DateOnly) + "&to=" + now.Format(time.DateOnly)
	var k struct {
		KPIs []struct {
			Group          string  `json:"group"`
			CODCollected   float64 `json:"cod_collected_mad"`
			CODOutstanding float64 `json:"cod_outstanding_mad"`
		} `json:"kpis"`
	}
	type merchantDay struct {
		Day            string  `json:"day"`
		Orders         int     `json:"orders"`
		CollectedMAD   float64 `json:"collected_mad"`
		PaidOutMAD     float64 `json:"paid_out_mad"`
		OutstandingMAD float64 `json:"outstanding_mad"`
		Settled        bool    `json:"settled"`
	}
	var days struct {
		Days []merchantDay `json:"days"`
	}
	sum := func() (orders int, collected, outstanding float64, settled bool) {
		settled = true
		for _, d := range days.Days {
			orders, collected, outstanding, settled = orders+d.Orders, collected+d.CollectedMAD, outstanding+d.OutstandingMAD, settled && d.Settled
		}
		return orders, math.Round(collected*100) / 100, math.Round(outstanding*100) / 100, settled
	}
	b.mustStatus(t, 200, "GET", "/v1/merchants/"+merchant.MerchantID+"/cod"+span, merchant.Token, nil).json(t, &days)
	if n, c, o, settled := sum(); len(days.Days) == 0 || n != 3 || c != 449.75 || o != 449.75 || settled {
		t.Fatalf("merchant days: %+v", days)
	}
	b.mustStatus(t, 404, "GET", "/v1/merchants/"+merchant.MerchantID+"/cod"+span, other.Token, nil)
	r = b.mustStatus(t, 200, "GET", "/v1/merchants/"+merchant.MerchantID+"/cod"+span+"&format=csv", dispatcher.Token, nil)
	if !strings.HasPrefix(r.header.Get("Content-Type"), "text/csv") {
		t.Fatalf("csv content type: %s", r.header.Get("Content-Type"))
	}
	for _, d := range days.Days {
		if line := fmt.Sprintf("%s,%s,%d,%.2f,0.00,%.2f,false\n", merchant.MerchantID, d.Day, d.Orders, d.CollectedMAD, d.OutstandingMAD); !strings.Contains(string(r.body), line) {
			t.Fatalf("csv lacks %q: %s", line, r.body)
		}
	}
	b.mustStatus(t, 200, "GET", "/v1/kpis?group=cell", dispatcher.Token, nil).json(t, &k)
	if len(k.KPIs) != 1 || k.KPIs[0].CODCollected != 449.75 || k.KPIs[0].CODOutstanding != 449.75 {
		t.Fatalf("kpis by cell before the payout: %+v", k.KPIs)
	}
	first := map[string]any{"day": days.Days[0].Day, "amount_mad": days.Days[0].CollectedMAD, "reference": "virement 42"}
	b.mustStatus(t, 403, "POST", "/v1/merchants/"+merchant.MerchantID+"/cod/settlements", merchant.Token, first)
	for _, d := range days.Days {
		b.mustStatus(t, 201, "POST", "/v1/merchants/"+merchant.MerchantID+"/cod/settlements", dispatcher.Token,
			map[string]any{"day": d.Day, "amount_mad": d.CollectedMAD, "reference": "virement 42"})
	}
	b.mustStatus(t, 409, "POST", "/v1/merchants/"+merchant.MerchantID+"/cod/settlements", dispatcher.Token, first)
	b.mustStatus(t, 200, "GET", "/v1/merchants/"+merchant.MerchantID+"/cod"+span, merchant.Token, nil).json(t, &days)
	if _, c, o, settled := sum(); c != 449.75 || o != 0 || !settled {
		t.Fatalf("after the payouts: %+v", days)
	}
	// KPIs by merchant report the same collected, and nothing outstanding now.
	b.mustStatus(t, 200, "GET", "/v1/kpis?group=merchant", dispatcher.Token, nil).json(t, &k)
	if len(k.KPIs) != 1 || k.KPIs[0].CODCollected != 449.75 || k.KPIs[0].CODOutstanding != 0 {
		t.Fatalf("kpis by merchant: %+v", k.KPIs)
	}
	eventually(t, "cod.settlement_closed webhook", 10*time.Second, func() bool { return strings.Contains(strings.Join(sink.types(), ","), "cod.settlement_closed") })

	// The courier's data export holds its ledger.
	var export struct {
		Cash []struct {
			Kind      string  `json:"kind"`
			AmountMAD float64 `json:"amount_mad"`
		} `json:"cash_ledger"`
	}
	b.mustStatus(t, 200, "GET", "/v1/me/data", ca.Token, nil).json(t, &export)
	if len(export.Cash) != 6 || export.Cash[0].Kind != "collected" || export.Cash[0].AmountMAD != 200 {
		t.Fatalf("data export ledger: %+v", export.Cash)
	}

	// Erasing courier A keeps the amounts for accounting, not the identity.
	b.mustStatus(t, 204, "DELETE", "/v1/users/"+ca.ID, admin, nil)
	b.mustStatus(t, 200, "GET", "/v1/merchants/"+merchant.MerchantID+"/cod"+span, merchant.Token, nil).json(t, &days)
	if _, c, _, _ := sum(); c != 449.75 {
		t.Fatalf("erasure changed the merchant's days: %+v", days)
	}
	if body := string(b.mustStatus(t, 200, "GET", "/v1/cash/balances", dispatcher.Token, nil).body); strings.Contains(body, ca.CourierID) {
		t.Fatalf("erased courier still in the balances: %s", body)
	}
}
