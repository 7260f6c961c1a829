package mongostore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo/options"

	"github.com/tawsil/tawsil/backend/internal/core"
	"github.com/tawsil/tawsil/backend/internal/order"
)

// orderDoc is the stored form of an order: the domain fields inline, plus
// the secrets the API never shows (bson ignores json tags, so they persist)
// and the durable operational state (Extra).
type orderDoc struct {
	ID          string `bson:"_id"`
	order.Order `bson:",inline"`
	Extra       `bson:",inline"`
}

// StoredOrder is an order with its operational facts: the core's state,
// persisted as it is.
type StoredOrder = core.State

// Extra is the order's operational facts (core.Ops), stored inline in the
// order document under their historical field names.
type Extra = core.Ops

// Contact is a pending contact_customer decision (core.Contact).
type Contact = core.Contact

func (d *orderDoc) stored() StoredOrder {
	o := d.Order
	return StoredOrder{Order: &o, Ops: d.Extra}
}

func docOf(o StoredOrder) orderDoc { return orderDoc{ID: o.ID, Order: *o.Order, Extra: o.Ops} }

// NewOrderID returns a fresh order id.
func NewOrderID() string { return newID() }

// InsertOrder stores a new order; order.ErrConflict when the id exists.
func (s *Store) InsertOrder(ctx context.Context, o StoredOrder) error {
	_, err := s.c("orders").InsertOne(ctx, docOf(o))
	if isDup(err) {
		return order.ErrConflict
	}
	if err != nil {
		return fmt.Errorf("insert order: %w", err)
	}
	return nil
}

// Commit records one change of an order: next is the order after it, ev the
// event of it, with ev.Version == next.Version. The change is claimed by
// inserting the event (carrying next's state) under the unique index
// {order_id, version}: of any number of writers, on any replica, exactly one
// gets a version (MongoDB and FerretDB both make that insert exclusive,
// which FerretDB does not do for a filtered update). order.ErrConflict when
// another writer claimed it first. The order document is written after; a
// crash between the two writes loses nothing, because Order and
// ActiveOrders apply events found beyond the document's version.
func (s *Store) Commit(ctx context.Context, next StoredOrder, ev order.Event) error {
	if ev.Version != next.Version || ev.OrderID != next.ID {
		return fmt.Errorf("commit order %s: event %s v%d does not match v%d", next.ID, ev.OrderID, ev.Version, next.Version)
	}
	if err := s.appendEvent(ctx, ev, &next); err != nil {
		return err
	}
	s.project(ctx, next)
	return nil
}

// project writes an order document at a version the event log already
// holds, unless the document is newer. A failure is not an error of the
// change: the event is the truth and readers catch up from it.
func (s *Store) project(ctx context.Context, o StoredOrder) {
	_, err := s.c("orders").ReplaceOne(ctx, bson.M{"_id": o.ID, "version": bson.M{"$lt": o.Version}}, docOf(o))
	if err != nil {
		s.log.Warn("order document behind its events; readers catch up", "order_id", o.ID, "version", o.Version, "err", err)
	}
}

// UpdateOrder replaces an order if its stored version is prevVersion. It is
// not exclusive on FerretDB: use Commit for changes that may race; this is
// only for changes that keep the version (redaction of finished orders).
func (s *Store) UpdateOrder(ctx context.Context, o StoredOrder, prevVersion int) error {
	r, err := s.c("orders").ReplaceOne(ctx, bson.M{"_id": o.ID, "version": prevVersion}, docOf(o))
	if err != nil {
		return fmt.Errorf("update order: %w", err)
	}
	if r.MatchedCount == 0 {
		return order.ErrConflict
	}
	return nil
}

// catchUp returns o at the newest version its events hold (o itself when
// the document is current), and repairs the document.
func (s *Store) catchUp(ctx context.Context, o StoredOrder) (StoredOrder, error) {
	var ev struct {
		State *orderDoc `bson:"state"`
	}
	err := s.c("order_events").FindOne(ctx, bson.M{"order_id": o.ID, "version": bson.M{"$gt": o.Version}, "state": bson.M{"$exists": true}},
		options.FindOne().SetSort(bson.D{{Key: "version", Value: -1}})).Decode(&ev)
	if notFound(err) || (err == nil && ev.State == nil) {
		return o, nil
	}
	if err != nil {
		return StoredOrder{}, fmt.Errorf("order %s events: %w", o.ID, err)
	}
	n := ev.State.stored()
	s.project(ctx, n)
	return n, nil
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
		out[i] = docs[i].stored()
	}
	return out, nil
}

// Order finds one order at its newest version; order.ErrNotFound.
func (s *Store) Order(ctx context.Context, id string) (StoredOrder, error) {
	o, err := s.findOrder(ctx, bson.M{"_id": id})
	if err != nil {
		return o, err
	}
	return s.catchUp(ctx, o)
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
	return d.stored(), nil
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
	os, err := s.findOrders(ctx, bson.M{"status": bson.M{"$in": active}}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
	if err != nil || len(os) == 0 {
		return os, err
	}
	// One look at the event log for all of them: which documents are behind?
	ids := make([]string, len(os))
	for i, o := range os {
		ids[i] = o.ID
	}
	cur, err := s.c("order_events").Find(ctx, bson.M{"order_id": bson.M{"$in": ids}},
		options.Find().SetProjection(bson.M{"order_id": 1, "version": 1}))
	if err != nil {
		return nil, fmt.Errorf("active order events: %w", err)
	}
	var evs []struct {
		OrderID string `bson:"order_id"`
		Version int    `bson:"version"`
	}
	if err := cur.All(ctx, &evs); err != nil {
		return nil, fmt.Errorf("active order events: %w", err)
	}
	newest := map[string]int{}
	for _, e := range evs {
		newest[e.OrderID] = max(newest[e.OrderID], e.Version)
	}
	out := os[:0]
	for _, o := range os {
		if newest[o.ID] > o.Version {
			if o, err = s.catchUp(ctx, o); err != nil {
				return nil, err
			}
			if o.Status.Terminal() {
				continue
			}
		}
		out = append(out, o)
	}
	return out, nil
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
		// The event log's copies of the order hold the same personal data.
		if _, err := s.c("order_events").UpdateMany(ctx, bson.M{"order_id": o.ID}, bson.M{"$unset": bson.M{"state": ""}}); err != nil {
			return n, fmt.Errorf("redact order events: %w", err)
		}
		n++
	}
	return n, nil
}

// AppendEvent records an event without an order state (append-only);
// order.ErrConflict when the order already has an event at that version.
func (s *Store) AppendEvent(ctx context.Context, e order.Event) error {
	return s.appendEvent(ctx, e, nil)
}

func (s *Store) appendEvent(ctx context.Context, e order.Event, state *StoredOrder) error {
	doc := bson.M{"_id": newID(), "order_id": e.OrderID, "from": e.From, "to": e.To, "action": e.Action,
		"actor_role": e.Actor.Role, "actor_id": e.Actor.ID, "at": e.At, "reason": e.Reason, "note": e.Note, "version": e.Version}
	if e.Lat != nil && e.Lng != nil {
		doc["lat"], doc["lng"] = *e.Lat, *e.Lng
	}
	if state != nil {
		d := docOf(*state)
		doc["state"] = d
	}
	_, err := s.c("order_events").InsertOne(ctx, doc)
	if isDup(err) {
		return fmt.Errorf("order %s version %d: %w", e.OrderID, e.Version, order.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("order %s event: %w", e.OrderID, err)
	}
	return nil
}

// Events lists an order's events oldest first.
func (s *Store) Events(ctx context.Context, orderID string) ([]order.Event, error) {
	cur, err := s.c("order_events").Find(ctx, bson.M{"order_id": orderID}, options.Find().SetSort(bson.D{{Key: "version", Value: 1}}).SetProjection(bson.M{"state": 0}))
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
