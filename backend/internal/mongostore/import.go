package mongostore

import (
	"context"
	"errors"
	"fmt"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"

	"github.com/tawsil/tawsil/backend/internal/account"
)

var _ account.BulkStore = (*Store)(nil)

// bulkChunk bounds one InsertMany or $in (FerretDB answers large ones slowly).
const bulkChunk = 1000

// UsersByEmails finds the users with any of the e-mails.
func (s *Store) UsersByEmails(ctx context.Context, emails []string) (map[string]account.User, error) {
	out := make(map[string]account.User, len(emails))
	for i := 0; i < len(emails); i += bulkChunk {
		cur, err := s.c("users").Find(ctx, bson.M{"email": bson.M{"$in": emails[i:min(i+bulkChunk, len(emails))]}})
		if err != nil {
			return nil, fmt.Errorf("find users: %w", err)
		}
		var docs []userDoc
		if err := cur.All(ctx, &docs); err != nil {
			return nil, fmt.Errorf("read users: %w", err)
		}
		for _, d := range docs {
			out[d.Email] = d.user()
		}
	}
	return out, nil
}

// InsertCouriers inserts courier records and sets their ids.
func (s *Store) InsertCouriers(ctx context.Context, cs []*account.Courier) error {
	docs := make([]any, len(cs))
	for i, c := range cs {
		c.ID = newID()
		docs[i] = courierDoc{ID: c.ID, UserID: c.UserID, Name: c.Name, Phone: c.Phone, Vehicle: c.Vehicle, Capacity: c.Capacity, CreatedAt: c.CreatedAt}
	}
	return s.insertMany(ctx, "couriers", docs, nil)
}

// InsertUsers inserts users and sets their ids; conflicts names the ones
// whose e-mail was taken (by index), which are not inserted.
func (s *Store) InsertUsers(ctx context.Context, us []*account.User) (map[int]bool, error) {
	docs := make([]any, len(us))
	for i, u := range us {
		u.ID = newID()
		docs[i] = userDoc{ID: u.ID, Email: u.Email, Name: u.Name, Role: string(u.Role), PasswordHash: u.PasswordHash,
			CourierID: u.CourierID, MerchantID: u.MerchantID, TokenVersion: u.TokenVersion, CreatedAt: u.CreatedAt}
	}
	conflicts := map[int]bool{}
	return conflicts, s.insertMany(ctx, "users", docs, conflicts)
}

// DeleteCouriers removes courier records (the undo of InsertCouriers).
func (s *Store) DeleteCouriers(ctx context.Context, ids []string) error {
	for i := 0; i < len(ids); i += bulkChunk {
		if _, err := s.c("couriers").DeleteMany(ctx, bson.M{"_id": bson.M{"$in": ids[i:min(i+bulkChunk, len(ids))]}}); err != nil {
			return fmt.Errorf("delete couriers: %w", err)
		}
	}
	return nil
}

// InsertDeviceCredentials stores new device logins.
func (s *Store) InsertDeviceCredentials(ctx context.Context, ds []account.DeviceCredential) error {
	docs := make([]any, len(ds))
	for i, d := range ds {
		docs[i] = deviceDoc{Username: d.Username, ClientID: d.ClientID, CourierID: d.CourierID, SecretHash: d.SecretHash, CreatedAt: d.CreatedAt}
	}
	return s.insertMany(ctx, "device_credentials", docs, nil)
}

// insertMany inserts in chunks, unordered. With dups, duplicate-key errors
// are recorded there (by index) instead of failing.
func (s *Store) insertMany(ctx context.Context, coll string, docs []any, dups map[int]bool) error {
	for i := 0; i < len(docs); i += bulkChunk {
		_, err := s.c(coll).InsertMany(ctx, docs[i:min(i+bulkChunk, len(docs))], options.InsertMany().SetOrdered(false))
		var bw mongo.BulkWriteException
		if dups != nil && errors.As(err, &bw) && bw.WriteConcernError == nil {
			only := true
			for _, we := range bw.WriteErrors {
				if we.Code != 11000 {
					only = false
					break
				}
				dups[i+we.Index] = true
			}
			if only {
				continue
			}
		}
		if err != nil {
			return fmt.Errorf("insert %s: %w", coll, err)
		}
	}
	return nil
}
