package mongostore

import (
	"context"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"
)

// Position is one stored fix.
type Position struct {
	CourierID string `bson:"courier_id" json:"-"`
	// Epoch and Seq identify the fix (unique with CourierID). Documents
	// stored before epochs have no "ep" (version-1 fixes now store 0).
	Epoch      uint64    `bson:"ep" json:"epoch,omitempty"`
	Seq        uint64    `bson:"seq" json:"seq"`
	Lat        float64   `bson:"lat" json:"lat"`
	Lng        float64   `bson:"lng" json:"lng"`
	AccuracyM  float64   `bson:"acc" json:"accuracy_m"`
	SpeedMPS   float64   `bson:"spd" json:"speed_mps"`
	HeadingDeg float64   `bson:"hdg" json:"heading_deg"`
	Battery    int       `bson:"bat" json:"battery"`
	T          time.Time `bson:"t" json:"t"`  // device time
	ReceivedAt time.Time `bson:"rt" json:"-"` // server time
	// Late: the fix did not pass the live plausibility check when it
	// arrived: it was behind the live position (a re-send, a late message, a
	// lower sequence number: such fixes skip the speed check), or it was
	// accepted only when a run of fixes re-anchored the courier. It is
	// history, never evidence (a failed delivery's GPS check ignores it).
	Late bool `bson:"late,omitempty" json:"late,omitempty"`
}

// Position history has two shapes. Since history buckets, every write is a
// bucket (see bucketDoc, in position_buckets); the documents of one fix
// each, in positions, are what older versions wrote: they stay readable
// (Track, CountPositions read both and merge) and are erased and purged like
// buckets, so an upgrade loses nothing and needs no migration.

// CourierState is the latest snapshot of a courier, to rebuild the live index.
type CourierState struct {
	CourierID string    `bson:"_id"`
	Epoch     uint64    `bson:"ep,omitempty"`
	Seq       uint64    `bson:"seq"`
	Lat       float64   `bson:"lat"`
	Lng       float64   `bson:"lng"`
	AccuracyM float64   `bson:"acc"`
	SpeedMPS  float64   `bson:"spd"`
	Heading   float64   `bson:"hdg"`
	Battery   int       `bson:"bat"`
	T         time.Time `bson:"t"`
	SeenAt    time.Time `bson:"seen_at"`
	Online    bool      `bson:"online"`
}

// SaveCourierStates upserts snapshots, one conditional upsert each (the
// throttled snapshotter calls this with only the couriers that changed).
func (s *Store) SaveCourierStates(ctx context.Context, states []CourierState) error {
	if len(states) == 0 {
		return nil
	}
	models := make([]mongo.WriteModel, len(states))
	for i, st := range states {
		models[i] = mongo.NewReplaceOneModel().SetFilter(bson.M{"_id": st.CourierID}).SetReplacement(st).SetUpsert(true)
	}
	_, err := s.c("courier_state").BulkWrite(ctx, models, options.BulkWrite().SetOrdered(false))
	if isDup(err) {
		// Another replica inserted the same courier's snapshot first (FerretDB's
		// upsert is not atomic): the document exists now, so this replaces it.
		_, err = s.c("courier_state").BulkWrite(ctx, models, options.BulkWrite().SetOrdered(false))
	}
	if err != nil {
		return fmt.Errorf("save courier states: %w", err)
	}
	return nil
}

// CourierStates loads all snapshots.
func (s *Store) CourierStates(ctx context.Context) ([]CourierState, error) {
	cur, err := s.c("courier_state").Find(ctx, bson.M{})
	if err != nil {
		return nil, fmt.Errorf("load courier states: %w", err)
	}
	var out []CourierState
	if err := cur.All(ctx, &out); err != nil {
		return nil, fmt.Errorf("load courier states: %w", err)
	}
	return out, nil
}

// AuditEntry records who read or changed whose personal data.
type AuditEntry struct {
	ID        string    `bson:"_id" json:"id"`
	At        time.Time `bson:"at" json:"at"`
	ActorID   string    `bson:"actor_id" json:"actor_id"`
	ActorRole string    `bson:"actor_role" json:"actor_role"`
	Action    string    `bson:"action" json:"action"`
	Subject   string    `bson:"subject" json:"subject"` // e.g. "courier:ID", "order:ID"
	Detail    string    `bson:"detail,omitempty" json:"detail,omitempty"`
}

// AppendAudit adds an entry; the collection is append-only (no update path).
func (s *Store) AppendAudit(ctx context.Context, e AuditEntry) error {
	e.ID = newID()
	_, err := s.c("audit_log").InsertOne(ctx, e)
	return err
}

// Audit lists entries newest first, before the cursor id when given.
func (s *Store) Audit(ctx context.Context, subject, before string, limit int) ([]AuditEntry, error) {
	f := bson.M{}
	if subject != "" {
		f["subject"] = subject
	}
	if before != "" {
		f["_id"] = bson.M{"$lt": before}
	}
	cur, err := s.c("audit_log").Find(ctx, f, options.Find().SetSort(bson.D{{Key: "_id", Value: -1}}).SetLimit(int64(limit)))
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	out := []AuditEntry{}
	if err := cur.All(ctx, &out); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	return out, nil
}

// DeviceProfile is the profile pushed to one courier's device (JSON as sent).
type DeviceProfile struct {
	CourierID string    `bson:"_id"`
	JSON      []byte    `bson:"json"`
	At        time.Time `bson:"at"`
}

// PutDeviceProfile stores the profile last pushed to a device.
func (s *Store) PutDeviceProfile(ctx context.Context, p DeviceProfile) error {
	_, err := s.c("device_profiles").ReplaceOne(ctx, bson.M{"_id": p.CourierID}, p, options.Replace().SetUpsert(true))
	return err
}

// DeviceProfiles lists every pushed profile.
func (s *Store) DeviceProfiles(ctx context.Context) ([]DeviceProfile, error) {
	cur, err := s.c("device_profiles").Find(ctx, bson.M{})
	if err != nil {
		return nil, err
	}
	var out []DeviceProfile
	return out, cur.All(ctx, &out)
}

// PutModel stores a learned model (JSON) under a name, replacing the last one.
func (s *Store) PutModel(ctx context.Context, name string, raw []byte) error {
	doc := bson.M{"_id": name, "json": raw, "at": time.Now().UTC()}
	_, err := s.c("models").ReplaceOne(ctx, bson.M{"_id": name}, doc, options.Replace().SetUpsert(true))
	if isDup(err) { // a concurrent upsert by another replica won the insert: replace it
		_, err = s.c("models").ReplaceOne(ctx, bson.M{"_id": name}, doc, options.Replace().SetUpsert(true))
	}
	return err
}

// Model returns a stored model's JSON; nil when none was stored yet.
func (s *Store) Model(ctx context.Context, name string) ([]byte, error) {
	var d struct {
		JSON []byte `bson:"json"`
	}
	err := s.c("models").FindOne(ctx, bson.M{"_id": name}).Decode(&d)
	if notFound(err) {
		return nil, nil
	}
	return d.JSON, err
}
