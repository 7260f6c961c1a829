package account

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/tawsil/tawsil/backend/internal/auth"
	"github.com/tawsil/tawsil/backend/internal/textsafe"
)

// TokenPair is what login and refresh return.
type TokenPair struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
}

// NewUser is the input of CreateUser.
type NewUser struct {
	Email    string
	Password string
	Role     auth.Role
	Name     string
	Vehicle  string // couriers; default scooter
	Capacity int    // couriers; default 3
	Phone    string // couriers; optional, E.164 (+212...)
	Policy   string // merchants; default standard
}

// DeviceSecret is a freshly issued device credential, shown once.
type DeviceSecret struct {
	Username string `json:"mqtt_username"`
	Password string `json:"mqtt_password"`
	ClientID string `json:"client_id"`
}

// Service implements account rules over a Store.
type Service struct {
	store      Store
	tokens     *auth.Tokens
	refreshTTL time.Duration
	bcryptCost int
	throttle   *auth.Throttle
	log        *slog.Logger
	now        func() time.Time

	// OnDeviceRevoked is called with the MQTT client ids of revoked devices so
	// the broker can disconnect them.
	OnDeviceRevoked func(clientIDs []string)
	// OnUserRevoked is called once every token of a user was revoked (logout,
	// password change, disabling, erasure), with the user as it is now, so
	// that open streams end and a disabled or erased courier leaves the live
	// state at once.
	OnUserRevoked func(u User)
	// OnUserRestored is called when a disabled user is enabled again.
	OnUserRestored func(u User)

	mu    sync.Mutex
	cache map[string]tokenState

	refreshLocks [16]sync.Mutex
}

type tokenState struct {
	tv       int64
	disabled bool
	at       time.Time
}

// stateTTL bounds how long another replica may honour a revoked token.
// Revocations made by this replica take effect at once.
const stateTTL = 5 * time.Second

// NewService builds the service. bcryptCost 0 means bcrypt's default.
func NewService(store Store, tokens *auth.Tokens, refreshTTL time.Duration, bcryptCost int, log *slog.Logger) *Service {
	return &Service{store: store, tokens: tokens, refreshTTL: refreshTTL, bcryptCost: bcryptCost,
		throttle: auth.NewThrottle(), log: log, now: time.Now, cache: map[string]tokenState{}}
}

// Throttle exposes the login throttle (tests shorten it).
func (s *Service) Throttle() *auth.Throttle { return s.throttle }

// CreateUser validates and creates a user; a courier also gets a courier
// record, a merchant a merchant record.
func (s *Service) CreateUser(ctx context.Context, in NewUser) (User, error) {
	email := strings.ToLower(strings.TrimSpace(in.Email))
	if a, err := mail.ParseAddress(email); err != nil || a.Address != email || len(email) > 254 || textsafe.Identifier(email) != nil {
		return User{}, fmt.Errorf("%w: email", ErrInvalid)
	}
	if n := utf8.RuneCountInString(in.Password); n < 10 || len(in.Password) > 72 {
		return User{}, fmt.Errorf("%w: password must be 10 to 72 bytes", ErrInvalid)
	}
	if !in.Role.Valid() {
		return User{}, fmt.Errorf("%w: role must be admin, merchant, dispatcher or courier", ErrInvalid)
	}
	name := textsafe.Name(in.Name)
	if name == "" || utf8.RuneCountInString(name) > 120 || !utf8.ValidString(name) {
		return User{}, fmt.Errorf("%w: name must be 1 to 120 characters", ErrInvalid)
	}
	hash, err := auth.HashPassword(in.Password, s.bcryptCost)
	if err != nil {
		return User{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	now := s.now().UTC()
	u := User{Email: email, Name: name, Role: in.Role, PasswordHash: hash, CreatedAt: now}
	switch in.Role {
	case auth.RoleCourier:
		vehicle := in.Vehicle
		if vehicle == "" {
			vehicle = "scooter"
		}
		switch vehicle {
		case "scooter", "bike", "car", "foot":
		default:
			return User{}, fmt.Errorf("%w: vehicle must be scooter, bike, car or foot", ErrInvalid)
		}
		capacity := in.Capacity
		if capacity == 0 {
			capacity = 3
		}
		if capacity < 1 || capacity > 20 {
			return User{}, fmt.Errorf("%w: capacity must be 1 to 20", ErrInvalid)
		}
		if in.Phone != "" && !validPhone(in.Phone) {
			return User{}, fmt.Errorf("%w: phone must be +<country><number>, 8 to 15 digits", ErrInvalid)
		}
		// No transactions: refuse a taken e-mail before writing anything, and
		// undo the courier if the user insert fails after all (a race, an
		// outage), so no courier is left without a user.
		if _, err := s.store.UserByEmail(ctx, email); err == nil {
			return User{}, fmt.Errorf("%w: email already registered", ErrConflict)
		} else if !errors.Is(err, ErrNotFound) {
			return User{}, err
		}
		c := Courier{Name: name, Phone: in.Phone, Vehicle: vehicle, Capacity: capacity, CreatedAt: now}
		if err := s.store.CreateCourier(ctx, &c); err != nil {
			return User{}, fmt.Errorf("create courier: %w", err)
		}
		u.CourierID = c.ID
		if err := s.store.CreateUser(ctx, &u); err != nil {
			if derr := s.store.DeleteCourier(context.WithoutCancel(ctx), c.ID); derr != nil {
				s.log.Error("courier left without a user", "courier_id", c.ID, "err", derr)
			}
			return User{}, fmt.Errorf("create user: %w", err)
		}
		return u, nil
	case auth.RoleMerchant:
		policy := in.Policy
		if policy == "" {
			policy = "standard"
		}
		m := Merchant{Name: name, Policy: policy, Deliver: "otp", CreatedAt: now}
		if err := s.store.CreateMerchant(ctx, &m); err != nil {
			return User{}, fmt.Errorf("create merchant: %w", err)
		}
		u.MerchantID = m.ID
	}
	if err := s.store.CreateUser(ctx, &u); err != nil {
		return User{}, fmt.Errorf("create user: %w", err)
	}
	return u, nil
}

// EnsureAdmin creates the bootstrap admin if no user has that email.
func (s *Service) EnsureAdmin(ctx context.Context, email, password string) error {
	if _, err := s.store.UserByEmail(ctx, strings.ToLower(email)); err == nil {
		return nil
	} else if !errors.Is(err, ErrNotFound) {
		return err
	}
	_, err := s.CreateUser(ctx, NewUser{Email: email, Password: password, Role: auth.RoleAdmin, Name: "Administrator"})
	if errors.Is(err, ErrConflict) {
		return nil
	}
	return err
}

// Login checks a password, throttling by account and by client address.
func (s *Service) Login(ctx context.Context, email, password, clientIP string) (TokenPair, time.Duration, error) {
	email = strings.ToLower(strings.TrimSpace(email))
	acctKey, ipKey := "acct:"+email, "ip:"+clientIP
	if w := max(s.throttle.Wait(acctKey), s.throttle.Wait(ipKey)); w > 0 {
		return TokenPair{}, w, ErrThrottled
	}
	u, err := s.store.UserByEmail(ctx, email)
	if errors.Is(err, ErrNotFound) || (err == nil && (u.Disabled || u.Erased)) {
		auth.BurnPasswordCheck(password)
		s.throttle.Fail(acctKey)
		s.throttle.Fail(ipKey)
		return TokenPair{}, 0, ErrBadLogin
	}
	if err != nil {
		return TokenPair{}, 0, fmt.Errorf("login: %w", err)
	}
	if !auth.CheckPassword(u.PasswordHash, password) {
		s.throttle.Fail(acctKey)
		s.throttle.Fail(ipKey)
		return TokenPair{}, 0, ErrBadLogin
	}
	s.throttle.Succeed(acctKey)
	pair, err := s.issue(ctx, u, auth.RandomToken(9))
	return pair, 0, err
}

func (s *Service) issue(ctx context.Context, u User, family string) (TokenPair, error) {
	access, _, err := s.tokens.Sign(auth.Principal{UserID: u.ID, Role: u.Role, CourierID: u.CourierID, MerchantID: u.MerchantID, TokenVersion: u.TokenVersion})
	if err != nil {
		return TokenPair{}, err
	}
	refresh := auth.RandomToken(32)
	now := s.now().UTC()
	if err := s.store.InsertRefresh(ctx, RefreshToken{Hash: auth.HashSecret(refresh), UserID: u.ID, Family: family,
		ExpiresAt: now.Add(s.refreshTTL), CreatedAt: now}); err != nil {
		return TokenPair{}, fmt.Errorf("store refresh token: %w", err)
	}
	return TokenPair{AccessToken: access, RefreshToken: refresh, TokenType: "Bearer", ExpiresIn: int64(s.tokens.TTL().Seconds())}, nil
}

// Refresh rotates a refresh token. Reusing a spent token revokes its whole
// family (a stolen token is then worthless to both parties).
func (s *Service) Refresh(ctx context.Context, token string) (TokenPair, error) {
	if token == "" || len(token) > 256 {
		return TokenPair{}, ErrTokenRevoked
	}
	hash := auth.HashSecret(token)
	// FerretDB does not apply a filtered update atomically: serialise uses of
	// one token in this process so that a token is spent once.
	lk := &s.refreshLocks[hash[0]%byte(len(s.refreshLocks))]
	lk.Lock()
	rt, err := s.store.UseRefresh(ctx, hash, s.now())
	lk.Unlock()
	if errors.Is(err, ErrTokenRevoked) {
		if old, err2 := s.store.RefreshByHash(ctx, hash); err2 == nil && old.Revoked {
			if err := s.store.RevokeRefreshFamily(ctx, old.Family); err != nil {
				return TokenPair{}, err
			}
			s.log.Warn("refresh token reuse: family revoked", "user_id", old.UserID)
		}
		return TokenPair{}, ErrTokenRevoked
	}
	if err != nil {
		return TokenPair{}, err
	}
	u, err := s.store.UserByID(ctx, rt.UserID)
	if err != nil {
		return TokenPair{}, ErrTokenRevoked
	}
	if u.Disabled || u.Erased {
		return TokenPair{}, ErrDisabled
	}
	return s.issue(ctx, u, rt.Family)
}

// Logout revokes every refresh token of the user and every access token
// issued so far (by bumping the token version).
func (s *Service) Logout(ctx context.Context, userID string) error {
	if err := s.store.RevokeRefreshUser(ctx, userID); err != nil {
		return err
	}
	if err := s.store.BumpTokenVersion(ctx, userID); err != nil {
		return err
	}
	s.forget(userID)
	s.revoked(ctx, userID)
	return nil
}

// revoked tells OnUserRevoked about a user whose tokens were revoked.
func (s *Service) revoked(ctx context.Context, userID string) {
	if s.OnUserRevoked == nil {
		return
	}
	u, err := s.store.UserByID(ctx, userID)
	if err != nil {
		u = User{ID: userID}
	}
	s.OnUserRevoked(u)
}

// ChangePassword sets a new password after checking the old one; all tokens die.
func (s *Service) ChangePassword(ctx context.Context, userID, oldPW, newPW string) error {
	u, err := s.store.UserByID(ctx, userID)
	if err != nil {
		return err
	}
	if !auth.CheckPassword(u.PasswordHash, oldPW) {
		return ErrBadLogin
	}
	if n := utf8.RuneCountInString(newPW); n < 10 || len(newPW) > 72 {
		return fmt.Errorf("%w: password must be 10 to 72 bytes", ErrInvalid)
	}
	hash, err := auth.HashPassword(newPW, s.bcryptCost)
	if err != nil {
		return err
	}
	if err := s.store.SetPassword(ctx, userID, hash); err != nil {
		return err
	}
	if err := s.store.RevokeRefreshUser(ctx, userID); err != nil {
		return err
	}
	s.forget(userID)
	s.revoked(ctx, userID)
	return nil
}

// Authenticate verifies an access token and that it was not revoked since.
func (s *Service) Authenticate(ctx context.Context, token string) (auth.Principal, error) {
	p, err := s.tokens.Verify(token)
	if err != nil {
		return auth.Principal{}, err
	}
	st, err := s.state(ctx, p.UserID)
	if err != nil {
		return auth.Principal{}, err
	}
	if st.disabled || st.tv != p.TokenVersion {
		return auth.Principal{}, ErrTokenRevoked
	}
	return p, nil
}

func (s *Service) state(ctx context.Context, userID string) (tokenState, error) {
	s.mu.Lock()
	st, ok := s.cache[userID]
	s.mu.Unlock()
	if ok && s.now().Sub(st.at) < stateTTL {
		return st, nil
	}
	u, err := s.store.UserByID(ctx, userID)
	if errors.Is(err, ErrNotFound) {
		return tokenState{disabled: true}, nil
	}
	if err != nil {
		return tokenState{}, err
	}
	st = tokenState{tv: u.TokenVersion, disabled: u.Disabled || u.Erased, at: s.now()}
	s.mu.Lock()
	if len(s.cache) > 100_000 {
		clear(s.cache)
	}
	s.cache[userID] = st
	s.mu.Unlock()
	return st, nil
}

func (s *Service) forget(userID string) {
	s.mu.Lock()
	delete(s.cache, userID)
	s.mu.Unlock()
}

// IssueDeviceCredential creates a new broker login for a courier's device,
// replacing (and disconnecting) any earlier one.
//
// ErrInactive when the courier's user is disabled or erased: a device of an
// erased courier must never log in (nor its positions be stored) again.
func (s *Service) IssueDeviceCredential(ctx context.Context, courierID string) (DeviceSecret, error) {
	c, err := s.store.CourierByID(ctx, courierID)
	if err != nil {
		return DeviceSecret{}, err
	}
	if c.UserID != "" {
		u, err := s.store.UserByID(ctx, c.UserID)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return DeviceSecret{}, err
		}
		if err != nil || u.Erased || u.Disabled {
			return DeviceSecret{}, fmt.Errorf("%w: courier %s", ErrInactive, courierID)
		}
	}
	revoked, err := s.store.RevokeDeviceCredentials(ctx, courierID, s.now().UTC())
	if err != nil {
		return DeviceSecret{}, err
	}
	secret := DeviceSecret{Username: courierID, Password: auth.RandomToken(24), ClientID: "dev-" + courierID}
	if err := s.store.PutDeviceCredential(ctx, DeviceCredential{Username: secret.Username, ClientID: secret.ClientID,
		CourierID: courierID, SecretHash: auth.HashSecret(secret.Password), CreatedAt: s.now().UTC()}); err != nil {
		return DeviceSecret{}, err
	}
	if len(revoked) > 0 && s.OnDeviceRevoked != nil {
		s.OnDeviceRevoked(revoked)
	}
	return secret, nil
}

// RevokeDevice revokes a courier's device credentials and disconnects it.
func (s *Service) RevokeDevice(ctx context.Context, courierID string) error {
	if _, err := s.store.CourierByID(ctx, courierID); err != nil {
		return err
	}
	revoked, err := s.store.RevokeDeviceCredentials(ctx, courierID, s.now().UTC())
	if err != nil {
		return err
	}
	if s.OnDeviceRevoked != nil {
		s.OnDeviceRevoked(revoked)
	}
	return nil
}

// CheckDevice authenticates a broker login that must use the issued client
// id (the Tawsil agent); it returns the courier id.
func (s *Service) CheckDevice(ctx context.Context, username, password, clientID string) (string, error) {
	courier, issued, err := s.DeviceLogin(ctx, username, password)
	if err != nil || issued != clientID {
		return "", ErrBadLogin
	}
	return courier, nil
}

// DeviceLogin authenticates a device's username and password, whatever the
// transport (MQTT with any client id, OwnTracks HTTP, Traccar Client); it
// returns the courier id and the client id issued with the credential.
// ErrBadLogin for an unknown, revoked or wrong credential.
func (s *Service) DeviceLogin(ctx context.Context, username, password string) (courierID, clientID string, err error) {
	d, err := s.store.DeviceCredential(ctx, username)
	if err != nil || d.RevokedAt != nil || subtle.ConstantTimeCompare([]byte(d.SecretHash), []byte(auth.HashSecret(password))) != 1 {
		return "", "", ErrBadLogin
	}
	return d.CourierID, d.ClientID, nil
}

// Erase pseudonymises a user: login impossible, personal fields replaced, ids
// kept so that orders and accounting records stay consistent.
func (s *Service) Erase(ctx context.Context, userID string) error {
	u, err := s.store.UserByID(ctx, userID)
	if err != nil {
		return err
	}
	if err := s.store.EraseUser(ctx, userID, "erased-"+auth.HashSecret(u.ID)[:12]); err != nil {
		return err
	}
	if err := s.store.RevokeRefreshUser(ctx, userID); err != nil {
		return err
	}
	if u.CourierID != "" {
		if err := s.RevokeDevice(ctx, u.CourierID); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
	}
	s.forget(userID)
	s.revoked(ctx, userID)
	return nil
}

// User returns a user by id.
func (s *Service) User(ctx context.Context, id string) (User, error) {
	return s.store.UserByID(ctx, id)
}

// Courier returns a courier by id.
func (s *Service) Courier(ctx context.Context, id string) (Courier, error) {
	return s.store.CourierByID(ctx, id)
}

// Merchant returns a merchant by id.
func (s *Service) Merchant(ctx context.Context, id string) (Merchant, error) {
	return s.store.MerchantByID(ctx, id)
}

// Couriers lists all couriers.
func (s *Service) Couriers(ctx context.Context) ([]Courier, error) { return s.store.Couriers(ctx) }

// SetShift records a courier going on or off duty.
func (s *Service) SetShift(ctx context.Context, courierID string, on bool) error {
	return s.store.SetShift(ctx, courierID, on, s.now().UTC())
}

// SetDisabled disables (or re-enables) a user. Disabling revokes every
// token at once and disconnects a courier's device; re-enabling does not
// bring old tokens back.
func (s *Service) SetDisabled(ctx context.Context, userID string, disabled bool) error {
	u, err := s.store.UserByID(ctx, userID)
	if err != nil {
		return err
	}
	if u.Erased {
		return fmt.Errorf("%w: user was erased", ErrInvalid)
	}
	if err := s.store.SetDisabled(ctx, userID, disabled); err != nil {
		return err
	}
	if disabled {
		if err := s.store.RevokeRefreshUser(ctx, userID); err != nil {
			return err
		}
		if u.CourierID != "" {
			if err := s.RevokeDevice(ctx, u.CourierID); err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
		}
	}
	s.forget(userID)
	if disabled {
		s.revoked(ctx, userID)
	} else if s.OnUserRestored != nil {
		if u, err := s.store.UserByID(ctx, userID); err == nil {
			s.OnUserRestored(u)
		}
	}
	return nil
}

// validPhone accepts E.164: a plus and 8 to 15 digits.
func validPhone(p string) bool {
	if len(p) < 9 || len(p) > 16 || p[0] != '+' {
		return false
	}
	for i := 1; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return false
		}
	}
	return true
}
