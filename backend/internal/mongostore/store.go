// Package mongostore persists Tawsil's data in MongoDB (or FerretDB over the
// same wire protocol) with the official driver. bson filters stay here.
//
// It uses only what MongoDB and FerretDB both serve: no transactions, no
// change streams. Idempotency lives in the data (unique indexes), and state
// changes that must not race are claimed by an insert under a unique index
// (the one write FerretDB makes exclusive): order events, timer firings,
// webhook attempts, refresh-token uses, sequence numbers.
package mongostore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/bson/primitive"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"
	"go.mongodb.org/mongo-driver/mongo/readpref"
	"go.mongodb.org/mongo-driver/mongo/writeconcern"
)

// Store is a connected database.
type Store struct {
	client *mongo.Client
	db     *mongo.Database
	log    *slog.Logger
	ttl    bool     // the server supports TTL indexes
	bases  sync.Map // sequence name → base (see NextSeq); a base never changes
	recent recentWrites
	old    oldShape
}

// Open connects and makes sure the indexes exist.
func Open(ctx context.Context, uri, database string, log *slog.Logger) (*Store, error) {
	opts := options.Client().ApplyURI(uri).
		SetServerSelectionTimeout(5 * time.Second).
		SetConnectTimeout(5 * time.Second).
		SetMaxPoolSize(64).
		SetRetryWrites(false) // FerretDB and standalone servers have no retryable writes
	if !strings.Contains(uri, "w=") {
		opts.SetWriteConcern(writeconcern.Majority())
	}
	client, err := mongo.Connect(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("connect mongodb: %w", err)
	}
	s := &Store{client: client, db: client.Database(database), log: log}
	if err := s.Ping(ctx); err != nil {
		_ = client.Disconnect(context.Background())
		return nil, fmt.Errorf("ping mongodb: %w", err)
	}
	if err := s.ensureIndexes(ctx); err != nil {
		_ = client.Disconnect(context.Background())
		return nil, err
	}
	return s, nil
}

// Close disconnects.
func (s *Store) Close(ctx context.Context) error { return s.client.Disconnect(ctx) }

// Ping checks the server answers.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return s.client.Ping(ctx, readpref.Primary())
}

// SupportsTTL reports whether a TTL index could be created (not on FerretDB).
func (s *Store) SupportsTTL() bool { return s.ttl }

func (s *Store) c(name string) *mongo.Collection { return s.db.Collection(name) }

func (s *Store) ensureIndexes(ctx context.Context) error {
	unique := options.Index().SetUnique(true)
	idx := []struct {
		coll string
		keys bson.D
		opt  *options.IndexOptions
	}{
		{"users", bson.D{{Key: "email", Value: 1}}, unique},
		{"device_credentials", bson.D{{Key: "courier_id", Value: 1}}, nil},
		{"refresh_tokens", bson.D{{Key: "user_id", Value: 1}}, nil},
		{"refresh_tokens", bson.D{{Key: "family", Value: 1}}, nil},
		{"positions", bson.D{{Key: "courier_id", Value: 1}, {Key: "ep", Value: 1}, {Key: "seq", Value: 1}}, unique},
		{"positions", bson.D{{Key: "courier_id", Value: 1}, {Key: "t", Value: 1}}, nil},
		{"positions", bson.D{{Key: "t", Value: 1}}, nil},
		{"orders", bson.D{{Key: "merchant_id", Value: 1}, {Key: "booked_at", Value: -1}}, nil},
		{"orders", bson.D{{Key: "status", Value: 1}}, nil},
		{"orders", bson.D{{Key: "courier_id", Value: 1}}, nil},
		{"orders", bson.D{{Key: "tracking_token", Value: 1}}, unique},
		{"order_events", bson.D{{Key: "order_id", Value: 1}, {Key: "at", Value: 1}}, nil},
		{"order_events", bson.D{{Key: "order_id", Value: 1}, {Key: "version", Value: 1}}, unique}, // the transition claim
		{"timers", bson.D{{Key: "due", Value: 1}}, nil},
		{"seqs", bson.D{{Key: "name", Value: 1}, {Key: "n", Value: -1}}, unique},
		{"route_plans", bson.D{{Key: "courier_id", Value: 1}, {Key: "version", Value: -1}}, unique},
		{"claims", bson.D{{Key: "at", Value: 1}}, nil},
		{"idempotency_keys", bson.D{{Key: "scope", Value: 1}, {Key: "key", Value: 1}}, unique},
		{"webhook_outbox", bson.D{{Key: "next_at", Value: 1}}, nil},
		{"webhooks", bson.D{{Key: "merchant_id", Value: 1}}, nil},
		{"audit_log", bson.D{{Key: "at", Value: -1}}, nil},
		{"handover_attempts", bson.D{{Key: "order_id", Value: 1}, {Key: "courier_id", Value: 1}}, nil},
	}
	// Before sequence epochs, {courier_id, seq} was unique: it would refuse a
	// restarted counter's fixes as duplicates.
	if _, err := s.c("positions").Indexes().DropOne(ctx, "courier_id_1_seq_1"); err != nil && !indexNotFound(err) {
		return fmt.Errorf("drop index positions courier_id_1_seq_1: %w", err)
	}
	for _, ix := range idx {
		m := mongo.IndexModel{Keys: ix.keys, Options: ix.opt}
		if _, err := s.c(ix.coll).Indexes().CreateOne(ctx, m); err != nil {
			return fmt.Errorf("index %s %v: %w", ix.coll, ix.keys, err)
		}
	}
	for _, m := range bucketIndexes() {
		if _, err := s.c(bucketsColl).Indexes().CreateOne(ctx, m); err != nil {
			return fmt.Errorf("index %s %v: %w", bucketsColl, m.Keys, err)
		}
	}
	return s.ensureCashIndexes(ctx)
}

// EnsureTTL adds TTL indexes on position history where the server supports
// them (a bucket goes when its latest fix is past retention; the purge job
// trims the buckets that straddle the cutoff); the purge job covers servers
// that do not (FerretDB answers NotImplemented).
func (s *Store) EnsureTTL(ctx context.Context, retention time.Duration) {
	bm := mongo.IndexModel{Keys: bson.D{{Key: "t1", Value: 1}},
		Options: options.Index().SetExpireAfterSeconds(int32(retention.Seconds())).SetName("position_buckets_ttl")}
	if _, err := s.c(bucketsColl).Indexes().CreateOne(ctx, bm); err != nil {
		s.log.Info("no TTL index on position buckets; the purge job enforces retention", "reason", err.Error())
		return
	}
	m := mongo.IndexModel{Keys: bson.D{{Key: "t", Value: 1}},
		Options: options.Index().SetExpireAfterSeconds(int32(retention.Seconds())).SetName("positions_ttl")}
	if _, err := s.c("positions").Indexes().CreateOne(ctx, m); err != nil {
		s.log.Info("no TTL index on positions; the purge job enforces retention", "reason", err.Error())
		return
	}
	s.ttl = true
}

func newID() string { return primitive.NewObjectID().Hex() }

func isDup(err error) bool { return mongo.IsDuplicateKeyError(err) }

func notFound(err error) bool { return errors.Is(err, mongo.ErrNoDocuments) }

// indexNotFound reports a dropIndexes of an index (or collection) that does not exist.
func indexNotFound(err error) bool {
	var ce mongo.CommandError
	if errors.As(err, &ce) {
		return ce.Code == 27 || ce.Code == 26 || ce.Name == "IndexNotFound" || ce.Name == "NamespaceNotFound"
	}
	return false
}
