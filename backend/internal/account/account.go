// Package account holds users, couriers, merchants and device credentials, and
// the rules around them: creating users, logging in, refreshing and revoking
// tokens, erasing a user. Storage is behind the Store interface.
package account

import (
	"context"
	"errors"
	"time"

	"github.com/tawsil/tawsil/backend/internal/auth"
)

// Errors the service returns; the HTTP layer maps them to statuses.
var (
	ErrNotFound     = errors.New("not found")
	ErrConflict     = errors.New("already exists")
	ErrInvalid      = errors.New("invalid input")
	ErrBadLogin     = errors.New("wrong email or password")
	ErrThrottled    = errors.New("too many attempts")
	ErrTokenRevoked = errors.New("token revoked or unknown")
	ErrDisabled     = errors.New("account disabled")
	// ErrInactive: the operation needs an account that is neither disabled nor erased.
	ErrInactive = errors.New("account disabled or erased")
)

// User is a person who logs in.
type User struct {
	ID           string
	Email        string
	Name         string
	Role         auth.Role
	PasswordHash string
	CourierID    string // role courier
	MerchantID   string // role merchant
	TokenVersion int64
	Disabled     bool
	Erased       bool
	CreatedAt    time.Time
}

// Courier is a delivery person's operational record.
type Courier struct {
	ID        string
	UserID    string
	Name      string
	Phone     string // E.164, optional; shown masked to dispatchers
	Vehicle   string // scooter, bike, car, foot
	Capacity  int    // orders carried at once
	OnShift   bool
	ShiftFrom time.Time
	CreatedAt time.Time
}

// Merchant is a shop, dark store or restaurant that books deliveries.
type Merchant struct {
	ID        string
	Name      string
	Policy    string // failed-delivery policy name (standard, strict_return, relay_ok)
	Deliver   string // proof at delivery: "otp" (default) or "proof"
	CreatedAt time.Time
}

// DeviceCredential lets one courier's device log in to the broker.
type DeviceCredential struct {
	Username   string // MQTT username (= courier id, so %u ACL patterns work)
	ClientID   string
	CourierID  string
	SecretHash string
	CreatedAt  time.Time
	RevokedAt  *time.Time
}

// RefreshToken is an opaque, revocable, single-use token (stored hashed).
type RefreshToken struct {
	Hash      string
	UserID    string
	Family    string // all tokens descending from one login; reuse revokes the family
	ExpiresAt time.Time
	Revoked   bool
	CreatedAt time.Time
}

// Store persists accounts. Methods return ErrNotFound or ErrConflict as stated.
type Store interface {
	CreateUser(ctx context.Context, u *User) error                       // ErrConflict on email
	UserByEmail(ctx context.Context, email string) (User, error)         // ErrNotFound
	UserByID(ctx context.Context, id string) (User, error)               // ErrNotFound
	BumpTokenVersion(ctx context.Context, userID string) error           // ErrNotFound
	SetPassword(ctx context.Context, userID, hash string) error          // ErrNotFound; bumps token version
	EraseUser(ctx context.Context, userID, pseudonym string) error       // ErrNotFound
	SetDisabled(ctx context.Context, userID string, disabled bool) error // ErrNotFound; bumps token version
	CountUsers(ctx context.Context) (int64, error)
	CreateCourier(ctx context.Context, c *Courier) error
	DeleteCourier(ctx context.Context, id string) error          // undoes CreateCourier when the user insert fails
	CourierByID(ctx context.Context, id string) (Courier, error) // ErrNotFound
	Couriers(ctx context.Context) ([]Courier, error)
	SetShift(ctx context.Context, courierID string, on bool, at time.Time) error
	CreateMerchant(ctx context.Context, m *Merchant) error
	MerchantByID(ctx context.Context, id string) (Merchant, error) // ErrNotFound
	PutDeviceCredential(ctx context.Context, d DeviceCredential) error
	DeviceCredential(ctx context.Context, username string) (DeviceCredential, error)               // ErrNotFound
	RevokeDeviceCredentials(ctx context.Context, courierID string, at time.Time) ([]string, error) // client ids revoked
	InsertRefresh(ctx context.Context, r RefreshToken) error
	// UseRefresh atomically marks an unrevoked, unexpired token revoked and
	// returns it; ErrTokenRevoked when it was already used, revoked or expired.
	UseRefresh(ctx context.Context, hash string, now time.Time) (RefreshToken, error)
	RefreshByHash(ctx context.Context, hash string) (RefreshToken, error) // ErrNotFound
	RevokeRefreshFamily(ctx context.Context, family string) error
	RevokeRefreshUser(ctx context.Context, userID string) error
}
