package mongostore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo/options"

	"github.com/tawsil/tawsil/backend/internal/order"
)

// orderDoc is the stored form of an order: the domain fields inline, plus
// the secrets the API never shows (bson ignores json tags, so they persist).
type orderDoc struct {
	ID          string `bson:"_id"`
	order.Order `bson:",inline"`
	RelayID     string       `bson:"relay_id,omitempty"`
	OrigPickup  *order.Place `bson:"orig_pickup,omitempty"`
}

// StoredOrder is an order with the store-only extras.
type StoredOrder struct {
	*order.Order
	RelayID    string       // set when the drop-off was moved to a relay point
	OrigPickup *order.Place // the merchant's pick-up, when a hand-over moved Pickup
}

// NewOrderID returns a fresh order id.
func NewOrderID() string { return newID() }

// InsertOrder stores a new order; order.ErrConflict when the id exists.
func (s *Store) InsertOrder(ctx context.Context, o StoredOrder) error {
	_, err := s.c("orders").InsertOne(ctx, orderDoc{ID: o.ID, Order: *o.Order, RelayID: o.RelayID, OrigPickup: o.OrigPickup})
	if isDup(err) {
		return order.ErrConflict
	}
	if err != nil {
		return fmt.Errorf("insert order: %w", err)
	}
	return nil
}

// UpdateOrder replaces an order if its stored version is prevVersion
// (compare-and-set): order.ErrConflict when someone else changed it first.
func (s *Store) UpdateOrder(ctx context.Context, o StoredOrder, prevVersion int) error {
	r, err := s.c("orders").ReplaceOne(ctx, bson.M{"_id": o.ID, "version": prevVersion},
		orderDoc{ID: o.ID, Order: *o.Order, RelayID: o.RelayID, OrigPickup: o.OrigPickup})
	if err != nil {
		return fmt.Errorf("update order: %w", err)
	}
	if r.MatchedCount == 0 {
		return order.ErrConflict
	}
	return nil
}

func (s *Store) findOrders(ctx context.Context, filter bson.M, opts *options.FindOptions) ([]StoredOrder, error) {
	cur, err := s.c("orders").Find(ctx, filter, opts)
	if err != nil {
		return nil, fmt.Errorf("find orders: %w", err)
	}
	var docs []orderDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("find orders: %w", err)
	}
	out := make([]StoredOrder, len(docs))
	for i := range docs {
		o := docs[i].Order
		out[i] = StoredOrder{Order: &o, RelayID: docs[i].RelayID, OrigPickup: docs[i].OrigPickup}
	}
	return out, nil
}

// Order finds one order; order.ErrNotFound.
func (s *Store) Order(ctx context.Context, id string) (StoredOrder, error) {
	return s.findOrder(ctx, bson.M{"_id": id})
}

// OrderByToken finds an order by its public tracking token.
func (s *Store) OrderByToken(ctx context.Context, token string) (StoredOrder, error) {
	return s.findOrder(ctx, bson.M{"trackingtoken": token})
}

func (s *Store) findOrder(ctx context.Context, filter bson.M) (StoredOrder, error) {
	var d orderDoc
	err := s.c("orders").FindOne(ctx, filter).Decode(&d)
	if notFound(err) {
		return StoredOrder{}, order.ErrNotFound
	}
	if err != nil {
		return StoredOrder{}, fmt.Errorf("find order: %w", err)
	}
	o := d.Order
	return StoredOrder{Order: &o, RelayID: d.RelayID, OrigPickup: d.OrigPickup}, nil
}

// OrderFilter selects orders in lists.
type OrderFilter struct {
	MerchantID string
	CourierID  string
	Statuses   []order.Status
	From, To   time.Time // booked_at range; zero = open
	After      string    // cursor: orders with id below this (newest first)
	Limit      int
}

// Orders lists orders newest first (ids are time-ordered).
func (s *Store) Orders(ctx context.Context, f OrderFilter) ([]StoredOrder, error) {
	q := bson.M{}
	if f.MerchantID != "" {
		q["merchantid"] = f.MerchantID
	}
	if f.CourierID != "" {
		q["courierid"] = f.CourierID
	}
	if len(f.Statuses) > 0 {
		q["status"] = bson.M{"$in": f.Statuses}
	}
	booked := bson.M{}
	if !f.From.IsZero() {
		booked["$gte"] = f.From
	}
	if !f.To.IsZero() {
		booked["$lt"] = f.To
	}
	if len(booked) > 0 {
		q["bookedat"] = booked
	}
	if f.After != "" {
		q["_id"] = bson.M{"$lt": f.After}
	}
	opts := options.Find().SetSort(bson.D{{Key: "_id", Value: -1}})
	if f.Limit > 0 {
		opts.SetLimit(int64(f.Limit))
	}
	return s.findOrders(ctx, q, opts)
}

// ActiveOrders lists every order not in a terminal state.
func (s *Store) ActiveOrders(ctx context.Context) ([]StoredOrder, error) {
	var active []order.Status
	for _, st := range order.Statuses() {
		if !st.Terminal() {
			active = append(active, st)
		}
	}
	return s.findOrders(ctx, bson.M{"status": bson.M{"$in": active}}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
}

// RedactOrders blanks customer personal data of orders finished before cutoff.
func (s *Store) RedactOrders(ctx context.Context, cutoff time.Time, redact func(*order.Order)) (int, error) {
	var terminal []order.Status
	for _, st := range order.Statuses() {
		if st.Terminal() {
			terminal = append(terminal, st)
		}
	}
	os, err := s.findOrders(ctx, bson.M{"status": bson.M{"$in": terminal}, "redacted": bson.M{"$ne": true}, "bookedat": bson.M{"$lt": cutoff}},
		options.Find().SetLimit(5000))
	if err != nil {
		return 0, err
	}
	n := 0
	for _, o := range os {
		prev := o.Version
		redact(o.Order)
		if err := s.UpdateOrder(ctx, o, prev); err != nil && !errors.Is(err, order.ErrConflict) {
			return n, err
		}
		n++
	}
	return n, nil
}

// AppendEvent records a transition (append-only).
func (s *Store) AppendEvent(ctx context.Context, e order.Event) error {
	doc := bson.M{"_id": newID(), "order_id": e.OrderID, "from": e.From, "to": e.To, "action": e.Action,
		"actor_role": e.Actor.Role, "actor_id": e.Actor.ID, "at": e.At, "reason": e.Reason, "note": e.Note, "version": e.Version}
	if e.Lat != nil && e.Lng != nil {
		doc["lat"], doc["lng"] = *e.Lat, *e.Lng
	}
	_, err := s.c("order_events").InsertOne(ctx, doc)
	return err
}

// Events lists an order's events oldest first.
func (s *Store) Events(ctx context.Context, orderID string) ([]order.Event, error) {
	cur, err := s.c("order_events").Find(ctx, bson.M{"order_id": orderID}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return nil, err
	}
	var docs []struct {
		OrderID   string       `bson:"order_id"`
		From      order.Status `bson:"from"`
		To        order.Status `bson:"to"`
		Action    order.Kind   `bson:"action"`
		ActorRole order.Role   `bson:"actor_role"`
		ActorID   string       `bson:"actor_id"`
		At        time.Time    `bson:"at"`
		Lat       *float64     `bson:"lat"`
		Lng       *float64     `bson:"lng"`
		Reason    string       `bson:"reason"`
		Note      string       `bson:"note"`
		Version   int          `bson:"version"`
	}
	if err := cur.All(ctx, &docs); err != nil {
		return nil, err
	}
	out := make([]order.Event, len(docs))
	for i, d := range docs {
		out[i] = order.Event{OrderID: d.OrderID, From: d.From, To: d.To, Action: d.Action, Actor: order.Actor{Role: d.ActorRole, ID: d.ActorID},
			At: d.At, Lat: d.Lat, Lng: d.Lng, Reason: d.Reason, Note: d.Note, Version: d.Version}
	}
	return out, nil
}

// IdemKey is a stored idempotency key.
type IdemKey struct {
	Scope    string    `bson:"scope"`
	Key      string    `bson:"key"`
	BodyHash string    `bson:"body_hash"`
	OrderID  string    `bson:"order_id"`
	At       time.Time `bson:"at"`
}

// ClaimIdempotencyKey stores k, or returns the key already stored under the
// same scope and key (existing=true).
func (s *Store) ClaimIdempotencyKey(ctx context.Context, k IdemKey) (stored IdemKey, existing bool, err error) {
	_, err = s.c("idempotency_keys").InsertOne(ctx, k)
	if err == nil {
		return k, false, nil
	}
	if !isDup(err) {
		return IdemKey{}, false, fmt.Errorf("idempotency key: %w", err)
	}
	err = s.c("idempotency_keys").FindOne(ctx, bson.M{"scope": k.Scope, "key": k.Key}).Decode(&stored)
	if err != nil {
		return IdemKey{}, false, fmt.Errorf("idempotency key: %w", err)
	}
	return stored, true, nil
}

// Shift is a courier's on-duty interval (To zero while on duty).
type Shift struct {
	CourierID string    `bson:"courier_id"`
	From      time.Time `bson:"from"`
	To        time.Time `bson:"to,omitempty"`
}

// OpenShift records a shift start (no-op when one is open).
func (s *Store) OpenShift(ctx context.Context, courierID string, at time.Time) error {
	n, err := s.c("shifts").CountDocuments(ctx, bson.M{"courier_id": courierID, "to": bson.M{"$exists": false}})
	if err != nil || n > 0 {
		return err
	}
	_, err = s.c("shifts").InsertOne(ctx, bson.M{"_id": newID(), "courier_id": courierID, "from": at})
	return err
}

// CloseShift ends the open shift of a courier.
func (s *Store) CloseShift(ctx context.Context, courierID string, at time.Time) error {
	_, err := s.c("shifts").UpdateMany(ctx, bson.M{"courier_id": courierID, "to": bson.M{"$exists": false}}, bson.M{"$set": bson.M{"to": at}})
	return err
}

// Shifts lists shifts overlapping [from, to).
func (s *Store) Shifts(ctx context.Context, from, to time.Time) ([]Shift, error) {
	cur, err := s.c("shifts").Find(ctx, bson.M{"from": bson.M{"$lt": to}, "$or": bson.A{bson.M{"to": bson.M{"$exists": false}}, bson.M{"to": bson.M{"$gt": from}}}})
	if err != nil {
		return nil, err
	}
	var out []Shift
	return out, cur.All(ctx, &out)
}

// StoredResponse is the answer kept under an idempotency key.
type StoredResponse struct {
	Status      int    `bson:"status"`
	ContentType string `bson:"content_type"`
	Body        []byte `bson:"body"`
}

// IdemResponse returns the response stored under a claimed key (nil while
// the first request is still running).
func (s *Store) IdemResponse(ctx context.Context, scope, key string) (*StoredResponse, error) {
	var d struct {
		Response *StoredResponse `bson:"response"`
	}
	if err := s.c("idempotency_keys").FindOne(ctx, bson.M{"scope": scope, "key": key}).Decode(&d); err != nil {
		return nil, err
	}
	return d.Response, nil
}

// SaveIdemResponse stores the answer of the request that claimed a key.
func (s *Store) SaveIdemResponse(ctx context.Context, scope, key string, r StoredResponse) error {
	_, err := s.c("idempotency_keys").UpdateOne(ctx, bson.M{"scope": scope, "key": key}, bson.M{"$set": bson.M{"response": r}})
	return err
}

// ReleaseIdemKey forgets a claim whose request failed, so it can be retried.
func (s *Store) ReleaseIdemKey(ctx context.Context, scope, key string) error {
	_, err := s.c("idempotency_keys").DeleteOne(ctx, bson.M{"scope": scope, "key": key})
	return err
}
