package e2e

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tawsil/tawsil/backend/internal/mongostore"
	"github.com/tawsil/tawsil/shared/topic"
	"github.com/tawsil/tawsil/shared/wire"
)

const e2eJWTSecret = "e2e-secret-0123456789abcdef0123456789" // mustBackend's TAWSIL_JWT_SECRET

// hostileState is what bad input must not change.
type hostileState struct {
	orders, users, positions int64
	webhooks                 int
	fixSeq                   uint64
	orderStatus              string
}

func (b *backend) hostileState(tb testing.TB, merchantID, courierID, orderID string) hostileState {
	tb.Helper()
	ctx := tb.Context()
	os, err := b.Store.Orders(ctx, mongostore.OrderFilter{Limit: 1000})
	if err != nil {
		tb.Fatal(err)
	}
	users, err := b.Store.CountUsers(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	pos, err := b.Store.CountPositions(ctx, courierID)
	if err != nil {
		tb.Fatal(err)
	}
	hooks, err := b.Store.Webhooks(ctx, merchantID)
	if err != nil {
		tb.Fatal(err)
	}
	o, err := b.Store.Order(ctx, orderID)
	if err != nil {
		tb.Fatal(err)
	}
	lc, _ := b.Index.Get(courierID)
	return hostileState{orders: int64(len(os)), users: users, positions: pos, webhooks: len(hooks), fixSeq: lc.Fix.Seq,
		orderStatus: string(o.Status)}
}

// rejections reads tawsil_ingest_rejections_total by reason from /metrics.
func (b *backend) rejections(tb testing.TB) map[string]float64 {
	tb.Helper()
	r := b.mustStatus(tb, 200, "GET", "/metrics", "", nil)
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(string(r.body)))
	const prefix = `tawsil_ingest_rejections_total{reason="`
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), prefix)
		if !ok {
			continue
		}
		reason, val, ok := strings.Cut(rest, `"} `)
		if !ok {
			tb.Fatalf("metrics line %q", sc.Text())
		}
		v, err := strconv.ParseFloat(val, 64)
		if err != nil {
			tb.Fatalf("metrics line %q: %v", sc.Text(), err)
		}
		out[reason] = v
	}
	return out
}

// rawRequest writes req on a new connection and returns the answer's status
// and content type.
func (b *backend) rawRequest(tb testing.TB, req string) (int, string) {
	tb.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(b.base, "http://"))
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, req); err != nil {
		tb.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Body.Close()
	return res.StatusCode, res.Header.Get("Content-Type")
}

// rawBatch encodes one fix by hand (the encoder refuses what we want to send).
func rawBatch(seq uint64, t time.Time, latE6, lngE6 int64) []byte {
	p := []byte{wire.PosVersion1}
	p = binary.AppendUvarint(p, 1)
	p = append(p, 0) // no optional fields
	p = binary.AppendUvarint(p, seq)
	p = binary.AppendVarint(p, t.UnixMilli())
	p = binary.AppendVarint(p, latE6)
	return binary.AppendVarint(p, lngE6)
}

func signed(tb testing.TB, m jwt.SigningMethod, kid string, key any, claims jwt.MapClaims) string {
	tb.Helper()
	tok := jwt.NewWithClaims(m, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// TestHostileInput sends bad input over HTTP and MQTT: each gets a clear
// 4xx (problem+json) or a counted MQTT refusal, never a 5xx, and none changes
// stored state; the process serves normally afterwards.
func TestHostileInput(t *testing.T) {
	b := mustBackend(t, nil)
	admin, _ := b.login(t, adminEmail, adminPass)
	merchant := b.mustUser(t, admin, "merchant")
	cd := b.mustCourierDevice(t, admin)
	other := b.mustUser(t, admin, "courier") // a victim whose topic we try to write
	t0 := time.Now().Add(-10 * time.Second)
	cd.at(t, store, t0)
	booked := bookBody(custA, "Hajar")
	o := b.book(t, merchant, "hostile-key", booked)
	cd.waitTask(t, wire.TaskOffer)
	b.mustStatus(t, 200, "POST", "/v1/orders/"+o.ID+"/accept", cd.Token, nil)

	claims := func(exp time.Time) jwt.MapClaims {
		return jwt.MapClaims{"sub": merchant.ID, "role": "admin", "iss": "tawsil", "aud": "tawsil-api",
			"exp": exp.Unix(), "iat": time.Now().Add(-time.Minute).Unix(), "mid": merchant.MerchantID}
	}
	future := time.Now().Add(time.Hour)
	none := signed(t, jwt.SigningMethodNone, "k1", jwt.UnsafeAllowNoneSignatureType, claims(future))
	otherKey := signed(t, jwt.SigningMethodHS256, "k1", []byte("attacker-secret-0123456789abcdef0123"), claims(future))
	pubKeyAsSecret := signed(t, jwt.SigningMethodHS256, "k1", []byte("-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----\n"), claims(future))
	expired := signed(t, jwt.SigningMethodHS256, "k1", []byte(e2eJWTSecret), claims(time.Now().Add(-time.Hour)))
	unknownKid := signed(t, jwt.SigningMethodHS256, "k9", []byte(e2eJWTSecret), claims(future))
	noKid := signed(t, jwt.SigningMethodHS256, "", []byte(e2eJWTSecret), claims(future))
	wrongAud := signed(t, jwt.SigningMethodHS256, "k1", []byte(e2eJWTSecret), jwt.MapClaims{"sub": merchant.ID, "role": "admin",
		"iss": "tawsil", "aud": "someone-else", "exp": future.Unix(), "iat": time.Now().Unix()})

	quote := func(lat, lng any) map[string]any {
		return map[string]any{"pickup": map[string]any{"lat": lat, "lng": lng}, "dropoff": map[string]any{"lat": custA[0], "lng": custA[1]},
			"parcel": map[string]any{"size": "S"}}
	}
	withExtra := bookBody(custB, "Hajar")
	withExtra["price_mad"] = 0
	esc := url.PathEscape

	before := b.hostileState(t, merchant.MerchantID, cd.CourierID, o.ID)

	tests := []struct {
		give    string
		method  string
		path    string
		token   string
		body    any
		headers []string
		want    int
	}{
		{"malformed json", "POST", "/v1/quotes", merchant.Token, `{"pickup":`, nil, 400},
		{"two json values", "POST", "/v1/quotes", merchant.Token, `{} {}`, nil, 400},
		{"deep nesting", "POST", "/v1/quotes", merchant.Token, strings.Repeat("[", 20000), nil, 400},
		{"wrong type", "POST", "/v1/quotes", merchant.Token, quote("33.58", -7.6), nil, 400},
		{"unknown field", "POST", "/v1/orders", merchant.Token, withExtra, []string{"Idempotency-Key", "hostile-new"}, 400},
		{"huge string under limit", "POST", "/v1/auth/login", "", map[string]any{"email": strings.Repeat("a", 200<<10), "password": "x"}, nil, 400},
		{"infinite coordinate", "POST", "/v1/quotes", merchant.Token, `{"pickup":{"lat":1e999,"lng":-7.6},"dropoff":{"lat":33.59,"lng":-7.61}}`, nil, 400},
		{"NaN string", "POST", "/v1/quotes", merchant.Token, quote("NaN", "NaN"), nil, 400},
		{"Infinity string", "POST", "/v1/quotes", merchant.Token, quote("Infinity", -7.6), nil, 400},
		{"latitude out of range", "POST", "/v1/quotes", merchant.Token, quote(95.0, -7.6), nil, 400},
		{"null island", "POST", "/v1/quotes", merchant.Token, quote(0.0, 0.0), nil, 422},
		{"operator in id", "GET", "/v1/orders/" + esc(`{"$ne":null}`), merchant.Token, nil, nil, 404},
		{"operator in body", "POST", "/v1/quotes", merchant.Token, map[string]any{"$where": "sleep(1000)"}, nil, 400},
		{"operator as email", "POST", "/v1/auth/login", "", map[string]any{"email": map[string]any{"$ne": nil}, "password": "x"}, nil, 400},
		{"operator in cursor", "GET", "/v1/orders?after=" + url.QueryEscape(`{"$gt":""}`), merchant.Token, nil, nil, 400},
		{"operator in status", "GET", "/v1/orders?status=" + url.QueryEscape("$ne"), merchant.Token, nil, nil, 400},
		{"operator in webhook id", "DELETE", "/v1/webhooks/" + esc(`{"$exists":true}`), merchant.Token, nil, nil, 404},
		{"invalid object id", "GET", "/v1/orders/not-an-object-id", merchant.Token, nil, nil, 404},
		{"path traversal", "GET", "/v1/orders/..%2F..%2Fusers", merchant.Token, nil, nil, 404},
		{"traversal in user id", "GET", "/v1/users/..%2F" + esc(merchant.ID), admin, nil, nil, 404},
		{"NUL in id", "GET", "/v1/orders/%00", merchant.Token, nil, nil, 404},
		{"dotted token", "GET", "/v1/orders", strings.Repeat(".", 5000), nil, nil, 401},
		{"oversized token", "GET", "/v1/orders", strings.Repeat("a", 3000) + "." + strings.Repeat("b", 3000) + ".c", nil, nil, 401},
		{"alg none", "GET", "/v1/orders", none, nil, nil, 401},
		{"other key", "GET", "/v1/orders", otherKey, nil, nil, 401},
		{"public key as secret", "GET", "/v1/orders", pubKeyAsSecret, nil, nil, 401},
		{"expired token", "GET", "/v1/orders", expired, nil, nil, 401},
		{"unknown kid", "GET", "/v1/orders", unknownKid, nil, nil, 401},
		{"no kid", "GET", "/v1/orders", noKid, nil, nil, 401},
		{"wrong audience", "GET", "/v1/orders", wrongAud, nil, nil, 401},
		{"basic auth", "GET", "/v1/orders", "", nil, []string{"Authorization", "Basic YWRtaW46YWRtaW4="}, 401},
		{"deliver before pickup", "POST", "/v1/orders/" + o.ID + "/deliver", cd.Token, map[string]any{"handover_code": o.HandoverCode}, nil, 409},
		{"idempotency key reused", "POST", "/v1/orders", merchant.Token, bookBody(custC, "Other"), []string{"Idempotency-Key", "hostile-key"}, 422},
		{"idempotency key missing", "POST", "/v1/orders", merchant.Token, bookBody(custC, "Other"), nil, 400},
		{"idempotency key too long", "POST", "/v1/orders", merchant.Token, bookBody(custC, "Other"), []string{"Idempotency-Key", strings.Repeat("k", 200)}, 400},
		{"text content type", "POST", "/v1/quotes", merchant.Token, `{}`, []string{"Content-Type", "text/plain"}, 415},
		{"form content type", "POST", "/v1/auth/login", "", "email=a&password=b", []string{"Content-Type", "application/x-www-form-urlencoded"}, 415},
		{"negative limit", "GET", "/v1/orders?limit=-1", merchant.Token, nil, nil, 400},
		{"overflowing limit", "GET", "/v1/orders?limit=99999999999999999999", merchant.Token, nil, nil, 400},
		{"NaN near", "GET", "/v1/couriers?near=NaN,NaN", admin, nil, nil, 400},
		{"infinite near", "GET", "/v1/couriers?near=1e999,0", admin, nil, nil, 400},
		{"inverted bbox", "GET", "/v1/density?bbox=10,10,0,0", admin, nil, nil, 400},
		{"bad time", "GET", "/v1/kpis?from=yesterday", merchant.Token, nil, nil, 400},
		{"long cancel reason", "POST", "/v1/orders/" + o.ID + "/cancel", merchant.Token, map[string]any{"reason": strings.Repeat("r", 301)}, nil, 400},
		{"unknown failure reason", "POST", "/v1/orders/" + o.ID + "/fail", cd.Token, map[string]any{"reason": "ALIENS"}, nil, 400},
		{"webhook to loopback", "POST", "/v1/webhooks", merchant.Token, map[string]any{"url": "https://127.0.0.1/hook", "events": []string{"order.booked"}}, nil, 400},
		{"webhook to metadata", "POST", "/v1/webhooks", merchant.Token, map[string]any{"url": "https://169.254.169.254/latest", "events": []string{"order.booked"}}, nil, 400},
		{"webhook to mapped loopback", "POST", "/v1/webhooks", merchant.Token, map[string]any{"url": "https://[::ffff:127.0.0.1]:8443/", "events": []string{"order.booked"}}, nil, 400},
		{"webhook to localhost", "POST", "/v1/webhooks", merchant.Token, map[string]any{"url": "https://localhost/hook", "events": []string{"order.booked"}}, nil, 400},
		{"webhook over http", "POST", "/v1/webhooks", merchant.Token, map[string]any{"url": "http://example.com/hook", "events": []string{"order.booked"}}, nil, 400},
		{"admin role by merchant", "POST", "/v1/users", merchant.Token, map[string]any{"email": "evil@tawsil.test", "password": "long-enough-pw", "role": "admin", "name": "Evil"}, nil, 403},
		{"mass assignment", "POST", "/v1/users", admin, map[string]any{"email": "mass@tawsil.test", "password": "long-enough-pw", "role": "merchant", "name": "M", "token_version": 0}, nil, 400},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			r := b.do(t, tt.method, tt.path, tt.token, tt.body, tt.headers...)
			if r.status != tt.want {
				t.Fatalf("status %d, want %d: %.300s", r.status, tt.want, r.body)
			}
			if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
				t.Fatalf("Content-Type %q, want application/problem+json: %.300s", ct, r.body)
			}
			var p struct {
				Status int    `json:"status"`
				Detail string `json:"detail"`
			}
			r.json(t, &p)
			if p.Status != tt.want || p.Detail == "" {
				t.Fatalf("problem document %s", r.body)
			}
		})
	}

	// Oversized requests go out by hand: a client still writing when the
	// server answers and closes may see a reset instead of the answer, so the
	// body is only declared and the header is sent whole before reading.
	for _, tt := range []struct {
		give string
		req  string
		want int
	}{
		{"huge body", fmt.Sprintf("POST /v1/quotes HTTP/1.1\r\nHost: tawsil\r\nAuthorization: Bearer %s\r\n"+
			"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n", merchant.Token, 1<<20), 413},
		{"header too large", fmt.Sprintf("GET /v1/orders HTTP/1.1\r\nHost: tawsil\r\nAuthorization: Bearer %s\r\n"+
			"X-Padding: %s\r\n\r\n", merchant.Token, strings.Repeat("p", 16<<10)), 431},
	} {
		t.Run(tt.give, func(t *testing.T) {
			status, ct := b.rawRequest(t, tt.req)
			if status != tt.want || ct != "application/problem+json" {
				t.Fatalf("%d %q, want %d problem+json", status, ct, tt.want)
			}
		})
	}

	// MQTT: each refusal is counted under its reason and stores nothing.
	pos := topic.Courier(topic.DefaultPrefix, cd.CourierID, topic.Pos)
	now := time.Now()
	big := make([]byte, 20<<10)
	big[0] = wire.PosVersion
	mqttTests := []struct {
		give     string
		topic    string
		payload  []byte
		retained bool
		want     string // rejection reason
	}{
		{"garbage", pos, []byte("garbage"), false, "malformed"},
		{"empty", pos, nil, false, "malformed"},
		{"unknown version", pos, []byte{9, 1, 0}, false, "malformed"},
		{"truncated", pos, rawBatch(1000, now, 33_585_000, -7_633_000)[:12], false, "malformed"},
		{"retained", pos, mustEncode(t, fixes(1001, 1, now, store[0], store[1])), true, "retained"},
		{"over the codec limit", pos, big, false, "oversize"},
		{"latitude 95", pos, rawBatch(1002, now, 95_000_000, -7_633_000), false, "out_of_range"},
		{"longitude -200", pos, rawBatch(1003, now, 33_585_000, -200_000_000), false, "out_of_range"},
		{"null island", pos, rawBatch(1004, now, 0, 0), false, "null_island"},
		{"future", pos, mustEncode(t, fixes(1005, 1, now.Add(time.Hour), store[0], store[1])), false, "future"},
		{"too old", pos, mustEncode(t, fixes(1006, 1, now.Add(-72*time.Hour), store[0], store[1])), false, "too_old"},
		{"poor accuracy", pos, mustEncode(t, []wire.Fix{{Seq: 1007, Time: now, Lat: store[0], Lng: store[1], Accuracy: 500, Speed: wire.Unknown,
			Heading: wire.Unknown, Battery: wire.Unknown}}), false, "accuracy"},
		{"teleport", pos, mustEncode(t, fixes(1008, 1, now, 35.76, -5.83)), false, "impossible_speed"},
		{"owntracks out of range", topic.OwnTracksTopic(cd.CourierID, "phone"), []byte(`{"_type":"location","lat":95,"lon":-7.6,"tst":` +
			strconv.FormatInt(now.Unix(), 10) + `}`), false, "out_of_range"},
		{"owntracks NaN string", topic.OwnTracksTopic(cd.CourierID, "phone"), []byte(`{"_type":"location","lat":"NaN","lon":-7.6,"tst":1}`), false, "malformed"},
	}
	for _, tt := range mqttTests {
		t.Run("mqtt "+tt.give, func(t *testing.T) {
			was := b.rejections(t)
			mustPublish(t, cd.client, tt.topic, tt.payload, tt.retained)
			got := b.rejections(t)
			if got[tt.want] != was[tt.want]+1 {
				t.Fatalf("rejections[%s] %v -> %v, want +1 (all: %v)", tt.want, was[tt.want], got[tt.want], got)
			}
		})
	}

	// Off shift: positions are refused and counted.
	b.mustStatus(t, 200, "POST", "/v1/me/shift", other.Token, map[string]any{"on_duty": false})
	otherDev := b.mustDevice(t, admin, other.CourierID)
	oc, err := connect(t, b.MQTTAddr(), otherDev.ClientID, otherDev.Username, otherDev.Password, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	was := b.rejections(t)
	mustPublish(t, oc, topic.Courier(topic.DefaultPrefix, other.CourierID, topic.Pos), mustEncode(t, fixes(1, 3, now, store[0], store[1])), false)
	if got := b.rejections(t)["off_shift"]; got != was["off_shift"]+3 {
		t.Fatalf("off_shift rejections %v -> %v, want +3", was["off_shift"], got)
	}
	oc.Disconnect(100)

	// A packet over the broker's 64 KiB limit ends the connection.
	huge := make([]byte, 70<<10)
	huge[0] = wire.PosVersion
	cd.client.Publish(pos, 1, false, huge).WaitTimeout(3 * time.Second)
	eventually(t, "oversized publisher disconnected", 5*time.Second, func() bool { return !cd.client.IsConnectionOpen() })

	// Writing another courier's topic ends the connection and reaches nothing.
	c2, err := connect(t, b.MQTTAddr(), cd.dev.ClientID, cd.dev.Username, cd.dev.Password, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	c2.Publish(topic.Courier(topic.DefaultPrefix, other.CourierID, topic.Pos), 1, false, mustEncode(t, fixes(50, 1, now, store[0], store[1]))).WaitTimeout(3 * time.Second)
	eventually(t, "foreign-topic publisher disconnected", 5*time.Second, func() bool { return !c2.IsConnectionOpen() })
	if n, err := b.Store.CountPositions(t.Context(), other.CourierID); err != nil || n != 0 {
		t.Fatalf("victim has %d positions (%v)", n, err)
	}
	if lc, _ := b.Index.Get(other.CourierID); lc.HasFix {
		t.Fatalf("victim indexed at %+v", lc.Fix)
	}

	// Nothing changed, and the process still serves.
	if after := b.hostileState(t, merchant.MerchantID, cd.CourierID, o.ID); after != before {
		t.Fatalf("state changed by bad input:\nbefore %+v\nafter  %+v", before, after)
	}
	if after := b.rejections(t); after["topic"] != 0 {
		t.Fatalf("foreign-topic publish reached ingest: %v", after)
	}
	b.mustStatus(t, 200, "GET", "/healthz", "", nil)
	b.mustStatus(t, 200, "GET", "/readyz", "", nil)
	b.mustStatus(t, 200, "GET", "/v1/orders/"+o.ID, merchant.Token, nil)
	c3, err := connect(t, b.MQTTAddr(), cd.dev.ClientID, cd.dev.Username, cd.dev.Password, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	mustPublish(t, c3, pos, mustEncode(t, fixes(2000, 1, time.Now(), store[0], store[1])), false)
	if n, _ := b.Store.CountPositions(t.Context(), cd.CourierID); n != before.positions+1 {
		t.Fatalf("a good fix after the hostile ones: %d positions, want %d", n, before.positions+1)
	}
	assertNoSecrets(t, b.logs.String(), adminPass, merchant.Password, cd.dev.Password, admin)

	// Last, as it locks this client address out for a while: a spoofed
	// X-Forwarded-For does not dodge the per-address login throttle, since no
	// trusted proxy is configured. Each attempt names another account, so
	// only the address ties them together.
	t.Run("spoofed X-Forwarded-For", func(t *testing.T) {
		var last resp
		for i := range 8 {
			last = b.do(t, "POST", "/v1/auth/login", "", map[string]string{"email": fmt.Sprintf("nobody%d@tawsil.test", i), "password": "wrong-password"},
				"X-Forwarded-For", fmt.Sprintf("203.0.113.%d", i+1), "X-Real-IP", fmt.Sprintf("198.51.100.%d", i+1))
			if last.status == 429 {
				break
			}
			if last.status != 401 {
				t.Fatalf("attempt %d: %d %s", i, last.status, last.body)
			}
		}
		if last.status != 429 || last.header.Get("Retry-After") == "" || last.header.Get("Content-Type") != "application/problem+json" {
			t.Fatalf("rotating X-Forwarded-For was not throttled: %d %v %s", last.status, last.header, last.body)
		}
		// The real admin is locked out from this address too, with the right password.
		r := b.do(t, "POST", "/v1/auth/login", "", map[string]string{"email": adminEmail, "password": adminPass}, "X-Forwarded-For", "192.0.2.77")
		if r.status != 429 {
			t.Fatalf("login from a throttled address with a spoofed header: %d %s", r.status, r.body)
		}
	})
}
