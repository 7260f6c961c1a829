package mongostore

import (
	"context"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"

	"github.com/tawsil/tawsil/backend/internal/cash"
)

// The cash ledger: append-only entries (unique by key: an order's
// collection is recorded once, whoever reports it), courier settlements
// (unique by courier and number: two dispatchers cannot confirm the same
// shift twice), and per-courier caps.

type cashEntryDoc struct {
	ID         string      `bson:"_id"`
	Key        string      `bson:"key"`
	CourierID  string      `bson:"courier_id,omitempty"`
	Kind       string      `bson:"kind"`
	Amount     int64       `bson:"amount"` // centimes
	At         time.Time   `bson:"at"`
	Recorded   time.Time   `bson:"recorded"`
	OrderID    string      `bson:"order_id,omitempty"`
	MerchantID string      `bson:"merchant_id,omitempty"`
	Place      *cash.Point `bson:"place,omitempty"`
	By         string      `bson:"by,omitempty"`
	Hub        string      `bson:"hub,omitempty"`
	Notes      int         `bson:"notes,omitempty"`
	Reason     string      `bson:"reason,omitempty"`
	Day        string      `bson:"day,omitempty"`
}

func (d cashEntryDoc) entry() cash.Entry {
	return cash.Entry{ID: d.ID, Key: d.Key, CourierID: d.CourierID, Kind: cash.Kind(d.Kind), Amount: cash.Centimes(d.Amount),
		At: d.At.UTC(), OrderID: d.OrderID, MerchantID: d.MerchantID, Place: d.Place, By: d.By, Hub: d.Hub,
		Notes: d.Notes, Reason: d.Reason, Day: d.Day}
}

type cashSettlementDoc struct {
	ID          string    `bson:"_id"`
	CourierID   string    `bson:"courier_id"`
	N           int       `bson:"n"` // 1, 2, ... per courier
	From        time.Time `bson:"from"`
	To          time.Time `bson:"to"`
	Opening     int64     `bson:"opening"`
	Collected   int64     `bson:"collected"`
	Change      int64     `bson:"change"`
	HandedIn    int64     `bson:"handed_in"`
	Corrections int64     `bson:"corrections"`
	Deliveries  int       `bson:"deliveries"`
	Difference  int64     `bson:"difference"`
	ConfirmedBy string    `bson:"confirmed_by"`
}

// StoredSettlement is a confirmed courier settlement and its number.
type StoredSettlement struct {
	ID string `json:"id"`
	N  int    `json:"n"`
	cash.Settlement
}

func (d cashSettlementDoc) settlement() StoredSettlement {
	return StoredSettlement{ID: d.ID, N: d.N, Settlement: cash.Settlement{CourierID: d.CourierID, From: d.From.UTC(), To: d.To.UTC(),
		Opening: cash.Centimes(d.Opening), Collected: cash.Centimes(d.Collected), Change: cash.Centimes(d.Change),
		HandedIn: cash.Centimes(d.HandedIn), Corrections: cash.Centimes(d.Corrections), Deliveries: d.Deliveries,
		Difference: cash.Centimes(d.Difference), ConfirmedBy: d.ConfirmedBy}}
}

func (s *Store) ensureCashIndexes(ctx context.Context) error {
	unique := options.Index().SetUnique(true)
	for _, m := range []struct {
		coll string
		idx  mongo.IndexModel
	}{
		{"cash_ledger", mongo.IndexModel{Keys: bson.D{{Key: "key", Value: 1}}, Options: unique}},
		{"cash_ledger", mongo.IndexModel{Keys: bson.D{{Key: "courier_id", Value: 1}, {Key: "at", Value: 1}}}},
		{"cash_ledger", mongo.IndexModel{Keys: bson.D{{Key: "merchant_id", Value: 1}, {Key: "at", Value: 1}}}},
		{"cash_ledger", mongo.IndexModel{Keys: bson.D{{Key: "recorded", Value: 1}}}},
		{"cash_settlements", mongo.IndexModel{Keys: bson.D{{Key: "courier_id", Value: 1}, {Key: "n", Value: 1}}, Options: unique}},
	} {
		if _, err := s.c(m.coll).Indexes().CreateOne(ctx, m.idx); err != nil {
			return fmt.Errorf("index %s: %w", m.coll, err)
		}
	}
	return nil
}

// AppendCash records a ledger entry once: created is false (and nothing
// changes) when an entry with its key exists already.
func (s *Store) AppendCash(ctx context.Context, e cash.Entry, recorded time.Time) (created bool, err error) {
	if err := e.Validate(); err != nil {
		return false, err
	}
	d := cashEntryDoc{ID: newID(), Key: e.Key, CourierID: e.CourierID, Kind: string(e.Kind), Amount: int64(e.Amount),
		At: e.At.UTC(), Recorded: recorded.UTC(), OrderID: e.OrderID, MerchantID: e.MerchantID, Place: e.Place,
		By: e.By, Hub: e.Hub, Notes: e.Notes, Reason: e.Reason, Day: e.Day}
	if _, err := s.c("cash_ledger").InsertOne(ctx, d); err != nil {
		if isDup(err) {
			return false, nil
		}
		return false, fmt.Errorf("append cash entry: %w", err)
	}
	return true, nil
}

func (s *Store) findCash(ctx context.Context, filter bson.M, limit int64) ([]cash.Entry, error) {
	opts := options.Find().SetSort(bson.D{{Key: "at", Value: 1}, {Key: "_id", Value: 1}})
	if limit > 0 {
		opts.SetLimit(limit)
	}
	cur, err := s.c("cash_ledger").Find(ctx, filter, opts)
	if err != nil {
		return nil, fmt.Errorf("find cash entries: %w", err)
	}
	var docs []cashEntryDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("read cash entries: %w", err)
	}
	out := make([]cash.Entry, len(docs))
	for i, d := range docs {
		out[i] = d.entry()
	}
	return out, nil
}

// CourierCash returns a courier's entries after since (zero: all), oldest first.
func (s *Store) CourierCash(ctx context.Context, courierID string, since time.Time) ([]cash.Entry, error) {
	f := bson.M{"courier_id": courierID}
	if !since.IsZero() {
		f["at"] = bson.M{"$gt": since.UTC()}
	}
	return s.findCash(ctx, f, 0)
}

// MerchantCash returns the entries for a merchant's orders at or after
// from and before to, and its payouts for days in [fromDay, toDay].
func (s *Store) MerchantCash(ctx context.Context, merchantID string, from, to time.Time, fromDay, toDay string) ([]cash.Entry, error) {
	return s.findCash(ctx, bson.M{"merchant_id": merchantID, "$or": bson.A{
		bson.M{"kind": bson.M{"$in": bson.A{string(cash.Collected), string(cash.ChangeGiven)}}, "at": bson.M{"$gte": from.UTC(), "$lt": to.UTC()}},
		bson.M{"kind": string(cash.MerchantPayout), "day": bson.M{"$gte": fromDay, "$lte": toDay}},
	}}, 0)
}

// Payouts returns the merchant payouts for days in [fromDay, toDay].
func (s *Store) Payouts(ctx context.Context, fromDay, toDay string) ([]cash.Entry, error) {
	return s.findCash(ctx, bson.M{"kind": string(cash.MerchantPayout), "day": bson.M{"$gte": fromDay, "$lte": toDay}}, 0)
}

// CashRecordedSince returns the courier entries recorded after t, for
// replicas to follow each other's appends.
func (s *Store) CashRecordedSince(ctx context.Context, t time.Time) ([]cash.Entry, error) {
	return s.findCash(ctx, bson.M{"recorded": bson.M{"$gt": t.UTC()}, "courier_id": bson.M{"$exists": true, "$ne": ""}}, 0)
}

// LastSettlement returns a courier's latest confirmed settlement; ok is
// false when there is none.
func (s *Store) LastSettlement(ctx context.Context, courierID string) (st StoredSettlement, ok bool, err error) {
	var d cashSettlementDoc
	err = s.c("cash_settlements").FindOne(ctx, bson.M{"courier_id": courierID},
		options.FindOne().SetSort(bson.D{{Key: "n", Value: -1}})).Decode(&d)
	if notFound(err) {
		return StoredSettlement{}, false, nil
	}
	if err != nil {
		return StoredSettlement{}, false, fmt.Errorf("last settlement: %w", err)
	}
	return d.settlement(), true, nil
}

// Settlements lists a courier's settlements, newest first.
func (s *Store) Settlements(ctx context.Context, courierID string, limit int64) ([]StoredSettlement, error) {
	cur, err := s.c("cash_settlements").Find(ctx, bson.M{"courier_id": courierID},
		options.Find().SetSort(bson.D{{Key: "n", Value: -1}}).SetLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("find settlements: %w", err)
	}
	var docs []cashSettlementDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("read settlements: %w", err)
	}
	out := make([]StoredSettlement, len(docs))
	for i, d := range docs {
		out[i] = d.settlement()
	}
	return out, nil
}

// InsertSettlement records settlement number n for its courier; it
// returns cash.ErrConflict when number n exists (someone confirmed first).
func (s *Store) InsertSettlement(ctx context.Context, n int, st cash.Settlement) (StoredSettlement, error) {
	d := cashSettlementDoc{ID: newID(), CourierID: st.CourierID, N: n, From: st.From.UTC(), To: st.To.UTC(),
		Opening: int64(st.Opening), Collected: int64(st.Collected), Change: int64(st.Change), HandedIn: int64(st.HandedIn),
		Corrections: int64(st.Corrections), Deliveries: st.Deliveries, Difference: int64(st.Difference), ConfirmedBy: st.ConfirmedBy}
	if _, err := s.c("cash_settlements").InsertOne(ctx, d); err != nil {
		if isDup(err) {
			return StoredSettlement{}, fmt.Errorf("%w: settlement %d of courier %s was confirmed meanwhile", cash.ErrConflict, n, st.CourierID)
		}
		return StoredSettlement{}, fmt.Errorf("insert settlement: %w", err)
	}
	return d.settlement(), nil
}

// AllLastSettlements returns every courier's latest settlement.
func (s *Store) AllLastSettlements(ctx context.Context) (map[string]StoredSettlement, error) {
	cur, err := s.c("cash_settlements").Find(ctx, bson.M{}, options.Find().SetSort(bson.D{{Key: "n", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("find settlements: %w", err)
	}
	var docs []cashSettlementDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("read settlements: %w", err)
	}
	out := map[string]StoredSettlement{}
	for _, d := range docs {
		out[d.CourierID] = d.settlement() // sorted by n: the last wins
	}
	return out, nil
}

type cashCapDoc struct {
	CourierID string    `bson:"_id"`
	Limit     int64     `bson:"limit"`
	By        string    `bson:"by"`
	At        time.Time `bson:"at"`
}

// SetCashCap sets a courier's own cash-in-hand cap (negative: back to the default).
func (s *Store) SetCashCap(ctx context.Context, courierID string, limit cash.Centimes, by string, at time.Time) error {
	if limit < 0 {
		_, err := s.c("cash_caps").DeleteOne(ctx, bson.M{"_id": courierID})
		return err
	}
	_, err := s.c("cash_caps").ReplaceOne(ctx, bson.M{"_id": courierID},
		cashCapDoc{CourierID: courierID, Limit: int64(limit), By: by, At: at.UTC()}, options.Replace().SetUpsert(true))
	if err != nil {
		return fmt.Errorf("set cash cap: %w", err)
	}
	return nil
}

// CashCaps returns every courier's own cap.
func (s *Store) CashCaps(ctx context.Context) (map[string]cash.Centimes, error) {
	cur, err := s.c("cash_caps").Find(ctx, bson.M{})
	if err != nil {
		return nil, fmt.Errorf("find cash caps: %w", err)
	}
	var docs []cashCapDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("read cash caps: %w", err)
	}
	out := make(map[string]cash.Centimes, len(docs))
	for _, d := range docs {
		out[d.CourierID] = cash.Centimes(d.Limit)
	}
	return out, nil
}

// PseudonymiseCash replaces an erased courier's identity in its ledger
// and settlements with pseudonym and drops the places; amounts, times and
// orders are kept for accounting.
func (s *Store) PseudonymiseCash(ctx context.Context, courierID, pseudonym string) error {
	if _, err := s.c("cash_ledger").UpdateMany(ctx, bson.M{"courier_id": courierID},
		bson.M{"$set": bson.M{"courier_id": pseudonym}, "$unset": bson.M{"place": ""}}); err != nil {
		return fmt.Errorf("pseudonymise cash ledger: %w", err)
	}
	if _, err := s.c("cash_settlements").UpdateMany(ctx, bson.M{"courier_id": courierID},
		bson.M{"$set": bson.M{"courier_id": pseudonym}}); err != nil {
		return fmt.Errorf("pseudonymise settlements: %w", err)
	}
	if _, err := s.c("cash_caps").DeleteOne(ctx, bson.M{"_id": courierID}); err != nil {
		return fmt.Errorf("drop cash cap: %w", err)
	}
	return nil
}
