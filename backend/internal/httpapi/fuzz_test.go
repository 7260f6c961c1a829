package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"
)

// Fuzz targets for what the API parses by hand: the near= point, the
// density bbox, the strict JSON body decoder and integer query parameters.
// Run one with: go test ./internal/httpapi/ -run XXX -fuzz FuzzParseLatLng -fuzztime 10s

func FuzzParseLatLng(f *testing.F) {
	for _, s := range []string{"33.58,-7.6", " 33.58 , -7.6 ", "90,180", "-90,-180", "90.0000001,0", "NaN,NaN", "Inf,0", "-Inf,0",
		"1e999,0", "0x1p-2,0", "33.58", "33.58,-7.6,1", ",", "", "1_0,2", "+1,-1", "33.58;-7.6", "\x00,\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		lat, lng, ok := parseLatLng(s)
		// Oracle: two numbers around the first comma, finite, on the globe.
		a, b, found := strings.Cut(s, ",")
		wantLat, err1 := strconv.ParseFloat(strings.TrimSpace(a), 64)
		wantLng, err2 := strconv.ParseFloat(strings.TrimSpace(b), 64)
		want := found && err1 == nil && err2 == nil && wantLat >= -90 && wantLat <= 90 && wantLng >= -180 && wantLng <= 180
		if ok != want {
			t.Fatalf("parseLatLng(%q) ok = %v, want %v", s, ok, want)
		}
		if !ok {
			if lat != 0 || lng != 0 {
				t.Fatalf("parseLatLng(%q) refused but returned %v,%v", s, lat, lng)
			}
			return
		}
		if math.IsNaN(lat) || math.IsNaN(lng) || math.Abs(lat) > 90 || math.Abs(lng) > 180 || lat != wantLat || lng != wantLng {
			t.Fatalf("parseLatLng(%q) = %v,%v", s, lat, lng)
		}
		// What we accept prints and reads back the same.
		lat2, lng2, ok2 := parseLatLng(strconv.FormatFloat(lat, 'g', -1, 64) + "," + strconv.FormatFloat(lng, 'g', -1, 64))
		if !ok2 || lat2 != lat || lng2 != lng {
			t.Fatalf("round trip of %v,%v: %v,%v %v", lat, lng, lat2, lng2, ok2)
		}
	})
}

func FuzzParseBBox(f *testing.F) {
	for _, s := range []string{"-7.7,33.5,-7.5,33.6", "-180,-90,180,90", "0,0,0,0", "10,10,0,0", "-7.7,33.5,-7.5", "-7.7,33.5,-7.5,33.6,1",
		"NaN,0,1,1", "-Inf,-90,Inf,90", "1e999,0,0,0", " -7.7 , 33.5 , -7.5 , 33.6 ", ",,,", "", "a,b,c,d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := parseBBox(s)
		if err != nil {
			var ae *apiError
			if !errors.As(err, &ae) || ae.status != http.StatusBadRequest || ae.detail == "" {
				t.Fatalf("parseBBox(%q) error %v, want a 400 problem", s, err)
			}
			if b != ([4]float64{}) {
				t.Fatalf("parseBBox(%q) refused but returned %v", s, b)
			}
			return
		}
		for i, v := range b {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				t.Fatalf("parseBBox(%q)[%d] = %v", s, i, v)
			}
		}
		if b[0] > b[2] || b[1] > b[3] || b[0] < -180 || b[2] > 180 || b[1] < -90 || b[3] > 90 {
			t.Fatalf("parseBBox(%q) = %v: not an ordered box on the globe", s, b)
		}
		if len(strings.Split(s, ",")) != 4 {
			t.Fatalf("parseBBox(%q) accepted %d parts", s, len(strings.Split(s, ",")))
		}
		var parts []string
		for _, v := range b {
			parts = append(parts, strconv.FormatFloat(v, 'g', -1, 64))
		}
		if b2, err := parseBBox(strings.Join(parts, ",")); err != nil || b2 != b {
			t.Fatalf("round trip of %v: %v %v", b, b2, err)
		}
	})
}

// testApp is a Fiber app with the server's error handler and limits around h.
func testApp(tb testing.TB, h fiber.Handler) *fiber.App {
	tb.Helper()
	s := &Server{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	app := fiber.New(fiber.Config{ErrorHandler: s.errorHandler, BodyLimit: 256 << 10, DisableStartupMessage: true,
		JSONEncoder: json.Marshal, JSONDecoder: json.Unmarshal})
	app.All("/t", h)
	return app
}

type problemDoc struct {
	Type   string `json:"type"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
}

// mustProblem checks that an error answer is a well-formed problem document.
func mustProblem(tb testing.TB, res *http.Response, body []byte) problemDoc {
	tb.Helper()
	if ct := res.Header.Get("Content-Type"); ct != "application/problem+json" {
		tb.Fatalf("error %d with Content-Type %q: %s", res.StatusCode, ct, body)
	}
	var p problemDoc
	if err := json.Unmarshal(body, &p); err != nil || p.Status != res.StatusCode || p.Detail == "" || !strings.HasPrefix(p.Type, "https://tawsil.ma/problems/") {
		tb.Fatalf("problem document %s (%v)", body, err)
	}
	return p
}

// decodeTarget has the shapes the API decodes: strings, numbers, pointers,
// nested objects and lists.
type decodeTarget struct {
	Email  string   `json:"email"`
	Lat    *float64 `json:"lat"`
	Count  int      `json:"count"`
	OnDuty *bool    `json:"on_duty"`
	Events []string `json:"events"`
	Place  struct {
		Address string `json:"address"`
	} `json:"place"`
}

var decodeFields = []string{"email", "lat", "count", "on_duty", "events", "place"}

func FuzzDecode(f *testing.F) {
	for _, s := range []struct {
		body, ct string
	}{
		{`{"email":"a@b.ma","lat":33.5,"count":2,"on_duty":true,"events":["x"],"place":{"address":"Maarif"}}`, "application/json"},
		{`{}`, "application/json; charset=utf-8"},
		{`{"email":"a"} {"email":"b"}`, "application/json"},
		{`{"email":"a"}}`, "application/json"},
		{`{"email":"a","email":"b"}`, "application/json"},
		{`{"email":"a","Email":"b"}`, "application/json"},
		{`{}`, "application/jsonp-evil"},
		{`{}`, "application/merge-patch+json"},
		{`{}`, "application/json; charset=latin1"},
		{`{"is_admin":true}`, "application/json"},
		{`{"EMAIL":"case"}`, "application/json"},
		{`{"lat":1e999}`, "application/json"},
		{`{"lat":"NaN"}`, "application/json"},
		{`{"count":1.5}`, "application/json"},
		{`{"$where":"sleep(1)"}`, "application/json"},
		{`{"email":{"$ne":null}}`, "application/json"},
		{`{"place":{"address":"x","extra":1}}`, "application/json"},
		{`[[[[[[[[[[[[[[[[`, "application/json"},
		{`null`, "application/json"},
		{`{"email":"\ud800"}`, "application/json"},
		{`{}`, "text/plain"},
		{`email=a`, "application/x-www-form-urlencoded"},
		{``, ""},
	} {
		f.Add([]byte(s.body), s.ct)
	}
	app := testApp(f, func(c *fiber.Ctx) error {
		var v decodeTarget
		if err := decode(c, &v); err != nil {
			return err
		}
		return c.JSON(v)
	})
	f.Fuzz(func(t *testing.T, body []byte, ct string) {
		if strings.ContainsAny(ct, "\r\n\x00") || !isToken(ct) || len(ct) > 256 {
			return // not a header value an HTTP client can send (or past the header limit: 431, tested elsewhere)
		}
		req := httptest.NewRequest("POST", "/t", bytes.NewReader(body))
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		res, err := app.Test(req, -1) // no client timeout: a loaded CI machine must not fail the target
		if err != nil {
			t.Fatal(err)
		}
		out, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		switch res.StatusCode {
		case 200:
		case 400, 415:
			mustProblem(t, res, out)
			if res.StatusCode == 415 && jsonMedia(ct) {
				t.Fatalf("JSON content type %q refused as unsupported", ct)
			}
			return
		default:
			t.Fatalf("status %d for %q (%q): %s", res.StatusCode, body, ct, out)
		}
		// Accepted: the content type was JSON, the body held exactly one
		// value, and only known fields (json matches names case-insensitively).
		if !jsonMedia(ct) {
			t.Fatalf("content type %q accepted", ct)
		}
		dec := json.NewDecoder(bytes.NewReader(body))
		var first json.RawMessage
		if err := dec.Decode(&first); err != nil || len(bytes.TrimSpace(body[dec.InputOffset():])) != 0 {
			t.Fatalf("accepted %q: not exactly one JSON value", body)
		}
		var obj map[string]json.RawMessage
		if json.Unmarshal(first, &obj) == nil {
			for k := range obj {
				if !knownField(k) {
					t.Fatalf("accepted unknown field %q in %q", k, body)
				}
			}
			// No key twice: as many keys as members (a duplicate collapses in the map).
			var keys int
			kd := json.NewDecoder(bytes.NewReader(first))
			if _, err := kd.Token(); err == nil {
				for kd.More() {
					if _, err := kd.Token(); err != nil {
						break
					}
					var skip json.RawMessage
					if kd.Decode(&skip) != nil {
						break
					}
					keys++
				}
			}
			folded := map[string]bool{}
			for k := range obj {
				folded[strings.ToLower(k)] = true
			}
			if keys != len(folded) {
				t.Fatalf("accepted %q with a key given twice", body)
			}
		}
		// What was decoded encodes and decodes to itself.
		var got decodeTarget
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("answer %s: %v", out, err)
		}
		again, err := json.Marshal(got)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("decoded value not stable: %s vs %s", again, out)
		}
		if got.Lat != nil && (math.IsNaN(*got.Lat) || math.IsInf(*got.Lat, 0)) {
			t.Fatalf("non-finite lat accepted from %q", body)
		}
	})
}

// jsonMedia is the oracle for accepted media types: application/json or
// application/<x>+json, with at most charset=utf-8.
func jsonMedia(ct string) bool {
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || !(mt == "application/json" || (strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json") && mt != "application/+json")) {
		return false
	}
	for k, v := range params {
		if k != "charset" || !strings.EqualFold(v, "utf-8") {
			return false
		}
	}
	return true
}

func knownField(k string) bool {
	for _, f := range decodeFields {
		if strings.EqualFold(f, k) {
			return true
		}
	}
	return false
}

// isToken reports whether s is printable ASCII (what a header value can be here).
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func FuzzQueryInt(f *testing.F) {
	for _, s := range []string{"", "1", "50", "200", "201", "0", "-1", "+5", "007", "1e2", "0x10", " 5", "5 ", "99999999999999999999",
		"-9223372036854775808", "٣", "1_0", "NaN"} {
		f.Add(s)
	}
	const def, lo, hi = 50, 1, 200
	app := testApp(f, func(c *fiber.Ctx) error {
		n, err := queryInt(c, "limit", def, lo, hi)
		if err != nil {
			return err
		}
		return c.JSON(fiber.Map{"n": n})
	})
	f.Fuzz(func(t *testing.T, v string) {
		if len(v) > 512 {
			// Beyond the request-line limit the server answers 431 before any
			// handler (TestHostileInput covers it); this target fuzzes the parser.
			return
		}
		target := "/t"
		if v != "" {
			target += "?" + url.Values{"limit": {v}}.Encode()
		}
		res, err := app.Test(httptest.NewRequest("GET", target, nil), -1)
		if err != nil {
			t.Fatal(err)
		}
		out, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		n, perr := strconv.Atoi(v)
		want := v == "" || (perr == nil && n >= lo && n <= hi)
		switch res.StatusCode {
		case 200:
			if !want {
				t.Fatalf("limit=%q accepted: %s", v, out)
			}
			var got struct{ N int }
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatal(err)
			}
			if got.N < lo || got.N > hi || (v == "" && got.N != def) || (v != "" && got.N != n) {
				t.Fatalf("limit=%q gave %d", v, got.N)
			}
		case 400:
			if want {
				t.Fatalf("limit=%q refused: %s", v, out)
			}
			mustProblem(t, res, out)
		default:
			t.Fatalf("limit=%q: status %d %s", v, res.StatusCode, out)
		}
	})
}

// TestParsePlainDecimalMatchesStrconv checks the short way of
// parseDegrees against strconv bit for bit (the sign of zero included),
// over decimals of every length it takes and some it must leave.
func TestParsePlainDecimalMatchesStrconv(t *testing.T) {
	cases := []string{"0", "-0", "+0", "0.0", "-0.000", "5.", ".5", "-.5", "33.571234", "-7.612345", "90", "-180",
		"180.000000000001", "123456789012345", "1234567890123456", "0.000000000000001", "0.0000000000000001",
		"999999999999999", "9007199254740993", "0.1", "0.3", "1.7976931348623157", "", "-", "+", ".", "-.", "1..2",
		"1.2.3", " 1", "1 ", "1e5", "0x10", "1_0", "inf", "NaN", "--1", "+-1", "1-"}
	rng := rand.New(rand.NewPCG(17, 17))
	for range 200_000 {
		var b []byte
		switch rng.IntN(3) {
		case 0:
			b = append(b, '-')
		case 1:
			b = append(b, '+')
		}
		for range rng.IntN(9) {
			b = append(b, byte('0'+rng.IntN(10)))
		}
		if rng.IntN(4) != 0 {
			b = append(b, '.')
			for range rng.IntN(12) {
				b = append(b, byte('0'+rng.IntN(10)))
			}
		}
		cases = append(cases, string(b))
	}
	taken := 0
	for _, s := range cases {
		got, ok := parsePlainDecimal(s)
		want, err := strconv.ParseFloat(s, 64)
		if !ok {
			// Left to strconv: fine, as long as the short way takes what it should.
			if digits := strings.Count(s, "") - 1 - strings.Count(s, ".") - strings.Count(s, "-") - strings.Count(s, "+"); err == nil && digits <= 15 &&
				strings.Trim(s, "+-.0123456789") == "" && strings.Count(s, ".") <= 1 && strings.LastIndexAny(s, "+-") <= 0 {
				t.Errorf("parsePlainDecimal(%q) refused a plain decimal", s)
			}
			continue
		}
		taken++
		if err != nil || math.Float64bits(got) != math.Float64bits(want) {
			t.Fatalf("parsePlainDecimal(%q) = %v (%#x), strconv: %v (%#x), %v", s, got, math.Float64bits(got), want, math.Float64bits(want), err)
		}
	}
	if taken < len(cases)/2 {
		t.Fatalf("the short way took only %d of %d", taken, len(cases))
	}
}
