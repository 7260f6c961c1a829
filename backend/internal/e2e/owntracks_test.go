package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/tawsil/tawsil/shared/topic"
	"github.com/tawsil/tawsil/shared/wire/golden"
)

// stockApp is the MQTT behaviour of an OwnTracks app left at its default
// settings (booklet: features/mqtt, tech/json; app sources): MQTT 3.1 or
// 3.1.1, a long keepalive, persistent session, a client id derived from user and device, a Last Will
// {"_type":"lwt"} on its own location topic, locations published retained
// (pubRetain=true) at QoS 1, the friends' wildcard subscriptions, its cmd
// topic, and the auxiliary topics it publishes on.
type stockApp struct {
	name      string
	device    string
	keepalive time.Duration
	protocol  uint // 3: MQTT 3.1, 4: MQTT 3.1.1
	clientID  func(user, device string) string
	willQoS   byte
	willRet   bool
	subs      func(user, device string) []string
	subQoS    byte
	aux       []stockPub // published after the locations
}

type stockPub struct {
	sub     string // "" for the location topic
	fixture string // golden.OwnTracksMessages key
}

var stockApps = []stockApp{
	{
		// keepalive: the Android app's default (60 min; it ignores values
		// under 15 min, Android's shortest scheduler interval).
		// protocol: MQTT 3.1, the Android app's long-time default (owntracks/android#809).
		name: "android", device: "phone", keepalive: time.Hour, protocol: 3,
		clientID: func(u, d string) string { return strings.ToLower(u + d) },
		willQoS:  1, willRet: false, subQoS: 2,
		subs: func(u, d string) []string {
			return []string{"owntracks/+/+", "owntracks/+/+/info", "owntracks/+/+/event", "owntracks/+/+/waypoint",
				topic.OwnTracksTopic(u, d) + "/cmd"}
		},
		aux: []stockPub{{"event", "transition"}, {"waypoint", "waypoint"}, {"waypoints", "waypoints"}, {"info", "card"},
			{"status", "status"}, {"dump", "configuration"}, {"", "encrypted"}},
	},
	{
		// device: the phone's name, which the app takes as its device id.
		name: "ios", device: "Ali's iPhone", keepalive: time.Minute, protocol: 4,
		clientID: func(u, d string) string { return u + d },
		willQoS:  1, willRet: true, subQoS: 1,
		subs: func(u, d string) []string {
			return []string{"owntracks/+/+", "owntracks/+/+/event", "owntracks/+/+/info", "owntracks/+/+/cmd", "owntracks/#"}
		},
		aux: []stockPub{{"event", "transition"}, {"step", "steps"}, {"beacon", "beacon"}, {"waypoints", "waypoints"},
			{"status", "status"}, {"dump", "configuration"}, {"", "request"}},
	},
}

// stockSession is one app connected to a broker, with the raw connection
// kept so the test can drop it without DISCONNECT (the Will then fires).
type stockSession struct {
	c    paho.Client
	got  *inbox
	mu   sync.Mutex
	conn net.Conn
}

func (s *stockSession) drop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil {
		s.conn.Close()
	}
}

// connectStock connects app as user with its default settings.
func connectStock(tb testing.TB, brokerURL, user, pass string, app stockApp, now time.Time) (*stockSession, error) {
	tb.Helper()
	s := &stockSession{got: &inbox{}}
	will := fmt.Sprintf(`{"_type":"lwt","tst":%d}`, now.Unix())
	o := paho.NewClientOptions().AddBroker(brokerURL).SetClientID(app.clientID(user, app.device)).
		SetUsername(user).SetPassword(pass).SetCleanSession(false).SetKeepAlive(app.keepalive).
		SetProtocolVersion(app.protocol).SetAutoReconnect(false).SetConnectTimeout(5*time.Second).SetOrderMatters(false).
		SetBinaryWill(topic.OwnTracksTopic(user, app.device), []byte(will), app.willQoS, app.willRet).
		SetDefaultPublishHandler(s.got.handle)
	o.SetCustomOpenConnectionFn(func(u *url.URL, _ paho.ClientOptions) (net.Conn, error) {
		conn, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
		s.mu.Lock()
		s.conn = conn
		s.mu.Unlock()
		return conn, err
	})
	s.c = paho.NewClient(o)
	tok := s.c.Connect()
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		return nil, fmt.Errorf("%s connect: %v", app.name, tok.Error())
	}
	tb.Cleanup(func() { s.c.Disconnect(100) })
	for _, f := range app.subs(user, app.device) {
		tok := s.c.Subscribe(f, app.subQoS, s.got.handle)
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			return nil, fmt.Errorf("%s subscribe %s: %v", app.name, f, tok.Error())
		}
		if code := tok.(*paho.SubscribeToken).Result()[f]; code == 0x80 {
			return nil, fmt.Errorf("%s subscribe %s refused (SUBACK 0x80)", app.name, f)
		}
	}
	return s, nil
}

// stockLocation is an OwnTracks location at time t, as the app sends it.
func stockLocation(tb testing.TB, t time.Time, lat, lon float64) []byte {
	tb.Helper()
	p, err := json.Marshal(map[string]any{"_type": "location", "acc": 9, "alt": 40, "batt": 81, "bs": 1, "conn": "m",
		"created_at": t.Unix(), "lat": lat, "lon": lon, "m": 1, "t": "u", "tid": "c7", "tst": t.Unix(), "vac": 3, "vel": 12})
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// runStock publishes what the app publishes by default: two locations in
// the same second (retained, QoS 1), then its auxiliary messages. Every
// publish must be acknowledged with the connection still open.
func runStock(tb testing.TB, s *stockSession, user string, app stockApp, now time.Time, lat, lon float64) {
	tb.Helper()
	msgs, err := golden.OwnTracksMessages()
	if err != nil {
		tb.Fatal(err)
	}
	base := topic.OwnTracksTopic(user, app.device)
	pub := func(t string, p []byte, retained bool) {
		tb.Helper()
		tok := s.c.Publish(t, 1, retained, p)
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			tb.Fatalf("%s publish %s: %v", app.name, t, tok.Error())
		}
		if !s.c.IsConnectionOpen() {
			tb.Fatalf("%s disconnected after publishing on %s", app.name, t)
		}
	}
	pub(base, stockLocation(tb, now, lat, lon), true)
	pub(base, stockLocation(tb, now, lat+0.0001, lon), true) // same tst second, a few metres on
	for _, a := range app.aux {
		t := base
		if a.sub != "" {
			t += "/" + a.sub
		}
		pub(t, msgs[a.fixture], false)
	}
	if !s.c.IsConnectionOpen() {
		tb.Fatalf("%s disconnected", app.name)
	}
}

// TestOwnTracksStockConnect reproduces the stock Android and iOS apps'
// default MQTT sessions against the embedded broker: the connect with their
// Will and client id, the friends' subscriptions, retained locations, two
// locations in one second, the auxiliary topics. Everything is acknowledged
// and nothing disconnects; locations are stored, auxiliary messages are
// counted; a login never sees another courier's messages; the Will marks
// the courier offline.
func TestOwnTracksStockConnect(t *testing.T) {
	b := mustBackend(t, nil)
	admin, _ := b.login(t, adminEmail, adminPass)
	brokerURL := "tcp://" + b.MQTTAddr()
	other := b.mustUser(t, admin, "courier")
	otherDev := b.mustDevice(t, admin, other.CourierID)
	for i, app := range stockApps {
		t.Run(app.name, func(t *testing.T) {
			courier := b.mustUser(t, admin, "courier")
			dev := b.mustDevice(t, admin, courier.CourierID)
			b.mustStatus(t, 200, "POST", "/v1/me/shift", courier.Token, map[string]any{"on_duty": true})
			now := time.Now().Add(-10 * time.Second).Truncate(time.Second)

			friend, err := connectStock(t, brokerURL, otherDev.Username, otherDev.Password, stockApps[1-i], now)
			if err != nil {
				t.Fatal(err)
			}
			s, err := connectStock(t, brokerURL, dev.Username, dev.Password, app, now)
			if err != nil {
				t.Fatal(err)
			}
			runStock(t, s, dev.Username, app, now, 33.5731+float64(i)*0.01, -7.5898)
			eventually(t, "both locations of the same second stored", 10*time.Second, func() bool {
				n, err := b.Store.CountPositions(t.Context(), courier.CourierID)
				return err == nil && n == 2
			})
			if lc, ok := b.Index.Get(courier.CourierID); !ok || !lc.Online || !lc.HasFix {
				t.Fatalf("live index: %+v", lc)
			}

			// The broker kept no retained location: a new full-access
			// subscriber gets nothing for this courier.
			ops := mustDial(t, brokerURL, "ops-"+app.name, "ops", "ops-password-e2e", nil)
			retained := &inbox{}
			mustSubscribe(t, ops, "owntracks/#", retained)
			// Commands reach the device's own cmd topic, and no one else's.
			cmd := topic.OwnTracksTopic(dev.Username, app.device) + "/cmd"
			if tok := ops.Publish(cmd, 1, false, `{"_type":"cmd","action":"reportLocation"}`); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
				t.Fatal(tok.Error())
			}
			eventually(t, "cmd delivered", 5*time.Second, func() bool { return s.got.has(cmd + ` {"_type":"cmd","action":"reportLocation"}`) })
			for _, m := range retained.all() {
				if strings.HasPrefix(m, topic.OwnTracksTopic(dev.Username, app.device)+" ") {
					t.Fatalf("the broker retained a location: %s", m)
				}
			}
			// The friend's wildcards delivered nothing of this courier's.
			for _, m := range friend.got.all() {
				if strings.Contains(m, dev.Username) {
					t.Fatalf("%s received another courier's message: %s", stockApps[1-i].name, m)
				}
			}
			metrics := string(b.mustStatus(t, 200, "GET", "/metrics", "", nil).body)
			for _, a := range app.aux {
				want := `tawsil_ingest_ignored_total{reason="owntracks_topic_` + a.sub + `"}`
				if a.sub == "" {
					want = `tawsil_ingest_ignored_total{reason="owntracks_` + a.fixture + `"}`
				}
				if !strings.Contains(metrics, want) {
					t.Errorf("not counted: %s", want)
				}
			}
			for _, want := range []string{`reason="owntracks_retain_cleared"`, `reason="owntracks_subscribe"`} {
				if !strings.Contains(metrics, "tawsil_ingest_ignored_total{"+want+"}") {
					t.Errorf("not counted: %s", want)
				}
			}

			// The app's Will ({"_type":"lwt"}) marks the courier offline.
			s.drop()
			eventually(t, "lwt applied", 10*time.Second, func() bool { lc, _ := b.Index.Get(courier.CourierID); return !lc.Online })
			friend.c.Disconnect(100)
		})
	}
}

// TestClientIDConfinedToLogin: any client id is accepted from a device
// login, but only inside that login's namespace, so no login can take over
// another device's session by reusing its client id, and a foreign Last Will
// is dropped (counted) instead of refusing the connection.
func TestClientIDConfinedToLogin(t *testing.T) {
	b := mustBackend(t, nil)
	admin, _ := b.login(t, adminEmail, adminPass)
	a, c := b.mustUser(t, admin, "courier"), b.mustUser(t, admin, "courier")
	devA, devC := b.mustDevice(t, admin, a.CourierID), b.mustDevice(t, admin, c.CourierID)
	victim, err := connect(t, b.MQTTAddr(), devA.ClientID, devA.Username, devA.Password, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	// C borrows A's client id, with a Will on A's state topic.
	borrower, err := connect(t, b.MQTTAddr(), devA.ClientID, devC.Username, devC.Password, nil, "")
	if err != nil {
		t.Fatalf("a device login with a client id of its own choosing refused: %v", err)
	}
	sentinel := topic.Courier(topic.DefaultPrefix, c.CourierID, topic.State)
	mustPublish(t, borrower, sentinel, []byte(`{"v":1,"online":true,"t":1}`), false)
	if !victim.IsConnectionOpen() {
		t.Fatal("another login took over a device's session by reusing its client id")
	}
	forged := rawConnectWithWill(t, b.MQTTAddr(), devC.Username, devC.Password, topic.Courier(topic.DefaultPrefix, a.CourierID, topic.State), `{"v":1,"online":false,"t":1}`)
	obs := mustDial(t, "tcp://"+b.MQTTAddr(), "ops-observer", "ops", "ops-password-e2e", nil)
	seen := &inbox{}
	mustSubscribe(t, obs, topic.Filter(topic.DefaultPrefix, topic.State), seen)
	forged.Close() // no DISCONNECT: a kept Will would fire now
	own := rawConnectWithWill(t, b.MQTTAddr(), devC.Username, devC.Password, sentinel, "own-will")
	own.Close()
	eventually(t, "own will delivered", 10*time.Second, func() bool { return seen.has(sentinel + " own-will") })
	for _, m := range seen.all() {
		if strings.HasPrefix(m, topic.Courier(topic.DefaultPrefix, a.CourierID, topic.State)) {
			t.Fatalf("a Will on another courier's topic was published: %s", m)
		}
	}
	if metrics := string(b.mustStatus(t, 200, "GET", "/metrics", "", nil).body); !strings.Contains(metrics, `tawsil_ingest_ignored_total{reason="will_foreign_topic"}`) {
		t.Error("foreign Will not counted")
	}
	// Revoking A's credentials ends every session of A's, whatever its client id.
	second, err := connect(t, b.MQTTAddr(), "a-owntracks", devA.Username, devA.Password, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	b.mustStatus(t, 204, "DELETE", "/v1/couriers/"+a.CourierID+"/device-credentials", admin, nil)
	eventually(t, "revoked sessions closed", 5*time.Second, func() bool { return !victim.IsConnectionOpen() && !second.IsConnectionOpen() })
	if !borrower.IsConnectionOpen() {
		t.Fatal("revoking A closed C's session")
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// withTst rewrites a fixture's tst, keeping the rest.
func withTst(tb testing.TB, p []byte, tst string) []byte {
	tb.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(p, &m); err != nil {
		tb.Fatal(err)
	}
	if _, ok := m["tst"]; ok {
		m["tst"] = json.RawMessage(tst)
	}
	out, err := json.Marshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// TestOwnTracksHTTP posts one message of every OwnTracks _type the way the
// apps' HTTP mode does (Basic auth with the device credentials, X-Limit-D),
// and checks the reply the app expects, what is stored, and the refusals.
func TestOwnTracksHTTP(t *testing.T) {
	b := mustBackend(t, nil)
	admin, _ := b.login(t, adminEmail, adminPass)
	courier := b.mustUser(t, admin, "courier")
	dev := b.mustDevice(t, admin, courier.CourierID)
	b.mustStatus(t, 200, "POST", "/v1/me/shift", courier.Token, map[string]any{"on_duty": true})
	msgs, err := golden.OwnTracksMessages()
	if err != nil {
		t.Fatal(err)
	}
	basic := "Basic " + b64(dev.Username+":"+dev.Password)
	post := func(body []byte, auth string, headers ...string) resp {
		h := append([]string{"Authorization", auth, "X-Limit-U", dev.Username, "X-Limit-D", "phone"}, headers...)
		return b.do(t, "POST", "/v1/ingest/owntracks", "", body, h...)
	}
	now := time.Now().Add(-5 * time.Minute).Unix()
	locations := 0
	var minimalTst string
	for i, name := range []string{"lwt", "location_android", "location_ios", "location_lenient", "location_minimal", "transition",
		"waypoint", "waypoints", "card", "cmd", "configuration", "encrypted", "beacon", "request", "status", "steps"} {
		tst := strconv.FormatInt(now+int64(i)*10, 10) // the fixtures' positions are up to 150 m apart
		if name == "location_lenient" {
			tst += ".75"
		}
		if name == "location_minimal" {
			minimalTst = tst
		}
		r := post(withTst(t, msgs[name], tst), basic)
		if r.status != 200 || string(bytes.TrimSpace(r.body)) != "[]" || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
			t.Fatalf("%s: %d %q %s, want 200 [] JSON", name, r.status, r.body, r.header.Get("Content-Type"))
		}
		if strings.HasPrefix(name, "location") {
			locations++
		}
	}
	if n, err := b.Store.CountPositions(t.Context(), courier.CourierID); err != nil || n != int64(locations) {
		t.Fatalf("stored %d, %v; want %d locations", n, err, locations)
	}
	// The same message again is a duplicate: answered, not stored twice.
	r := post(withTst(t, msgs["location_minimal"], minimalTst), basic)
	if r.status != 200 {
		t.Fatalf("resend: %d %s", r.status, r.body)
	}
	if n, _ := b.Store.CountPositions(t.Context(), courier.CourierID); n != int64(locations) {
		t.Fatalf("a resent location was stored again: %d", n)
	}
	// The lwt came first (offline); the locations after it bring the courier online.
	if lc, _ := b.Index.Get(courier.CourierID); !lc.Online {
		t.Fatal("a location after the lwt did not bring the courier back online")
	}
	post(withTst(t, msgs["lwt"], strconv.FormatInt(now+200, 10)), basic)
	if lc, _ := b.Index.Get(courier.CourierID); lc.Online {
		t.Fatal("the lwt did not mark the courier offline")
	}
	metrics := string(b.mustStatus(t, 200, "GET", "/metrics", "", nil).body)
	for _, want := range []string{"owntracks_lwt", "owntracks_transition", "owntracks_waypoints", "owntracks_steps"} {
		if !strings.Contains(metrics, `tawsil_ingest_ignored_total{reason="`+want+`"}`) {
			t.Errorf("%s not counted", want)
		}
	}
	// Refusals: RFC 7807, nothing stored.
	good := withTst(t, msgs["location_minimal"], strconv.FormatInt(now+40, 10))
	for _, tt := range []struct {
		name string
		body []byte
		auth string
		want int
	}{
		{"no credentials", good, "", 401},
		{"wrong password", good, "Basic " + b64(dev.Username+":wrong"), 401},
		{"bearer token", good, "Bearer " + courier.Token, 401},
		{"not json", []byte("lat=1"), basic, 400},
		{"latitude 95", []byte(`{"_type":"location","lat":95,"lon":-7.6,"tst":` + strconv.FormatInt(now, 10) + `}`), basic, 400},
		{"too large", append([]byte(`{"_type":"location","x":"`), append(bytes.Repeat([]byte("a"), 5000), '"', '}')...), basic, 413},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := post(tt.body, tt.auth)
			if r.status != tt.want || !strings.HasPrefix(r.header.Get("Content-Type"), "application/problem+json") {
				t.Fatalf("%d %s, want %d problem", r.status, r.body, tt.want)
			}
		})
	}
	if n, _ := b.Store.CountPositions(t.Context(), courier.CourierID); n != int64(locations) {
		t.Fatalf("a refused request changed history: %d", n)
	}
}

// TestTraccarClientHTTP sends Traccar Client reports in each of its forms
// (GET query, POST query, POST form, POST JSON of Traccar Client 9+), with
// the credentials as key or HTTP Basic.
func TestTraccarClientHTTP(t *testing.T) {
	b := mustBackend(t, nil)
	admin, _ := b.login(t, adminEmail, adminPass)
	courier := b.mustUser(t, admin, "courier")
	dev := b.mustDevice(t, admin, courier.CourierID)
	now := time.Now().Add(-2 * time.Minute).Truncate(time.Second)
	q := func(i int, extra string) string {
		return fmt.Sprintf("id=%s&lat=%.6f&lon=-7.5898&timestamp=%d&speed=9.7&bearing=181.5&altitude=40&accuracy=6.5&batt=85.0%s",
			dev.Username, 33.5731+float64(i)*0.0002, now.Add(time.Duration(i)*10*time.Second).Unix(), extra)
	}
	key := "&key=" + url.QueryEscape(dev.Password)

	// Off shift: answered 200 (Traccar Client would otherwise resend forever), counted, not stored.
	if r := b.do(t, "GET", "/v1/ingest/osmand?"+q(0, key), "", nil); r.status != 200 {
		t.Fatalf("off shift: %d %s", r.status, r.body)
	}
	b.mustStatus(t, 200, "POST", "/v1/me/shift", courier.Token, map[string]any{"on_duty": true})
	if n, _ := b.Store.CountPositions(t.Context(), courier.CourierID); n != 0 {
		t.Fatalf("off-shift report stored")
	}
	basic := "Basic " + b64(dev.Username+":"+dev.Password)
	jsonBody := fmt.Sprintf(`{"device_id":%q,"location":{"timestamp":%q,"coords":{"latitude":33.5741,"longitude":-7.5898,"accuracy":5,"speed":4.2,"heading":90,"altitude":41},"is_moving":true,"odometer":1200,"event":"motionchange","battery":{"level":0.85,"is_charging":false},"activity":{"type":"on_bicycle"},"extras":{}}}`,
		dev.Username, now.Add(60*time.Second).Format(time.RFC3339Nano))
	jsonBatch := fmt.Sprintf(`{"device_id":%q,"location":[{"timestamp":%q,"coords":{"latitude":33.5743,"longitude":-7.5898,"accuracy":5,"speed":-1,"heading":-1}},{"timestamp":%q,"coords":{"latitude":33.5745,"longitude":-7.5898,"accuracy":5}}]}`,
		dev.Username, now.Add(70*time.Second).Format(time.RFC3339Nano), now.Add(80*time.Second).Format(time.RFC3339Nano))
	for _, tt := range []struct {
		name, method, path, body, ctype, auth string
	}{
		{"get query key", "GET", "/v1/ingest/osmand?" + q(1, key), "", "", ""},
		{"post query (Android client)", "POST", "/v1/ingest/osmand?" + q(2, key), "", "", ""},
		{"post form", "POST", "/v1/ingest/osmand?key=" + url.QueryEscape(dev.Password), q(3, ""), "application/x-www-form-urlencoded", ""},
		{"get basic", "GET", "/v1/ingest/osmand?" + q(4, ""), "", "", basic},
		{"duplicate", "GET", "/v1/ingest/osmand?" + q(4, key), "", "", ""},
		{"same second", "GET", fmt.Sprintf("/v1/ingest/osmand?id=%s&lat=33.57395&lon=-7.5898&timestamp=%d%s", dev.Username, now.Add(40*time.Second).Unix(), key), "", "", ""},
		{"post json (client 9)", "POST", "/v1/ingest/osmand?key=" + url.QueryEscape(dev.Password), jsonBody, "application/json", ""},
		{"post json batch", "POST", "/v1/ingest/osmand", jsonBatch, "application/json", basic},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := []string{}
			if tt.auth != "" {
				h = append(h, "Authorization", tt.auth)
			}
			if tt.ctype != "" {
				h = append(h, "Content-Type", tt.ctype)
			}
			var body any
			if tt.body != "" {
				body = tt.body
			}
			if r := b.do(t, tt.method, tt.path, "", body, h...); r.status != 200 {
				t.Fatalf("%d %s", r.status, r.body)
			}
		})
	}
	// Reports 1-4 (4 twice: a duplicate), another in 4's second, the JSON
	// one and the batch of two.
	if n, err := b.Store.CountPositions(t.Context(), courier.CourierID); err != nil || n != 8 {
		t.Fatalf("stored %d, %v; want 8", n, err)
	}
	for _, tt := range []struct {
		name, path string
		auth       string
		want       int
	}{
		{"no key", "/v1/ingest/osmand?" + q(9, ""), "", 401},
		{"wrong key", "/v1/ingest/osmand?" + q(9, "&key=wrong"), "", 401},
		{"someone else's id", "/v1/ingest/osmand?" + strings.Replace(q(9, key), "id="+dev.Username, "id=nobody", 1), "", 401},
		{"lat not a number", "/v1/ingest/osmand?" + strings.Replace(q(9, key), "lat=", "lat=x", 1), "", 400},
		{"batt 250", "/v1/ingest/osmand?" + strings.Replace(q(9, key), "batt=85.0", "batt=250", 1), "", 400},
		{"null island", "/v1/ingest/osmand?id=" + dev.Username + key + "&lat=0&lon=0", "", 400},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := b.do(t, "GET", tt.path, "", nil)
			if r.status != tt.want {
				t.Fatalf("%d %s, want %d", r.status, r.body, tt.want)
			}
		})
	}
	if n, _ := b.Store.CountPositions(t.Context(), courier.CourierID); n != 8 {
		t.Fatalf("refused reports changed history: %d", n)
	}
}

// TestMosquittoOwnTracksStockConnect runs the same stock-app sessions
// against a real Mosquitto with deploy/mosquitto's configuration and ACL, the
// backend reading it through its shared subscription: the apps connect,
// everything is acknowledged without a disconnect, both locations of the
// same second are stored, a friend's wildcards see nothing of another
// courier, and the app's Will marks the courier offline.
func TestMosquittoOwnTracksStockConnect(t *testing.T) {
	mb := mustMosquitto(t)
	mb.start()
	b, _ := startBackend(t, backendConfig(t, mb, "tawsil-backend-e2e-ot"))
	eventually(t, "backend ready", 15*time.Second, func() bool { return b.do(t, "GET", "/readyz", "", nil).status == 200 })
	admin, _ := b.login(t, adminEmail, adminPass)
	brokerURL := "tcp://" + mb.devAddr
	other := b.mustUser(t, admin, "courier")
	otherDev := b.mustDevice(t, admin, other.CourierID)
	mb.addDevice(otherDev.Username, otherDev.Password)
	for i, app := range stockApps {
		t.Run(app.name, func(t *testing.T) {
			courier := b.mustUser(t, admin, "courier")
			dev := b.mustDevice(t, admin, courier.CourierID)
			mb.addDevice(dev.Username, dev.Password)
			b.mustStatus(t, 200, "POST", "/v1/me/shift", courier.Token, map[string]any{"on_duty": true})
			now := time.Now().Add(-10 * time.Second).Truncate(time.Second)
			friend, err := connectStock(t, brokerURL, otherDev.Username, otherDev.Password, stockApps[1-i], now)
			if err != nil {
				t.Fatal(err)
			}
			s, err := connectStock(t, brokerURL, dev.Username, dev.Password, app, now)
			if err != nil {
				t.Fatal(err)
			}
			runStock(t, s, dev.Username, app, now, 33.5731+float64(i)*0.01, -7.5898)
			eventually(t, "both locations of the same second stored", 15*time.Second, func() bool {
				n, err := b.Store.CountPositions(t.Context(), courier.CourierID)
				return err == nil && n == 2
			})
			for _, m := range friend.got.all() {
				if strings.Contains(m, dev.Username) {
					t.Fatalf("%s received another courier's message: %s", stockApps[1-i].name, m)
				}
			}
			s.drop()
			eventually(t, "lwt applied", 15*time.Second, func() bool { lc, _ := b.Index.Get(courier.CourierID); return !lc.Online })
			friend.c.Disconnect(100)
		})
	}
}
