// Package cash is the courier cash ledger for cash on delivery, as pure
// domain logic: append-only entries in integer centimes (so a day balances
// to the dirham, and to the centime), a courier's cash in hand, the
// end-of-shift settlement a dispatcher confirms, the cash-in-hand cap that
// stops cash-on-delivery offers, and the per-merchant, per-day
// reconciliation of cash collected against cash handed over.
//
// The package does no I/O and keeps no clock.
package cash

import (
	"errors"
	"fmt"
	"github.com/tawsil/tawsil/backend/internal/geo"
	"math"
	"strings"
	"time"
	"unicode"
)

// Errors.
var (
	// ErrInvalid: an entry or amount is malformed; nothing is recorded.
	ErrInvalid = errors.New("invalid cash entry")
	// ErrConflict: someone else recorded the same thing first (a settlement).
	ErrConflict = errors.New("cash ledger conflict")
)

// Kind is what an entry records.
type Kind string

// Entry kinds.
const (
	// Collected: cash the customer paid at a cash-on-delivery handover.
	Collected Kind = "collected"
	// ChangeGiven: change the courier gave back at that handover.
	ChangeGiven Kind = "change_given"
	// HandedIn: cash the courier handed in at a hub or to a dispatcher.
	HandedIn Kind = "handed_in"
	// Correction: an admin's signed correction, with a reason.
	Correction Kind = "correction"
	// MerchantPayout: cash-on-delivery money handed over to a merchant for a
	// day (from the hub's cash: it does not change any courier's hand).
	MerchantPayout Kind = "merchant_payout"
)

// Centimes are hundredths of a dirham.
type Centimes int64

// FromMAD converts a dirham amount with at most two decimals. NaN,
// infinities, amounts with more precision and absurd sizes are refused.
func FromMAD(mad float64) (Centimes, error) {
	if math.IsNaN(mad) || math.IsInf(mad, 0) || math.Abs(mad) > 10_000_000 {
		return 0, fmt.Errorf("%w: amount %v MAD", ErrInvalid, mad)
	}
	c := math.Round(mad * 100)
	if math.Abs(c-mad*100) > 1e-6*math.Max(1, math.Abs(mad*100)) {
		return 0, fmt.Errorf("%w: amount %v MAD has more than two decimals", ErrInvalid, mad)
	}
	return Centimes(c), nil
}

// MAD is the amount in dirhams.
func (c Centimes) MAD() float64 { return float64(c) / 100 }

// String formats the amount as dirhams with two decimals.
func (c Centimes) String() string {
	sign := ""
	if c < 0 {
		sign, c = "-", -c
	}
	return fmt.Sprintf("%s%d.%02d", sign, c/100, c%100)
}

// Point is where a collection happened.
type Point = geo.Point

// Entry is one line of a courier's ledger. Amount is positive, except for
// corrections, which are signed.
type Entry struct {
	ID         string    `json:"id"`
	CourierID  string    `json:"courier_id"`
	Kind       Kind      `json:"kind"`
	Amount     Centimes  `json:"amount_centimes"`
	At         time.Time `json:"at"`
	OrderID    string    `json:"order_id,omitempty"`
	MerchantID string    `json:"merchant_id,omitempty"`
	Place      *Point    `json:"place,omitempty"`
	By         string    `json:"by,omitempty"`    // who recorded it (user id): the receiver of a hand-in, the admin of a correction
	Hub        string    `json:"hub,omitempty"`   // hand-ins: where
	Notes      int       `json:"notes,omitempty"` // hand-ins: banknotes counted (optional)
	Reason     string    `json:"reason,omitempty"`
	Day        string    `json:"day,omitempty"` // merchant payouts: the day (YYYY-MM-DD) settled
	// Key makes an entry once-only: the same key is never recorded twice
	// (the delivery of an order is collected once, however often it is reported).
	Key string `json:"key"`
}

// Validate checks an entry before it is recorded.
func (e Entry) Validate() error {
	switch {
	case strings.TrimSpace(e.Key) == "":
		return fmt.Errorf("%w: no key", ErrInvalid)
	case e.At.IsZero():
		return fmt.Errorf("%w: no time", ErrInvalid)
	}
	switch e.Kind {
	case Collected, ChangeGiven:
		if e.CourierID == "" || e.OrderID == "" || e.MerchantID == "" {
			return fmt.Errorf("%w: %s needs courier, order and merchant", ErrInvalid, e.Kind)
		}
		if e.Amount <= 0 {
			return fmt.Errorf("%w: %s amount must be positive", ErrInvalid, e.Kind)
		}
	case HandedIn:
		if e.CourierID == "" || e.By == "" {
			return fmt.Errorf("%w: a hand-in needs the courier and who received it", ErrInvalid)
		}
		if e.Amount <= 0 {
			return fmt.Errorf("%w: hand-in amount must be positive", ErrInvalid)
		}
		if e.Notes < 0 || e.Notes > 100_000 {
			return fmt.Errorf("%w: notes count %d", ErrInvalid, e.Notes)
		}
	case Correction:
		if e.CourierID == "" || e.By == "" {
			return fmt.Errorf("%w: a correction needs the courier and the admin", ErrInvalid)
		}
		if e.Amount == 0 {
			return fmt.Errorf("%w: a correction of zero", ErrInvalid)
		}
		if !hasText(e.Reason) {
			return fmt.Errorf("%w: a correction needs a reason", ErrInvalid)
		}
	case MerchantPayout:
		if e.MerchantID == "" || e.By == "" {
			return fmt.Errorf("%w: a payout needs the merchant and who paid it", ErrInvalid)
		}
		if e.Amount < 0 {
			return fmt.Errorf("%w: payout amount must not be negative", ErrInvalid)
		}
		if _, err := time.Parse(time.DateOnly, e.Day); err != nil {
			return fmt.Errorf("%w: payout day %q", ErrInvalid, e.Day)
		}
	default:
		return fmt.Errorf("%w: kind %q", ErrInvalid, e.Kind)
	}
	return nil
}

func hasText(s string) bool {
	for _, r := range s {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			return true
		}
	}
	return false
}

// InHand is how the entry changes the courier's cash in hand.
func (e Entry) InHand() Centimes {
	switch e.Kind {
	case Collected:
		return e.Amount
	case ChangeGiven, HandedIn:
		return -e.Amount
	case Correction:
		return e.Amount
	}
	return 0
}

// Balance is a courier's cash in hand after entries.
func Balance(entries []Entry) Centimes {
	var b Centimes
	for _, e := range entries {
		b += e.InHand()
	}
	return b
}

// Handover is what a cash-on-delivery handover records: the cash the
// customer paid and the change given back, which must come to the amount due.
type Handover struct {
	CourierID, OrderID, MerchantID string
	Due, Paid, Change              Centimes
	At                             time.Time
	Place                          *Point
}

// Entries checks a handover and returns its ledger lines (keys derived from
// the order, so a repeated report records nothing new).
func (h Handover) Entries() ([]Entry, error) {
	if h.Paid-h.Change != h.Due {
		return nil, fmt.Errorf("%w: paid %s minus change %s is not the %s due", ErrInvalid, h.Paid, h.Change, h.Due)
	}
	if h.Change < 0 || h.Due <= 0 {
		return nil, fmt.Errorf("%w: due %s, change %s", ErrInvalid, h.Due, h.Change)
	}
	out := []Entry{{CourierID: h.CourierID, Kind: Collected, Amount: h.Paid, At: h.At, OrderID: h.OrderID,
		MerchantID: h.MerchantID, Place: h.Place, Key: "collected:" + h.OrderID}}
	if h.Change > 0 {
		out = append(out, Entry{CourierID: h.CourierID, Kind: ChangeGiven, Amount: h.Change, At: h.At, OrderID: h.OrderID,
			MerchantID: h.MerchantID, Key: "change:" + h.OrderID})
	}
	for _, e := range out {
		if err := e.Validate(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Settlement is a courier's end-of-shift account: what came in and went
// out since the previous settlement, and the cash still in hand. The
// difference is what the courier still holds (zero when everything was
// handed in); a dispatcher confirms it.
type Settlement struct {
	CourierID   string    `json:"courier_id"`
	From        time.Time `json:"from"` // the previous settlement's end (zero: the first)
	To          time.Time `json:"to"`
	Opening     Centimes  `json:"opening_centimes"` // in hand at From
	Collected   Centimes  `json:"collected_centimes"`
	Change      Centimes  `json:"change_centimes"`
	HandedIn    Centimes  `json:"handed_in_centimes"`
	Corrections Centimes  `json:"corrections_centimes"`
	Deliveries  int       `json:"deliveries"`             // cash-on-delivery handovers
	Difference  Centimes  `json:"difference_centimes"`    // in hand at To: Opening + Collected - Change - HandedIn + Corrections
	ConfirmedBy string    `json:"confirmed_by,omitempty"` // the dispatcher
}

// Settle computes the settlement of a courier's entries in (from, to]
// given what was in hand at from.
func Settle(courierID string, opening Centimes, entries []Entry, from, to time.Time) Settlement {
	s := Settlement{CourierID: courierID, From: from, To: to, Opening: opening}
	for _, e := range entries {
		if e.CourierID != courierID || !e.At.After(from) || e.At.After(to) {
			continue
		}
		switch e.Kind {
		case Collected:
			s.Collected += e.Amount
			s.Deliveries++
		case ChangeGiven:
			s.Change += e.Amount
		case HandedIn:
			s.HandedIn += e.Amount
		case Correction:
			s.Corrections += e.Amount
		}
	}
	s.Difference = s.Opening + s.Collected - s.Change - s.HandedIn + s.Corrections
	return s
}

// Cap is the cash-in-hand limit: a courier holding at least Limit gets no
// cash-on-delivery offers (prepaid ones still flow) until cash is handed in.
// A zero Limit means no cap.
type Cap struct{ Limit Centimes }

// Blocks reports whether a courier holding inHand may not take a
// cash-on-delivery order of amount due: at or over the cap already, or
// over it once this one is collected.
func (c Cap) Blocks(inHand, due Centimes) bool {
	if c.Limit <= 0 || due <= 0 {
		return false
	}
	return inHand+due > c.Limit
}

// MerchantDay is one merchant's cash on delivery for one day: what couriers
// collected for its orders (net of change) and what was handed over to it.
type MerchantDay struct {
	MerchantID  string   `json:"merchant_id"`
	Day         string   `json:"day"` // YYYY-MM-DD in the service's time zone
	Orders      int      `json:"orders"`
	Collected   Centimes `json:"collected_centimes"`
	PaidOut     Centimes `json:"paid_out_centimes"`
	Outstanding Centimes `json:"outstanding_centimes"`
	Settled     bool     `json:"settled"` // a payout closed the day
}

// Reconcile groups entries by merchant and day (in loc) into merchant days,
// sorted by day.
func Reconcile(merchantID string, entries []Entry, loc *time.Location) []MerchantDay {
	days := map[string]*MerchantDay{}
	var order []string
	get := func(day string) *MerchantDay {
		d, ok := days[day]
		if !ok {
			d = &MerchantDay{MerchantID: merchantID, Day: day}
			days[day] = d
			order = append(order, day)
		}
		return d
	}
	for _, e := range entries {
		if e.MerchantID != merchantID {
			continue
		}
		switch e.Kind {
		case Collected:
			d := get(e.At.In(loc).Format(time.DateOnly))
			d.Collected += e.Amount
			d.Orders++
		case ChangeGiven:
			get(e.At.In(loc).Format(time.DateOnly)).Collected -= e.Amount
		case MerchantPayout:
			d := get(e.Day)
			d.PaidOut += e.Amount
			d.Settled = true
		}
	}
	out := make([]MerchantDay, 0, len(order))
	for _, day := range order {
		d := days[day]
		d.Outstanding = d.Collected - d.PaidOut
		out = append(out, *d)
	}
	sortDays(out)
	return out
}

func sortDays(ds []MerchantDay) {
	for i := 1; i < len(ds); i++ {
		for j := i; j > 0 && ds[j].Day < ds[j-1].Day; j-- {
			ds[j], ds[j-1] = ds[j-1], ds[j]
		}
	}
}

// CSV renders merchant days as CSV (header line first), amounts in MAD
// with two decimals.
func CSV(days []MerchantDay) string {
	var b strings.Builder
	b.WriteString("merchant_id,day,orders,collected_mad,paid_out_mad,outstanding_mad,settled\n")
	for _, d := range days {
		fmt.Fprintf(&b, "%s,%s,%d,%s,%s,%s,%t\n", csvField(d.MerchantID), d.Day, d.Orders, d.Collected, d.PaidOut, d.Outstanding, d.Settled)
	}
	return b.String()
}

// csvField quotes a field when needed and defuses spreadsheet formulas.
func csvField(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		s = "'" + s
	}
	if strings.ContainsAny(s, ",\"\n\r") {
		return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
	}
	return s
}

// Pseudonymise returns the entry with the courier's identity replaced by
// pseudonym and its place dropped: what is kept of an erased courier's
// ledger, for accounting.
func (e Entry) Pseudonymise(pseudonym string) Entry {
	e.CourierID = pseudonym
	e.Place = nil
	return e
}
