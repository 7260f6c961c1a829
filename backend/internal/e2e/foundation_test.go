package e2e

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestAuthAndRoles(t *testing.T) {
	b := mustBackend(t, nil)
	admin, adminRefresh := b.login(t, adminEmail, adminPass)
	merchant := b.mustUser(t, admin, "merchant")
	dispatcher := b.mustUser(t, admin, "dispatcher")
	courier := b.mustUser(t, admin, "courier")
	if courier.CourierID == "" || merchant.MerchantID == "" {
		t.Fatalf("courier/merchant records missing: %+v %+v", courier, merchant)
	}

	newUser := map[string]any{"email": "x@tawsil.test", "password": "long-enough-pw", "role": "dispatcher", "name": "X"}
	tests := []struct {
		name   string
		method string
		path   string
		token  string
		body   any
		want   int
	}{
		{"no token", "POST", "/v1/users", "", newUser, 401},
		{"merchant creates user", "POST", "/v1/users", merchant.Token, newUser, 403},
		{"dispatcher creates user", "POST", "/v1/users", dispatcher.Token, newUser, 403},
		{"courier calls dispatcher route", "GET", "/v1/couriers?near=33.58,-7.6", courier.Token, nil, 403},
		{"merchant lists couriers", "GET", "/v1/couriers", merchant.Token, nil, 403},
		{"dispatcher lists couriers", "GET", "/v1/couriers", dispatcher.Token, nil, 200},
		{"courier device credentials", "POST", "/v1/couriers/" + courier.CourierID + "/device-credentials", courier.Token, nil, 403},
		{"merchant shift", "POST", "/v1/me/shift", merchant.Token, map[string]any{"on_duty": true}, 403},
		{"courier shift", "POST", "/v1/me/shift", courier.Token, map[string]any{"on_duty": true}, 200},
		{"courier other track", "GET", "/v1/couriers/" + strings.Repeat("a", 24) + "/track", courier.Token, nil, 404},
		{"courier own track", "GET", "/v1/couriers/" + courier.CourierID + "/track", courier.Token, nil, 200},
		{"dispatcher audit", "GET", "/v1/audit", dispatcher.Token, nil, 403},
		{"admin audit", "GET", "/v1/audit", admin, nil, 200},
		{"bad role", "POST", "/v1/users", admin, map[string]any{"email": "y@tawsil.test", "password": "long-enough-pw", "role": "root", "name": "Y"}, 400},
		{"duplicate email", "POST", "/v1/users", admin, map[string]any{"email": merchant.Email, "password": "long-enough-pw", "role": "merchant", "name": "M"}, 409},
		{"unknown field", "POST", "/v1/users", admin, map[string]any{"email": "z@tawsil.test", "password": "long-enough-pw", "role": "merchant", "name": "Z", "is_admin": true}, 400},
		{"operator id", "GET", "/v1/users/%7B%22$ne%22:null%7D", admin, nil, 404},
		{"unknown route", "GET", "/v1/nothing", admin, nil, 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := b.do(t, tt.method, tt.path, tt.token, tt.body)
			if r.status != tt.want {
				t.Fatalf("status %d, want %d: %s", r.status, tt.want, r.body)
			}
			if r.status >= 400 && r.header.Get("Content-Type") != "application/problem+json" {
				t.Fatalf("error without problem+json: %q %s", r.header.Get("Content-Type"), r.body)
			}
		})
	}

	// Refresh rotates; reusing a spent refresh token revokes the family.
	r := b.mustStatus(t, 200, "POST", "/v1/auth/refresh", "", map[string]string{"refresh_token": adminRefresh})
	next := r.m(t)["refresh_token"].(string)
	b.mustStatus(t, 401, "POST", "/v1/auth/refresh", "", map[string]string{"refresh_token": adminRefresh})
	b.mustStatus(t, 401, "POST", "/v1/auth/refresh", "", map[string]string{"refresh_token": next})

	// Logout kills access tokens at once.
	b.mustStatus(t, 200, "GET", "/v1/couriers", dispatcher.Token, nil)
	b.mustStatus(t, 204, "POST", "/v1/auth/logout", dispatcher.Token, nil)
	b.mustStatus(t, 401, "GET", "/v1/couriers", dispatcher.Token, nil)

	// Wrong password, then the problem has no internal detail.
	r = b.mustStatus(t, 401, "POST", "/v1/auth/login", "", map[string]string{"email": adminEmail, "password": "nope-nope-nope"})
	if !strings.Contains(string(r.body), "bad-login") {
		t.Fatalf("login failure: %s", r.body)
	}
}

func TestForgedTokens(t *testing.T) {
	b := mustBackend(t, nil)
	admin, _ := b.login(t, adminEmail, adminPass)
	parts := strings.Split(admin, ".")
	claims := jwt.MapClaims{"sub": "x", "role": "admin", "iss": "tawsil", "aud": "tawsil-api", "exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix()}
	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, claims).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	wrongKey := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
	wrongKey.Header["kid"] = "k1"
	forged, err := wrongKey.SignedString([]byte("attacker-secret-0123456789abcdef0123"))
	if err != nil {
		t.Fatal(err)
	}
	expiredClaims := jwt.MapClaims{"sub": "x", "role": "admin", "iss": "tawsil", "aud": "tawsil-api", "exp": time.Now().Add(-time.Hour).Unix(), "iat": time.Now().Add(-2 * time.Hour).Unix()}
	expiredTok := jwt.NewWithClaims(jwt.SigningMethodHS256, expiredClaims)
	expiredTok.Header["kid"] = "k1"
	expired, err := expiredTok.SignedString([]byte("e2e-secret-0123456789abcdef0123456789"))
	if err != nil {
		t.Fatal(err)
	}
	hs512Tok := jwt.NewWithClaims(jwt.SigningMethodHS512, claims)
	hs512Tok.Header["kid"] = "k1"
	hs512, err := hs512Tok.SignedString([]byte("e2e-secret-0123456789abcdef0123456789"))
	if err != nil {
		t.Fatal(err)
	}
	// A genuine token whose payload was edited to claim another role.
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	edited := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(payload), `"admin"`, `"courier"`, 1))) + "." + parts[2]
	for name, tok := range map[string]string{"alg none": none, "wrong key": forged, "expired": expired, "hs512": hs512,
		"edited payload": edited, "dots": strings.Repeat(".", 3000), "garbage": "not-a-jwt"} {
		t.Run(name, func(t *testing.T) {
			b.mustStatus(t, 401, "GET", "/v1/users/"+strings.Repeat("a", 24), tok, nil)
		})
	}
	b.mustStatus(t, 404, "GET", "/v1/users/"+strings.Repeat("a", 24), admin, nil)
}

func TestHealthReadyMetrics(t *testing.T) {
	b := mustBackend(t, nil)
	b.mustStatus(t, 200, "GET", "/healthz", "", nil)
	r := b.mustStatus(t, 200, "GET", "/readyz", "", nil)
	if r.m(t)["status"] != "ready" {
		t.Fatalf("readyz: %s", r.body)
	}
	r = b.mustStatus(t, 200, "GET", "/metrics", "", nil)
	for _, want := range []string{"tawsil_live_couriers", "go_goroutines", "tawsil_http_requests_total"} {
		if !strings.Contains(string(r.body), want) {
			t.Fatalf("metrics lack %s", want)
		}
	}
}
