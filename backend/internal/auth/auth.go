// Package auth issues and verifies Tawsil's access tokens (JWT, HMAC with a
// key id so keys can rotate), hashes passwords, makes opaque refresh tokens and
// slows down password guessing. It knows nothing of HTTP or storage.
package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/crypto/bcrypt"
)

// Role is what a user is allowed to do.
type Role string

// The roles.
const (
	RoleAdmin      Role = "admin"
	RoleMerchant   Role = "merchant"
	RoleDispatcher Role = "dispatcher"
	RoleCourier    Role = "courier"
)

// Valid reports whether r is one of the four roles.
func (r Role) Valid() bool {
	switch r {
	case RoleAdmin, RoleMerchant, RoleDispatcher, RoleCourier:
		return true
	}
	return false
}

// Principal is who a verified token speaks for.
type Principal struct {
	UserID       string
	Role         Role
	CourierID    string // courier users
	MerchantID   string // merchant users
	TokenVersion int64  // bumped on logout-all, password change, disable: older tokens die at once
}

// Claims are the JWT claims of an access token.
type Claims struct {
	jwt.RegisteredClaims
	Role       Role   `json:"role"`
	CourierID  string `json:"cid,omitempty"`
	MerchantID string `json:"mid,omitempty"`
	TV         int64  `json:"tv"`
}

// Key is one HMAC key with its id.
type Key struct {
	KID    string
	Secret []byte
}

// Errors returned by Verify.
var (
	ErrInvalidToken = errors.New("invalid token")
	ErrExpiredToken = errors.New("token expired")
)

// Tokens signs with the active key and verifies with any configured key.
type Tokens struct {
	keys     map[string][]byte
	active   string
	issuer   string
	audience string
	ttl      time.Duration
	leeway   time.Duration
	now      func() time.Time
	parser   *jwt.Parser
	cache    tokenCache
}

// tokenCache remembers tokens whose signature, issuer, audience and claims
// were verified, so that a client presenting the same token again costs a
// map lookup instead of an HMAC and a JSON decode. Only what is fixed by the
// signed bytes is cached: the times (exp, nbf, iat) are checked again on
// every use, against the same leeway as the parser. Revocation stays with
// the caller (account.Service checks the token version per use).
type tokenCache struct {
	mu sync.RWMutex
	m  map[string]verifiedToken
}

// tokenCacheMax bounds the cache; past it the cache starts afresh.
const tokenCacheMax = 50_000

type verifiedToken struct {
	p             Principal
	exp, nbf, iat time.Time // nbf and iat zero when absent
}

// timely reports whether the token's times allow it at now.
func (v *verifiedToken) timely(now time.Time, leeway time.Duration) (ok, expired bool) {
	if !now.Before(v.exp.Add(leeway)) {
		return false, true
	}
	if !v.nbf.IsZero() && now.Before(v.nbf.Add(-leeway)) || !v.iat.IsZero() && now.Before(v.iat.Add(-leeway)) {
		return false, false
	}
	return true, false
}

func (c *tokenCache) get(s string) (verifiedToken, bool) {
	c.mu.RLock()
	v, ok := c.m[s]
	c.mu.RUnlock()
	return v, ok
}

func (c *tokenCache) put(s string, v verifiedToken) {
	c.mu.Lock()
	if c.m == nil || len(c.m) >= tokenCacheMax {
		c.m = make(map[string]verifiedToken)
	}
	c.m[strings.Clone(s)] = v // s may be a view of a request buffer
	c.mu.Unlock()
}

// NewTokens builds a token service. active must name one of keys.
func NewTokens(keys []Key, active, issuer, audience string, ttl time.Duration) (*Tokens, error) {
	t := &Tokens{keys: map[string][]byte{}, active: active, issuer: issuer, audience: audience, ttl: ttl,
		leeway: 30 * time.Second, now: time.Now}
	for _, k := range keys {
		if len(k.Secret) < 32 {
			return nil, fmt.Errorf("jwt key %q: secret shorter than 32 bytes", k.KID)
		}
		t.keys[k.KID] = k.Secret
	}
	if _, ok := t.keys[active]; !ok {
		return nil, fmt.Errorf("jwt active key %q not configured", active)
	}
	t.parser = jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithIssuer(issuer),
		jwt.WithAudience(audience),
		jwt.WithLeeway(t.leeway),
		jwt.WithTimeFunc(func() time.Time { return t.now() }),
	)
	return t, nil
}

// TTL is the lifetime of an access token.
func (t *Tokens) TTL() time.Duration { return t.ttl }

// Sign returns a signed access token for p and its expiry.
func (t *Tokens) Sign(p Principal) (string, time.Time, error) {
	now := t.now()
	exp := now.Add(t.ttl)
	c := Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    t.issuer,
			Subject:   p.UserID,
			Audience:  jwt.ClaimStrings{t.audience},
			ExpiresAt: jwt.NewNumericDate(exp),
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			ID:        RandomToken(12),
		},
		Role: p.Role, CourierID: p.CourierID, MerchantID: p.MerchantID, TV: p.TokenVersion,
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, c)
	tok.Header["kid"] = t.active
	s, err := tok.SignedString(t.keys[t.active])
	if err != nil {
		return "", time.Time{}, fmt.Errorf("sign token: %w", err)
	}
	return s, exp, nil
}

// Verify checks signature (HS256 only, key chosen by kid), expiry, issuer and
// audience, and returns the principal. It returns ErrExpiredToken or
// ErrInvalidToken; the cause is never meant for the client.
func (t *Tokens) Verify(s string) (Principal, error) {
	if len(s) > 4096 {
		return Principal{}, ErrInvalidToken
	}
	if v, ok := t.cache.get(s); ok {
		ok, expired := v.timely(t.now(), t.leeway)
		if ok {
			return v.p, nil
		}
		if expired {
			return Principal{}, ErrExpiredToken
		}
		// Not yet valid: the parser says so in its own words.
	}
	var c Claims
	_, err := t.parser.ParseWithClaims(s, &c, func(tok *jwt.Token) (any, error) {
		kid, _ := tok.Header["kid"].(string)
		key, ok := t.keys[kid]
		if !ok {
			return nil, fmt.Errorf("unknown kid %q", kid)
		}
		return key, nil
	})
	if err != nil {
		if errors.Is(err, jwt.ErrTokenExpired) {
			return Principal{}, ErrExpiredToken
		}
		return Principal{}, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	if c.Subject == "" || !c.Role.Valid() {
		return Principal{}, fmt.Errorf("%w: missing subject or role", ErrInvalidToken)
	}
	p := Principal{UserID: c.Subject, Role: c.Role, CourierID: c.CourierID, MerchantID: c.MerchantID, TokenVersion: c.TV}
	v := verifiedToken{p: p, exp: c.ExpiresAt.Time}
	if c.NotBefore != nil {
		v.nbf = c.NotBefore.Time
	}
	if c.IssuedAt != nil {
		v.iat = c.IssuedAt.Time
	}
	t.cache.put(s, v)
	return p, nil
}

// HashPassword hashes with bcrypt at the given cost (bcrypt.DefaultCost if 0).
func HashPassword(pw string, cost int) (string, error) {
	if cost == 0 {
		cost = bcrypt.DefaultCost
	}
	if len(pw) > 72 {
		return "", errors.New("password longer than 72 bytes")
	}
	h, err := bcrypt.GenerateFromPassword([]byte(pw), cost)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(h), nil
}

// CheckPassword reports whether pw matches hash.
func CheckPassword(hash, pw string) bool {
	return bcrypt.CompareHashAndPassword([]byte(hash), []byte(pw)) == nil
}

// dummyHash makes a login for an unknown account cost as much as a real one.
var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("tawsil-timing-equaliser"), bcrypt.DefaultCost)

// BurnPasswordCheck spends the time of one bcrypt comparison.
func BurnPasswordCheck(pw string) { _ = bcrypt.CompareHashAndPassword(dummyHash, []byte(pw)) }

// RandomToken returns n random bytes, base64url without padding.
func RandomToken(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err)) // the OS has no randomness: nothing safe can continue
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// HashSecret returns the hex SHA-256 of a high-entropy secret (refresh tokens,
// device passwords). Such secrets need no slow hash: they cannot be guessed.
func HashSecret(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}
