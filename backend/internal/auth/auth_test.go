package auth

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var (
	keyA = Key{KID: "a", Secret: []byte(strings.Repeat("A", 32))}
	keyB = Key{KID: "b", Secret: []byte(strings.Repeat("B", 32))}
)

func mustTokens(tb testing.TB, keys []Key, active string) *Tokens {
	tb.Helper()
	tk, err := NewTokens(keys, active, "tawsil", "tawsil-api", 15*time.Minute)
	if err != nil {
		tb.Fatal(err)
	}
	return tk
}

func TestSignVerify(t *testing.T) {
	tk := mustTokens(t, []Key{keyA}, "a")
	p := Principal{UserID: "u1", Role: RoleCourier, CourierID: "c1", TokenVersion: 3}
	s, exp, err := tk.Sign(p)
	if err != nil {
		t.Fatal(err)
	}
	if time.Until(exp) < 14*time.Minute {
		t.Fatalf("exp %v", exp)
	}
	got, err := tk.Verify(s)
	if err != nil || got != p {
		t.Fatalf("Verify = %+v, %v", got, err)
	}
}

func TestRotation(t *testing.T) {
	old := mustTokens(t, []Key{keyA}, "a")
	s, _, err := old.Sign(Principal{UserID: "u", Role: RoleAdmin})
	if err != nil {
		t.Fatal(err)
	}
	// During rotation b signs and a still verifies.
	rotating := mustTokens(t, []Key{keyB, keyA}, "b")
	if _, err := rotating.Verify(s); err != nil {
		t.Fatalf("old token refused during rotation: %v", err)
	}
	s2, _, err := rotating.Sign(Principal{UserID: "u", Role: RoleAdmin})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.Verify(s2); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("token of unknown kid accepted: %v", err)
	}
	// After rotation a is gone: its tokens die.
	done := mustTokens(t, []Key{keyB}, "b")
	if _, err := done.Verify(s); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("retired key still verifies: %v", err)
	}
}

func TestVerifyRefuses(t *testing.T) {
	tk := mustTokens(t, []Key{keyA}, "a")
	now := time.Now()
	claims := func(mod func(*Claims)) *Claims {
		c := &Claims{RegisteredClaims: jwt.RegisteredClaims{Issuer: "tawsil", Subject: "u", Audience: jwt.ClaimStrings{"tawsil-api"},
			ExpiresAt: jwt.NewNumericDate(now.Add(time.Minute)), IssuedAt: jwt.NewNumericDate(now)}, Role: RoleAdmin}
		if mod != nil {
			mod(c)
		}
		return c
	}
	sign := func(m jwt.SigningMethod, key any, kid string, c *Claims) string {
		tok := jwt.NewWithClaims(m, c)
		if kid != "" {
			tok.Header["kid"] = kid
		}
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	tests := []struct {
		name string
		give string
		want error
	}{
		{"valid control", sign(jwt.SigningMethodHS256, keyA.Secret, "a", claims(nil)), nil},
		{"alg none", sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "a", claims(nil)), ErrInvalidToken},
		{"hs512", sign(jwt.SigningMethodHS512, keyA.Secret, "a", claims(nil)), ErrInvalidToken},
		{"no kid", sign(jwt.SigningMethodHS256, keyA.Secret, "", claims(nil)), ErrInvalidToken},
		{"wrong key", sign(jwt.SigningMethodHS256, keyB.Secret, "a", claims(nil)), ErrInvalidToken},
		{"expired", sign(jwt.SigningMethodHS256, keyA.Secret, "a", claims(func(c *Claims) { c.ExpiresAt = jwt.NewNumericDate(now.Add(-time.Hour)) })), ErrExpiredToken},
		{"no exp", sign(jwt.SigningMethodHS256, keyA.Secret, "a", claims(func(c *Claims) { c.ExpiresAt = nil })), ErrInvalidToken},
		{"issuer", sign(jwt.SigningMethodHS256, keyA.Secret, "a", claims(func(c *Claims) { c.Issuer = "evil" })), ErrInvalidToken},
		{"audience", sign(jwt.SigningMethodHS256, keyA.Secret, "a", claims(func(c *Claims) { c.Audience = jwt.ClaimStrings{"other"} })), ErrInvalidToken},
		{"role", sign(jwt.SigningMethodHS256, keyA.Secret, "a", claims(func(c *Claims) { c.Role = "root" })), ErrInvalidToken},
		{"garbage", "a.b.c", ErrInvalidToken},
		{"many dots", strings.Repeat(".", 5000), ErrInvalidToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tk.Verify(tt.give)
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("Verify err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestPassword(t *testing.T) {
	h, err := HashPassword("correct horse battery", 4)
	if err != nil {
		t.Fatal(err)
	}
	if !CheckPassword(h, "correct horse battery") || CheckPassword(h, "wrong") {
		t.Fatal("password check wrong")
	}
}

func TestThrottle(t *testing.T) {
	now := time.Unix(1000, 0)
	th := NewThrottle()
	th.now = func() time.Time { return now }
	for i := 0; i < th.Free; i++ {
		th.Fail("k")
		if w := th.Wait("k"); w != 0 {
			t.Fatalf("failure %d throttled already: %v", i+1, w)
		}
	}
	th.Fail("k")
	if w := th.Wait("k"); w != time.Second {
		t.Fatalf("first penalty %v, want 1s", w)
	}
	for i := 0; i < 40; i++ {
		th.Fail("k")
	}
	if w := th.Wait("k"); w != th.Max {
		t.Fatalf("penalty not capped: %v", w)
	}
	now = now.Add(th.Max)
	if w := th.Wait("k"); w != 0 {
		t.Fatalf("lockout outlived Max: %v", w)
	}
	th.Succeed("k")
	th.Fail("k")
	if w := th.Wait("k"); w != 0 {
		t.Fatalf("success did not clear: %v", w)
	}
}

// TestVerifyCacheKeepsChecking: a token verified once is answered from the
// cache, but its expiry is still enforced on every use, and a token that
// differs by one byte is verified from scratch (and refused).
func TestVerifyCacheKeepsChecking(t *testing.T) {
	tk := mustTokens(t, []Key{keyA}, "a")
	now := time.Now()
	tk.now = func() time.Time { return now }
	p := Principal{UserID: "u1", Role: RoleDispatcher, TokenVersion: 1}
	s, exp, err := tk.Sign(p)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // the second time from the cache
		if got, err := tk.Verify(s); err != nil || got != p {
			t.Fatalf("Verify = %+v, %v", got, err)
		}
	}
	if _, ok := tk.cache.get(s); !ok {
		t.Fatal("verified token not cached")
	}
	tampered := s[:len(s)-2] + map[bool]string{true: "A", false: "B"}[s[len(s)-2] != 'A'] + s[len(s)-1:]
	if _, err := tk.Verify(tampered); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("tampered token: %v", err)
	}
	now = exp.Add(tk.leeway - time.Second)
	if _, err := tk.Verify(s); err != nil {
		t.Fatalf("within the leeway: %v", err)
	}
	now = exp.Add(tk.leeway)
	if _, err := tk.Verify(s); !errors.Is(err, ErrExpiredToken) {
		t.Fatalf("expired token from the cache: %v", err)
	}
}

func BenchmarkVerify(b *testing.B) {
	tk := mustTokens(b, []Key{keyA}, "a")
	s, _, err := tk.Sign(Principal{UserID: "u1", Role: RoleDispatcher})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tk.Verify(s); err != nil {
			b.Fatal(err)
		}
	}
}
