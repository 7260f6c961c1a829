// Package ledger runs the courier cash ledger over the store: it records
// cash-on-delivery handovers, hand-ins, corrections and merchant payouts
// (each once, by key), keeps every courier's cash in hand for dispatch's
// cap, confirms end-of-shift settlements, and reconciles merchants' days.
//
// Balances are a cache of the store: each replica loads them at start,
// updates them on its own appends, and follows other replicas' appends
// every Refresh; a balance is always recomputed from the store (last
// settlement plus the entries after it), never added up incrementally, so
// replaying an entry cannot count it twice.
package ledger

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/tawsil/tawsil/backend/internal/cash"
	"github.com/tawsil/tawsil/backend/internal/mongostore"
)

// Errors callers branch on (mapped to HTTP by httpapi).
var (
	// ErrSettled: the merchant's day was already settled.
	ErrSettled = errors.New("day already settled")
)

// Store is what the ledger needs; *mongostore.Store satisfies it.
type Store interface {
	AppendCash(ctx context.Context, e cash.Entry, recorded time.Time) (bool, error)
	CourierCash(ctx context.Context, courierID string, since time.Time) ([]cash.Entry, error)
	MerchantCash(ctx context.Context, merchantID string, from, to time.Time, fromDay, toDay string) ([]cash.Entry, error)
	CashRecordedSince(ctx context.Context, t time.Time) ([]cash.Entry, error)
	LastSettlement(ctx context.Context, courierID string) (mongostore.StoredSettlement, bool, error)
	Settlements(ctx context.Context, courierID string, limit int64) ([]mongostore.StoredSettlement, error)
	InsertSettlement(ctx context.Context, n int, st cash.Settlement) (mongostore.StoredSettlement, error)
	SetCashCap(ctx context.Context, courierID string, limit cash.Centimes, by string, at time.Time) error
	CashCaps(ctx context.Context) (map[string]cash.Centimes, error)
	PseudonymiseCash(ctx context.Context, courierID, pseudonym string) error
	Payouts(ctx context.Context, fromDay, toDay string) ([]cash.Entry, error)
}

var _ Store = (*mongostore.Store)(nil)

// Config tunes the ledger.
type Config struct {
	DefaultCap cash.Centimes  // cash-in-hand cap for couriers without their own (0: none)
	Loc        *time.Location // merchants' days are days here (Africa/Casablanca)
	Refresh    time.Duration  // how often other replicas' appends are followed
}

// Book is the ledger service.
type Book struct {
	store Store
	cfg   Config
	log   *slog.Logger
	now   func() time.Time

	// OverCap is told when a courier's cash in hand reaches its cap (streams).
	OverCap func(courierID string, inHand, limit cash.Centimes)
	// SettlementClosed is told when a merchant's day is settled (webhook).
	SettlementClosed func(ctx context.Context, day cash.MerchantDay, reference string)
	// Delivered lists the cash-on-delivery handovers of orders delivered
	// since a time, from the orders themselves: the ledger records any it
	// lacks (a process that died between a delivery and its ledger write).
	Delivered func(ctx context.Context, since time.Time) ([]cash.Handover, error)

	mu       sync.Mutex
	inHand   map[string]cash.Centimes
	caps     map[string]cash.Centimes
	followed time.Time // recorded time of the newest entry followed
}

// New returns a ledger; call Load before use.
func New(store Store, cfg Config, log *slog.Logger) *Book {
	if cfg.Loc == nil {
		cfg.Loc = time.UTC
	}
	if cfg.Refresh <= 0 {
		cfg.Refresh = 15 * time.Second
	}
	return &Book{store: store, cfg: cfg, log: log, now: time.Now, inHand: map[string]cash.Centimes{}, caps: map[string]cash.Centimes{}}
}

// Load reads the caps and every courier's cash in hand from the store.
func (b *Book) Load(ctx context.Context) error {
	caps, err := b.store.CashCaps(ctx)
	if err != nil {
		return err
	}
	all, err := b.store.CashRecordedSince(ctx, time.Time{})
	if err != nil {
		return err
	}
	started := b.now()
	couriers := map[string]bool{}
	for _, e := range all {
		couriers[e.CourierID] = true
	}
	b.mu.Lock()
	b.caps = caps
	b.mu.Unlock()
	for c := range couriers {
		if err := b.recompute(ctx, c); err != nil {
			return err
		}
	}
	b.mu.Lock()
	b.followed = started
	b.mu.Unlock()
	return nil
}

// Run follows other replicas' appends, and every few minutes makes good
// handovers missing from the ledger, until ctx ends.
func (b *Book) Run(ctx context.Context) {
	t := time.NewTicker(b.cfg.Refresh)
	defer t.Stop()
	if _, err := b.Reconcile(ctx, 48*time.Hour); err != nil && ctx.Err() == nil {
		b.log.Warn("cash ledger reconciliation", "err", err)
	}
	last := b.now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := b.Follow(ctx); err != nil && ctx.Err() == nil {
				b.log.Warn("cash ledger refresh", "err", err)
			}
			if b.now().Sub(last) >= 5*time.Minute {
				last = b.now()
				if _, err := b.Reconcile(ctx, 24*time.Hour); err != nil && ctx.Err() == nil {
					b.log.Warn("cash ledger reconciliation", "err", err)
				}
			}
		}
	}
}

// Reconcile records the collections of orders delivered within window that
// the ledger lacks, and returns how many it added.
func (b *Book) Reconcile(ctx context.Context, window time.Duration) (int, error) {
	if b.Delivered == nil {
		return 0, nil
	}
	hs, err := b.Delivered(ctx, b.now().Add(-window))
	if err != nil {
		return 0, err
	}
	added := 0
	for _, h := range hs {
		es, err := h.Entries()
		if err != nil {
			b.log.Warn("cash ledger: delivered order does not add up", "order_id", h.OrderID, "err", err)
			continue
		}
		created, err := b.append(ctx, es[0]) // the collection; its key is the order's
		if err != nil {
			return added, err
		}
		if created {
			added++
			b.log.Warn("cash ledger: recorded a missing collection", "order_id", h.OrderID, "courier_id", h.CourierID)
		}
	}
	return added, nil
}

// Follow recomputes the couriers whose entries were recorded since the last
// call (by any replica), and reloads the caps.
func (b *Book) Follow(ctx context.Context) error {
	b.mu.Lock()
	since := b.followed.Add(-5 * time.Second) // clocks of replicas differ a little
	b.mu.Unlock()
	started := b.now()
	entries, err := b.store.CashRecordedSince(ctx, since)
	if err != nil {
		return err
	}
	touched := map[string]bool{}
	for _, e := range entries {
		touched[e.CourierID] = true
	}
	for c := range touched {
		if err := b.recompute(ctx, c); err != nil {
			return err
		}
	}
	caps, err := b.store.CashCaps(ctx)
	if err != nil {
		return err
	}
	b.mu.Lock()
	b.caps = caps
	b.followed = started
	b.mu.Unlock()
	return nil
}

// recompute reads a courier's cash in hand from the store.
func (b *Book) recompute(ctx context.Context, courierID string) error {
	st, err := b.statement(ctx, courierID)
	if err != nil {
		return err
	}
	b.mu.Lock()
	b.inHand[courierID] = st.InHand
	b.mu.Unlock()
	return nil
}

// Statement is a courier's cash position.
type Statement struct {
	CourierID string        `json:"courier_id"`
	InHand    cash.Centimes `json:"in_hand_centimes"`
	Cap       cash.Centimes `json:"cap_centimes"` // 0: none
	OverCap   bool          `json:"over_cap"`
	// Open is the settlement the next confirmation would record.
	Open    cash.Settlement `json:"open"`
	Entries []cash.Entry    `json:"entries"` // since the last settlement, oldest first
}

func (b *Book) statement(ctx context.Context, courierID string) (Statement, error) {
	last, ok, err := b.store.LastSettlement(ctx, courierID)
	if err != nil {
		return Statement{}, err
	}
	var from time.Time
	var opening cash.Centimes
	if ok {
		from, opening = last.To, last.Difference
	}
	entries, err := b.store.CourierCash(ctx, courierID, from)
	if err != nil {
		return Statement{}, err
	}
	open := cash.Settle(courierID, opening, entries, from, b.now().UTC())
	limit := b.capOf(courierID)
	return Statement{CourierID: courierID, InHand: open.Difference, Cap: limit, OverCap: limit > 0 && open.Difference >= limit,
		Open: open, Entries: entries}, nil
}

// Statement returns a courier's cash position, from the store.
func (b *Book) Statement(ctx context.Context, courierID string) (Statement, error) {
	return b.statement(ctx, courierID)
}

func (b *Book) capOf(courierID string) cash.Centimes {
	b.mu.Lock()
	defer b.mu.Unlock()
	if c, ok := b.caps[courierID]; ok {
		return c
	}
	return b.cfg.DefaultCap
}

// Blocks reports whether dispatch must not offer a cash-on-delivery order
// of amount due to the courier (from the cached balance).
func (b *Book) Blocks(courierID string, due cash.Centimes) bool {
	limit := b.capOf(courierID)
	b.mu.Lock()
	in := b.inHand[courierID]
	b.mu.Unlock()
	return cash.Cap{Limit: limit}.Blocks(in, due)
}

// Balance is a courier's cached cash in hand and its cap.
type Balance struct {
	CourierID string        `json:"courier_id"`
	InHand    cash.Centimes `json:"in_hand_centimes"`
	Cap       cash.Centimes `json:"cap_centimes"`
	OverCap   bool          `json:"over_cap"`
}

// Balances lists every courier holding cash (or with a cap of its own),
// highest first.
func (b *Book) Balances() []Balance {
	b.mu.Lock()
	ids := map[string]bool{}
	for id, v := range b.inHand {
		if v != 0 {
			ids[id] = true
		}
	}
	for id := range b.caps {
		ids[id] = true
	}
	b.mu.Unlock()
	out := make([]Balance, 0, len(ids))
	for id := range ids {
		limit := b.capOf(id)
		b.mu.Lock()
		in := b.inHand[id]
		b.mu.Unlock()
		out = append(out, Balance{CourierID: id, InHand: in, Cap: limit, OverCap: limit > 0 && in >= limit})
	}
	slices.SortFunc(out, func(x, y Balance) int {
		if x.InHand != y.InHand {
			if x.InHand > y.InHand {
				return -1
			}
			return 1
		}
		if x.CourierID < y.CourierID {
			return -1
		}
		return 1
	})
	return out
}

// append records an entry and refreshes its courier's balance.
func (b *Book) append(ctx context.Context, e cash.Entry) (bool, error) {
	created, err := b.store.AppendCash(ctx, e, b.now())
	if err != nil || e.CourierID == "" {
		return created, err
	}
	was := b.Blocks(e.CourierID, 1)
	if err := b.recompute(ctx, e.CourierID); err != nil {
		return created, err
	}
	if !was && b.OverCap != nil {
		b.mu.Lock()
		in := b.inHand[e.CourierID]
		b.mu.Unlock()
		if limit := b.capOf(e.CourierID); limit > 0 && in >= limit {
			b.OverCap(e.CourierID, in, limit)
		}
	}
	return created, nil
}

// Collect records a cash-on-delivery handover (once per order).
func (b *Book) Collect(ctx context.Context, h cash.Handover) error {
	entries, err := h.Entries()
	if err != nil {
		return err
	}
	for _, e := range entries {
		if _, err := b.append(ctx, e); err != nil {
			return fmt.Errorf("record collection of %s: %w", h.OrderID, err)
		}
	}
	return nil
}

// HandIn records cash a courier handed in to receiver (a dispatcher or
// admin) at hub. key makes a retried request record nothing new.
func (b *Book) HandIn(ctx context.Context, courierID string, amount cash.Centimes, receiver, hub string, notes int, key string) (cash.Entry, bool, error) {
	e := cash.Entry{CourierID: courierID, Kind: cash.HandedIn, Amount: amount, At: b.now().UTC(), By: receiver, Hub: hub, Notes: notes, Key: "handin:" + key}
	created, err := b.append(ctx, e)
	return e, created, err
}

// Correct records an admin's signed correction with its reason.
func (b *Book) Correct(ctx context.Context, courierID string, amount cash.Centimes, admin, reason, key string) (cash.Entry, bool, error) {
	e := cash.Entry{CourierID: courierID, Kind: cash.Correction, Amount: amount, At: b.now().UTC(), By: admin, Reason: reason, Key: "correction:" + key}
	created, err := b.append(ctx, e)
	return e, created, err
}

// Settle confirms a courier's settlement since its previous one, by the
// dispatcher by. cash.ErrConflict when another confirmation won.
func (b *Book) Settle(ctx context.Context, courierID, by string) (mongostore.StoredSettlement, error) {
	last, ok, err := b.store.LastSettlement(ctx, courierID)
	if err != nil {
		return mongostore.StoredSettlement{}, err
	}
	st, err := b.statement(ctx, courierID)
	if err != nil {
		return mongostore.StoredSettlement{}, err
	}
	s := st.Open
	s.ConfirmedBy = by
	n := 1
	if ok {
		n = last.N + 1
	}
	stored, err := b.store.InsertSettlement(ctx, n, s)
	if err != nil {
		return stored, err
	}
	return stored, b.recompute(ctx, courierID)
}

// Settlements lists a courier's confirmed settlements, newest first.
func (b *Book) Settlements(ctx context.Context, courierID string) ([]mongostore.StoredSettlement, error) {
	return b.store.Settlements(ctx, courierID, 100)
}

// SetCap sets a courier's own cap (negative: back to the default).
func (b *Book) SetCap(ctx context.Context, courierID string, limit cash.Centimes, by string) error {
	if err := b.store.SetCashCap(ctx, courierID, limit, by, b.now()); err != nil {
		return err
	}
	b.mu.Lock()
	if limit < 0 {
		delete(b.caps, courierID)
	} else {
		b.caps[courierID] = limit
	}
	b.mu.Unlock()
	return nil
}

// MerchantDays reconciles a merchant's days from fromDay to toDay
// (YYYY-MM-DD, inclusive, in the ledger's time zone).
func (b *Book) MerchantDays(ctx context.Context, merchantID, fromDay, toDay string) ([]cash.MerchantDay, error) {
	from, err := time.ParseInLocation(time.DateOnly, fromDay, b.cfg.Loc)
	if err != nil {
		return nil, fmt.Errorf("%w: from %q is not a day (YYYY-MM-DD)", cash.ErrInvalid, fromDay)
	}
	to, err := time.ParseInLocation(time.DateOnly, toDay, b.cfg.Loc)
	if err != nil || to.Before(from) || to.Sub(from) > 366*24*time.Hour {
		return nil, fmt.Errorf("%w: to %q must be a day on or after from, within a year", cash.ErrInvalid, toDay)
	}
	entries, err := b.store.MerchantCash(ctx, merchantID, from, to.AddDate(0, 0, 1), fromDay, toDay)
	if err != nil {
		return nil, err
	}
	return cash.Reconcile(merchantID, entries, b.cfg.Loc), nil
}

// Payout records the cash handed over to a merchant for a day and closes
// the day; ErrSettled if it was closed already.
func (b *Book) Payout(ctx context.Context, merchantID, day string, amount cash.Centimes, by, reference string) (cash.MerchantDay, error) {
	e := cash.Entry{Kind: cash.MerchantPayout, MerchantID: merchantID, Amount: amount, At: b.now().UTC(), By: by, Day: day,
		Reason: reference, Key: "payout:" + merchantID + ":" + day}
	created, err := b.append(ctx, e)
	if err != nil {
		return cash.MerchantDay{}, err
	}
	if !created {
		return cash.MerchantDay{}, fmt.Errorf("%w: %s for merchant %s", ErrSettled, day, merchantID)
	}
	days, err := b.MerchantDays(ctx, merchantID, day, day)
	if err != nil {
		return cash.MerchantDay{}, err
	}
	d := cash.MerchantDay{MerchantID: merchantID, Day: day, PaidOut: amount, Outstanding: -amount, Settled: true}
	if len(days) == 1 {
		d = days[0]
	}
	if b.SettlementClosed != nil {
		b.SettlementClosed(ctx, d, reference)
	}
	return d, nil
}

// Zone is where merchants' days begin and end.
func (b *Book) Zone() *time.Location { return b.cfg.Loc }

// SettledDays returns the merchant days (keys "merchant day") settled by a
// payout, for days from the day of from to the day of to.
func (b *Book) SettledDays(ctx context.Context, from, to time.Time) (map[string]bool, error) {
	ps, err := b.store.Payouts(ctx, from.In(b.cfg.Loc).Format(time.DateOnly), to.In(b.cfg.Loc).Format(time.DateOnly))
	if err != nil {
		return nil, err
	}
	out := make(map[string]bool, len(ps))
	for _, p := range ps {
		out[p.MerchantID+" "+p.Day] = true
	}
	return out, nil
}

// Erase pseudonymises an erased courier's ledger: amounts are kept for
// accounting, identity and places are not.
func (b *Book) Erase(ctx context.Context, courierID string) error {
	var r [8]byte
	if _, err := rand.Read(r[:]); err != nil {
		return err
	}
	if err := b.store.PseudonymiseCash(ctx, courierID, "erased-"+hex.EncodeToString(r[:])); err != nil {
		return err
	}
	b.mu.Lock()
	delete(b.inHand, courierID)
	delete(b.caps, courierID)
	b.mu.Unlock()
	return nil
}
