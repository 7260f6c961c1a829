package mongostore

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo/options"

	"github.com/tawsil/tawsil/backend/internal/core"
)

// Claim makes the caller the one process, among every replica, that does the
// work named by key: true for exactly one caller. A claim older than lease
// whose work is still there (the claimer died) can be taken over: the
// takeover is itself a claim of a derived key, so it too has one winner.
func (s *Store) Claim(ctx context.Context, key string, now time.Time, lease time.Duration) (bool, error) {
	k := key
	for gen := 1; gen <= 16; gen++ {
		_, err := s.c("claims").InsertOne(ctx, bson.M{"_id": k, "at": now})
		if err == nil {
			return true, nil
		}
		if !isDup(err) {
			return false, fmt.Errorf("claim %s: %w", k, err)
		}
		var d struct {
			At time.Time `bson:"at"`
		}
		if err := s.c("claims").FindOne(ctx, bson.M{"_id": k}).Decode(&d); err != nil {
			if notFound(err) {
				return false, nil // purged meanwhile: the work is long done
			}
			return false, fmt.Errorf("claim %s: %w", k, err)
		}
		if now.Sub(d.At) < lease {
			return false, nil
		}
		k = key + "~" + strconv.Itoa(gen)
	}
	return false, nil
}

// PurgeClaims deletes claims older than before.
func (s *Store) PurgeClaims(ctx context.Context, before time.Time) error {
	_, err := s.c("claims").DeleteMany(ctx, bson.M{"at": bson.M{"$lt": before}})
	return err
}

// Timer is an order's deadline as a document (core.Timer): any replica
// fires it once it is due, claiming it first.
type Timer = core.Timer

// ArmTimer stores (or replaces) a timer.
func (s *Store) ArmTimer(ctx context.Context, t Timer) error {
	_, err := s.c("timers").ReplaceOne(ctx, bson.M{"_id": t.ID}, t, options.Replace().SetUpsert(true))
	if err != nil {
		return fmt.Errorf("arm timer %s: %w", t.ID, err)
	}
	return nil
}

// CancelTimer deletes a timer (no error when it is gone).
func (s *Store) CancelTimer(ctx context.Context, id string) error {
	_, err := s.c("timers").DeleteOne(ctx, bson.M{"_id": id})
	return err
}

// DueTimers lists timers due at now, soonest first.
func (s *Store) DueTimers(ctx context.Context, now time.Time, limit int) ([]Timer, error) {
	cur, err := s.c("timers").Find(ctx, bson.M{"due": bson.M{"$lte": now}}, options.Find().SetSort(bson.D{{Key: "due", Value: 1}}).SetLimit(int64(limit)))
	if err != nil {
		return nil, fmt.Errorf("due timers: %w", err)
	}
	var out []Timer
	return out, cur.All(ctx, &out)
}

// Timers lists the timers of an order.
func (s *Store) Timers(ctx context.Context, orderID string) ([]Timer, error) {
	cur, err := s.c("timers").Find(ctx, bson.M{"order_id": orderID}, options.Find().SetSort(bson.D{{Key: "due", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("timers: %w", err)
	}
	var out []Timer
	return out, cur.All(ctx, &out)
}

// NextSeq issues the next number of a named sequence, above every number
// issued before by any process. A sequence is base+1, base+2, ...: the base
// (floor, from the first issuer) is claimed once, then each number is
// claimed by an insert under a unique index, one after the other without
// gaps, so a number is issued once and a later claim is always higher.
// hint, when not zero, is the last number this process saw (it saves a read).
func (s *Store) NextSeq(ctx context.Context, name string, floor, hint uint64) (uint64, error) {
	base, err := s.seqBase(ctx, name, floor)
	if err != nil {
		return 0, err
	}
	var k uint64
	if hint > base {
		k = hint - base + 1
	} else {
		last, err := s.lastSeq(ctx, name)
		if err != nil {
			return 0, err
		}
		k = last + 1
	}
	for try := 0; try < 50; try++ {
		_, err := s.c("seqs").InsertOne(ctx, bson.M{"_id": name + "/" + strconv.FormatUint(k, 10), "name": name, "n": int64(k)})
		if err == nil {
			if k%256 == 0 { // keep the collection small: the newest numbers are what matters
				_, _ = s.c("seqs").DeleteMany(ctx, bson.M{"name": name, "n": bson.M{"$lt": int64(k) - 4096}})
			}
			return base + k, nil
		}
		if !isDup(err) {
			return 0, fmt.Errorf("sequence %s: %w", name, err)
		}
		last, err := s.lastSeq(ctx, name)
		if err != nil {
			return 0, err
		}
		k = max(last, k) + 1
	}
	return 0, fmt.Errorf("sequence %s: too much contention", name)
}

func (s *Store) seqBase(ctx context.Context, name string, floor uint64) (uint64, error) {
	if b, ok := s.bases.Load(name); ok {
		return b.(uint64), nil
	}
	_, err := s.c("seq_bases").InsertOne(ctx, bson.M{"_id": name, "base": int64(floor)})
	if err != nil && !isDup(err) {
		return 0, fmt.Errorf("sequence %s: %w", name, err)
	}
	var d struct {
		Base int64 `bson:"base"`
	}
	if err := s.c("seq_bases").FindOne(ctx, bson.M{"_id": name}).Decode(&d); err != nil {
		return 0, fmt.Errorf("sequence %s: %w", name, err)
	}
	s.bases.Store(name, uint64(d.Base))
	return uint64(d.Base), nil
}

func (s *Store) lastSeq(ctx context.Context, name string) (uint64, error) {
	var d struct {
		N int64 `bson:"n"`
	}
	err := s.c("seqs").FindOne(ctx, bson.M{"name": name}, options.FindOne().SetSort(bson.D{{Key: "n", Value: -1}})).Decode(&d)
	if notFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("sequence %s: %w", name, err)
	}
	return uint64(d.N), nil
}

// RoutePlan is a courier's planned route at one version.
type RoutePlan struct {
	CourierID string    `bson:"courier_id"`
	Version   uint64    `bson:"version"`
	Planned   time.Time `bson:"planned"`
	Reason    string    `bson:"reason,omitempty"`
	Plan      []byte    `bson:"plan"` // the route as the order side encodes it
}

// SaveRoutePlan stores a plan; order.ErrConflict-free: versions come from
// NextSeq, so each (courier, version) is written once.
func (s *Store) SaveRoutePlan(ctx context.Context, p RoutePlan) error {
	_, err := s.c("route_plans").InsertOne(ctx, bson.M{"_id": p.CourierID + "/" + strconv.FormatUint(p.Version, 10), "courier_id": p.CourierID,
		"version": int64(p.Version), "planned": p.Planned, "reason": p.Reason, "plan": p.Plan})
	if err != nil {
		return fmt.Errorf("save route plan: %w", err)
	}
	if p.Version > 64 {
		_, _ = s.c("route_plans").DeleteMany(ctx, bson.M{"courier_id": p.CourierID, "version": bson.M{"$lt": int64(p.Version) - 64}})
	}
	return nil
}

// LatestRoutePlan returns a courier's newest plan (ok=false when none).
func (s *Store) LatestRoutePlan(ctx context.Context, courier string) (RoutePlan, bool, error) {
	var d struct {
		CourierID string    `bson:"courier_id"`
		Version   int64     `bson:"version"`
		Planned   time.Time `bson:"planned"`
		Reason    string    `bson:"reason"`
		Plan      []byte    `bson:"plan"`
	}
	err := s.c("route_plans").FindOne(ctx, bson.M{"courier_id": courier}, options.FindOne().SetSort(bson.D{{Key: "version", Value: -1}})).Decode(&d)
	if notFound(err) {
		return RoutePlan{}, false, nil
	}
	if err != nil {
		return RoutePlan{}, false, fmt.Errorf("route plan: %w", err)
	}
	return RoutePlan{CourierID: d.CourierID, Version: uint64(d.Version), Planned: d.Planned, Reason: d.Reason, Plan: d.Plan}, true, nil
}

// AssignedSince counts, per courier, the orders assigned at or after since
// (the fairness counter "orders today").
func (s *Store) AssignedSince(ctx context.Context, since time.Time) (map[string]int, error) {
	cur, err := s.c("orders").Find(ctx, bson.M{"milestones.assignedat": bson.M{"$gte": since}, "courierid": bson.M{"$ne": ""}},
		options.Find().SetProjection(bson.M{"courierid": 1}))
	if err != nil {
		return nil, fmt.Errorf("assigned since: %w", err)
	}
	var docs []struct {
		CourierID string `bson:"courierid"`
	}
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("assigned since: %w", err)
	}
	out := map[string]int{}
	for _, d := range docs {
		out[d.CourierID]++
	}
	return out, nil
}
