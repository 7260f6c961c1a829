package mongostore

import (
	"context"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo/options"

	"github.com/tawsil/tawsil/backend/internal/account"
	"github.com/tawsil/tawsil/backend/internal/auth"
)

var _ account.Store = (*Store)(nil)

type userDoc struct {
	ID           string    `bson:"_id"`
	Email        string    `bson:"email"`
	Name         string    `bson:"name"`
	Role         string    `bson:"role"`
	PasswordHash string    `bson:"password_hash"`
	CourierID    string    `bson:"courier_id,omitempty"`
	MerchantID   string    `bson:"merchant_id,omitempty"`
	TokenVersion int64     `bson:"token_version"`
	Disabled     bool      `bson:"disabled"`
	Erased       bool      `bson:"erased"`
	CreatedAt    time.Time `bson:"created_at"`
}

func (d userDoc) user() account.User {
	return account.User{ID: d.ID, Email: d.Email, Name: d.Name, Role: auth.Role(d.Role), PasswordHash: d.PasswordHash,
		CourierID: d.CourierID, MerchantID: d.MerchantID, TokenVersion: d.TokenVersion, Disabled: d.Disabled, Erased: d.Erased, CreatedAt: d.CreatedAt}
}

// CreateUser inserts a user; ErrConflict when the email exists.
func (s *Store) CreateUser(ctx context.Context, u *account.User) error {
	u.ID = newID()
	_, err := s.c("users").InsertOne(ctx, userDoc{ID: u.ID, Email: u.Email, Name: u.Name, Role: string(u.Role), PasswordHash: u.PasswordHash,
		CourierID: u.CourierID, MerchantID: u.MerchantID, TokenVersion: u.TokenVersion, CreatedAt: u.CreatedAt})
	if isDup(err) {
		return account.ErrConflict
	}
	if err == nil && u.CourierID != "" {
		_, err = s.c("couriers").UpdateByID(ctx, u.CourierID, bson.M{"$set": bson.M{"user_id": u.ID}})
	}
	return err
}

func (s *Store) findUser(ctx context.Context, filter bson.M) (account.User, error) {
	var d userDoc
	err := s.c("users").FindOne(ctx, filter).Decode(&d)
	if notFound(err) {
		return account.User{}, account.ErrNotFound
	}
	if err != nil {
		return account.User{}, fmt.Errorf("find user: %w", err)
	}
	return d.user(), nil
}

// UserByEmail finds a user by email.
func (s *Store) UserByEmail(ctx context.Context, email string) (account.User, error) {
	return s.findUser(ctx, bson.M{"email": email})
}

// UserByID finds a user by id.
func (s *Store) UserByID(ctx context.Context, id string) (account.User, error) {
	return s.findUser(ctx, bson.M{"_id": id})
}

func (s *Store) updateUser(ctx context.Context, id string, update bson.M) error {
	r, err := s.c("users").UpdateByID(ctx, id, update)
	if err != nil {
		return fmt.Errorf("update user: %w", err)
	}
	if r.MatchedCount == 0 {
		return account.ErrNotFound
	}
	return nil
}

// BumpTokenVersion invalidates every access token issued to the user.
func (s *Store) BumpTokenVersion(ctx context.Context, userID string) error {
	return s.updateUser(ctx, userID, bson.M{"$inc": bson.M{"token_version": 1}})
}

// SetPassword replaces the hash and invalidates access tokens.
func (s *Store) SetPassword(ctx context.Context, userID, hash string) error {
	return s.updateUser(ctx, userID, bson.M{"$set": bson.M{"password_hash": hash}, "$inc": bson.M{"token_version": 1}})
}

// EraseUser pseudonymises a user's personal fields.
func (s *Store) EraseUser(ctx context.Context, userID, pseudonym string) error {
	u, err := s.UserByID(ctx, userID)
	if err != nil {
		return err
	}
	if err := s.updateUser(ctx, userID, bson.M{"$set": bson.M{"email": pseudonym + "@erased.invalid", "name": pseudonym,
		"password_hash": "", "erased": true, "disabled": true}, "$inc": bson.M{"token_version": 1}}); err != nil {
		return err
	}
	if u.CourierID != "" {
		if _, err := s.c("couriers").UpdateByID(ctx, u.CourierID, bson.M{"$set": bson.M{"name": pseudonym, "on_shift": false}, "$unset": bson.M{"phone": ""}}); err != nil {
			return fmt.Errorf("erase courier: %w", err)
		}
		if err := s.erasePositions(ctx, u.CourierID); err != nil {
			return err
		}
		if _, err := s.c("courier_state").DeleteOne(ctx, bson.M{"_id": u.CourierID}); err != nil {
			return fmt.Errorf("erase courier state: %w", err)
		}
	}
	return nil
}

// SetDisabled sets the disabled flag and invalidates access tokens.
func (s *Store) SetDisabled(ctx context.Context, userID string, disabled bool) error {
	return s.updateUser(ctx, userID, bson.M{"$set": bson.M{"disabled": disabled}, "$inc": bson.M{"token_version": 1}})
}

// CountUsers counts users.
func (s *Store) CountUsers(ctx context.Context) (int64, error) {
	return s.c("users").CountDocuments(ctx, bson.M{})
}

type courierDoc struct {
	ID        string    `bson:"_id"`
	UserID    string    `bson:"user_id"`
	Name      string    `bson:"name"`
	Phone     string    `bson:"phone,omitempty"`
	Vehicle   string    `bson:"vehicle"`
	Capacity  int       `bson:"capacity"`
	OnShift   bool      `bson:"on_shift"`
	ShiftFrom time.Time `bson:"shift_from"`
	CreatedAt time.Time `bson:"created_at"`
}

func (d courierDoc) courier() account.Courier {
	return account.Courier{ID: d.ID, UserID: d.UserID, Name: d.Name, Phone: d.Phone, Vehicle: d.Vehicle, Capacity: d.Capacity, OnShift: d.OnShift, ShiftFrom: d.ShiftFrom, CreatedAt: d.CreatedAt}
}

// CreateCourier inserts a courier record.
func (s *Store) CreateCourier(ctx context.Context, c *account.Courier) error {
	c.ID = newID()
	_, err := s.c("couriers").InsertOne(ctx, courierDoc{ID: c.ID, UserID: c.UserID, Name: c.Name, Phone: c.Phone, Vehicle: c.Vehicle, Capacity: c.Capacity, CreatedAt: c.CreatedAt})
	return err
}

// DeleteCourier removes a courier record (the undo of CreateCourier).
func (s *Store) DeleteCourier(ctx context.Context, id string) error {
	if _, err := s.c("couriers").DeleteOne(ctx, bson.M{"_id": id}); err != nil {
		return fmt.Errorf("delete courier: %w", err)
	}
	return nil
}

// CourierByID finds a courier.
func (s *Store) CourierByID(ctx context.Context, id string) (account.Courier, error) {
	var d courierDoc
	err := s.c("couriers").FindOne(ctx, bson.M{"_id": id}).Decode(&d)
	if notFound(err) {
		return account.Courier{}, account.ErrNotFound
	}
	if err != nil {
		return account.Courier{}, fmt.Errorf("find courier: %w", err)
	}
	return d.courier(), nil
}

// Couriers lists all couriers.
func (s *Store) Couriers(ctx context.Context) ([]account.Courier, error) {
	cur, err := s.c("couriers").Find(ctx, bson.M{}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("list couriers: %w", err)
	}
	var docs []courierDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("list couriers: %w", err)
	}
	out := make([]account.Courier, len(docs))
	for i, d := range docs {
		out[i] = d.courier()
	}
	return out, nil
}

// SetShift records on/off duty.
func (s *Store) SetShift(ctx context.Context, courierID string, on bool, at time.Time) error {
	set := bson.M{"on_shift": on}
	if on {
		set["shift_from"] = at
	}
	r, err := s.c("couriers").UpdateByID(ctx, courierID, bson.M{"$set": set})
	if err != nil {
		return fmt.Errorf("set shift: %w", err)
	}
	if r.MatchedCount == 0 {
		return account.ErrNotFound
	}
	return nil
}

type merchantDoc struct {
	ID        string    `bson:"_id"`
	Name      string    `bson:"name"`
	Policy    string    `bson:"policy"`
	Deliver   string    `bson:"deliver"`
	CreatedAt time.Time `bson:"created_at"`
}

// CreateMerchant inserts a merchant.
func (s *Store) CreateMerchant(ctx context.Context, m *account.Merchant) error {
	m.ID = newID()
	_, err := s.c("merchants").InsertOne(ctx, merchantDoc{ID: m.ID, Name: m.Name, Policy: m.Policy, Deliver: m.Deliver, CreatedAt: m.CreatedAt})
	return err
}

// MerchantByID finds a merchant.
func (s *Store) MerchantByID(ctx context.Context, id string) (account.Merchant, error) {
	var d merchantDoc
	err := s.c("merchants").FindOne(ctx, bson.M{"_id": id}).Decode(&d)
	if notFound(err) {
		return account.Merchant{}, account.ErrNotFound
	}
	if err != nil {
		return account.Merchant{}, fmt.Errorf("find merchant: %w", err)
	}
	return account.Merchant{ID: d.ID, Name: d.Name, Policy: d.Policy, Deliver: d.Deliver, CreatedAt: d.CreatedAt}, nil
}

type deviceDoc struct {
	Username   string     `bson:"_id"`
	ClientID   string     `bson:"client_id"`
	CourierID  string     `bson:"courier_id"`
	SecretHash string     `bson:"secret_hash"`
	CreatedAt  time.Time  `bson:"created_at"`
	RevokedAt  *time.Time `bson:"revoked_at,omitempty"`
}

// PutDeviceCredential stores (replaces) a device credential.
func (s *Store) PutDeviceCredential(ctx context.Context, d account.DeviceCredential) error {
	_, err := s.c("device_credentials").ReplaceOne(ctx, bson.M{"_id": d.Username},
		deviceDoc{Username: d.Username, ClientID: d.ClientID, CourierID: d.CourierID, SecretHash: d.SecretHash, CreatedAt: d.CreatedAt},
		options.Replace().SetUpsert(true))
	return err
}

// DeviceCredential finds a credential by MQTT username.
func (s *Store) DeviceCredential(ctx context.Context, username string) (account.DeviceCredential, error) {
	var d deviceDoc
	err := s.c("device_credentials").FindOne(ctx, bson.M{"_id": username}).Decode(&d)
	if notFound(err) {
		return account.DeviceCredential{}, account.ErrNotFound
	}
	if err != nil {
		return account.DeviceCredential{}, fmt.Errorf("find device credential: %w", err)
	}
	return account.DeviceCredential{Username: d.Username, ClientID: d.ClientID, CourierID: d.CourierID, SecretHash: d.SecretHash, CreatedAt: d.CreatedAt, RevokedAt: d.RevokedAt}, nil
}

// RevokeDeviceCredentials revokes a courier's live credentials and returns their client ids.
func (s *Store) RevokeDeviceCredentials(ctx context.Context, courierID string, at time.Time) ([]string, error) {
	cur, err := s.c("device_credentials").Find(ctx, bson.M{"courier_id": courierID, "revoked_at": bson.M{"$exists": false}})
	if err != nil {
		return nil, fmt.Errorf("find device credentials: %w", err)
	}
	var docs []deviceDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, err
	}
	var ids []string
	for _, d := range docs {
		if _, err := s.c("device_credentials").UpdateByID(ctx, d.Username, bson.M{"$set": bson.M{"revoked_at": at}}); err != nil {
			return ids, fmt.Errorf("revoke device credential: %w", err)
		}
		ids = append(ids, d.ClientID)
	}
	return ids, nil
}

type refreshDoc struct {
	Hash      string    `bson:"_id"`
	UserID    string    `bson:"user_id"`
	Family    string    `bson:"family"`
	ExpiresAt time.Time `bson:"expires_at"`
	Revoked   bool      `bson:"revoked"`
	CreatedAt time.Time `bson:"created_at"`
}

func (d refreshDoc) token() account.RefreshToken {
	return account.RefreshToken{Hash: d.Hash, UserID: d.UserID, Family: d.Family, ExpiresAt: d.ExpiresAt, Revoked: d.Revoked, CreatedAt: d.CreatedAt}
}

// InsertRefresh stores a refresh token hash.
func (s *Store) InsertRefresh(ctx context.Context, r account.RefreshToken) error {
	_, err := s.c("refresh_tokens").InsertOne(ctx, refreshDoc{Hash: r.Hash, UserID: r.UserID, Family: r.Family, ExpiresAt: r.ExpiresAt, CreatedAt: r.CreatedAt})
	return err
}

// UseRefresh spends a token once: the use is claimed by inserting it under
// the token's hash (exclusive on MongoDB and FerretDB, where a filtered
// update is not), so two concurrent refreshes with one token, on any
// replicas, cannot both succeed.
func (s *Store) UseRefresh(ctx context.Context, hash string, now time.Time) (account.RefreshToken, error) {
	var d refreshDoc
	err := s.c("refresh_tokens").FindOne(ctx, bson.M{"_id": hash, "revoked": false, "expires_at": bson.M{"$gt": now}}).Decode(&d)
	if notFound(err) {
		return account.RefreshToken{}, account.ErrTokenRevoked
	}
	if err != nil {
		return account.RefreshToken{}, fmt.Errorf("use refresh token: %w", err)
	}
	if _, err := s.c("refresh_uses").InsertOne(ctx, bson.M{"_id": hash, "at": now}); isDup(err) {
		return account.RefreshToken{}, account.ErrTokenRevoked
	} else if err != nil {
		return account.RefreshToken{}, fmt.Errorf("use refresh token: %w", err)
	}
	if _, err := s.c("refresh_tokens").UpdateOne(ctx, bson.M{"_id": hash}, bson.M{"$set": bson.M{"revoked": true}}); err != nil {
		return account.RefreshToken{}, fmt.Errorf("use refresh token: %w", err)
	}
	return d.token(), nil
}

// RefreshByHash finds a token whatever its state.
func (s *Store) RefreshByHash(ctx context.Context, hash string) (account.RefreshToken, error) {
	var d refreshDoc
	err := s.c("refresh_tokens").FindOne(ctx, bson.M{"_id": hash}).Decode(&d)
	if notFound(err) {
		return account.RefreshToken{}, account.ErrNotFound
	}
	if err != nil {
		return account.RefreshToken{}, err
	}
	return d.token(), nil
}

// RevokeRefreshFamily revokes all tokens of one login.
func (s *Store) RevokeRefreshFamily(ctx context.Context, family string) error {
	_, err := s.c("refresh_tokens").UpdateMany(ctx, bson.M{"family": family}, bson.M{"$set": bson.M{"revoked": true}})
	return err
}

// RevokeRefreshUser revokes all tokens of a user.
func (s *Store) RevokeRefreshUser(ctx context.Context, userID string) error {
	_, err := s.c("refresh_tokens").UpdateMany(ctx, bson.M{"user_id": userID}, bson.M{"$set": bson.M{"revoked": true}})
	return err
}
