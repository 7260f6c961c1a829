package e2e

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/tawsil/tawsil/shared/topic"
	"github.com/tawsil/tawsil/shared/wire"
)

type device struct {
	CourierID, Username, Password, ClientID string
}

func (b *backend) mustDevice(tb testing.TB, admin string, courierID string) device {
	tb.Helper()
	r := b.mustStatus(tb, 201, "POST", "/v1/couriers/"+courierID+"/device-credentials", admin, nil)
	var d struct {
		Username string `json:"mqtt_username"`
		Password string `json:"mqtt_password"`
		ClientID string `json:"client_id"`
	}
	r.json(tb, &d)
	return device{CourierID: courierID, Username: d.Username, Password: d.Password, ClientID: d.ClientID}
}

func connect(tb testing.TB, addr, clientID, user, pass string, will *wire.State, willTopic string) (paho.Client, error) {
	tb.Helper()
	o := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(clientID).SetUsername(user).SetPassword(pass).
		SetAutoReconnect(false).SetConnectTimeout(5 * time.Second).SetOrderMatters(false)
	if will != nil {
		o.SetBinaryWill(willTopic, []byte(`{"v":1,"online":false,"t":0}`), 1, true)
	}
	c := paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return nil, tok.Error()
	}
	if tok.Error() != nil {
		return nil, tok.Error()
	}
	tb.Cleanup(func() { c.Disconnect(100) })
	return c, nil
}

func mustPublish(tb testing.TB, c paho.Client, t string, payload []byte, retained bool) {
	tb.Helper()
	tok := c.Publish(t, 1, retained, payload)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		tb.Fatalf("publish %s: %v", t, tok.Error())
	}
}

func fixes(from, n int, t0 time.Time, lat, lng float64) []wire.Fix {
	out := make([]wire.Fix, n)
	for i := range out {
		out[i] = wire.Fix{Seq: uint64(from + i), Time: t0.Add(time.Duration(i) * 5 * time.Second), Lat: lat + float64(i)*0.0002, Lng: lng,
			Accuracy: 5, Speed: 5, Heading: 0, Battery: 80}
	}
	return out
}

func mustEncode(tb testing.TB, fs []wire.Fix) []byte {
	tb.Helper()
	p, err := wire.EncodeBatch(nil, fs)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

func TestDeviceIngest(t *testing.T) {
	b := mustBackend(t, nil)
	admin, _ := b.login(t, adminEmail, adminPass)
	courier := b.mustUser(t, admin, "courier")
	dispatcher := b.mustUser(t, admin, "dispatcher")
	dev := b.mustDevice(t, admin, courier.CourierID)
	prefix := topic.DefaultPrefix
	pos := topic.Courier(prefix, courier.CourierID, topic.Pos)

	// Wrong credentials are refused. (Client ids of the device's own
	// choosing and foreign Last Wills are confined, not refused: see
	// TestOwnTracksStockConnect and TestClientIDConfinedToLogin.)
	if _, err := connect(t, b.MQTTAddr(), dev.ClientID, dev.Username, "wrong", nil, ""); err == nil {
		t.Fatal("wrong password accepted")
	}

	c, err := connect(t, b.MQTTAddr(), dev.ClientID, dev.Username, dev.Password, &wire.State{}, topic.Courier(prefix, courier.CourierID, topic.State))
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().Add(-time.Minute).UTC().Truncate(time.Millisecond)
	// Off shift: positions are dropped, nothing is stored or indexed.
	mustPublish(t, c, pos, mustEncode(t, fixes(1, 3, t0, 33.57, -7.59)), false)
	if n, err := b.Store.CountPositions(t.Context(), courier.CourierID); err != nil || n != 0 {
		t.Fatalf("off-shift positions stored: %d, %v", n, err)
	}
	b.mustStatus(t, 200, "POST", "/v1/me/shift", courier.Token, map[string]any{"on_duty": true})

	// On shift: a batch is acknowledged only once stored; a redelivery is stored once.
	mustPublish(t, c, pos, mustEncode(t, fixes(10, 5, t0, 33.57, -7.59)), false)
	if n, err := b.Store.CountPositions(t.Context(), courier.CourierID); err != nil || n != 5 {
		t.Fatalf("after PUBACK stored %d, %v; want 5", n, err)
	}
	mustPublish(t, c, pos, mustEncode(t, fixes(12, 5, t0.Add(10*time.Second), 33.5704, -7.59)), false)
	if n, _ := b.Store.CountPositions(t.Context(), courier.CourierID); n != 7 {
		t.Fatalf("overlapping batch: stored %d, want 7", n)
	}
	// An out-of-order old fix goes to history but does not move the live position.
	before, _ := b.Index.Get(courier.CourierID)
	mustPublish(t, c, pos, mustEncode(t, fixes(3, 1, t0.Add(-20*time.Second), 33.50, -7.59)), false)
	after, _ := b.Index.Get(courier.CourierID)
	if after.Fix.Seq != before.Fix.Seq || after.Fix.Lat != before.Fix.Lat || before.Fix.Seq != 16 {
		t.Fatalf("live position moved backwards: before %+v after %+v", before.Fix, after.Fix)
	}
	// Bad input: counted, nothing stored, connection still serves.
	mustPublish(t, c, pos, []byte("garbage"), false)
	mustPublish(t, c, pos, mustEncode(t, fixes(100, 1, t0, 33.6, -7.6)), true) // retained position
	far := fixes(101, 1, t0.Add(5*time.Minute), 35.76, -5.83)                  // Tanger a few seconds later
	far[0].Time = after.Fix.Time.Add(2 * time.Second)
	mustPublish(t, c, pos, mustEncode(t, far), false)
	if n, _ := b.Store.CountPositions(t.Context(), courier.CourierID); n != 8 {
		t.Fatalf("bad input changed history: %d, want 8", n)
	}
	metrics := string(b.mustStatus(t, 200, "GET", "/metrics", "", nil).body)
	for _, want := range []string{`reason="malformed"`, `reason="retained"`, `reason="impossible_speed"`, `reason="off_shift"`} {
		if !strings.Contains(metrics, "tawsil_ingest_rejections_total{"+want+"}") {
			t.Errorf("rejection %s not counted", want)
		}
	}

	// The courier is queryable near its position, with the live figures.
	r := b.mustStatus(t, 200, "GET", "/v1/couriers?near=33.571,-7.59&status=available&limit=5", dispatcher.Token, nil)
	var near struct {
		Couriers []struct {
			ID        string  `json:"id"`
			DistanceM float64 `json:"distance_m"`
			Cell      string  `json:"cell"`
			Status    string  `json:"status"`
		} `json:"couriers"`
	}
	r.json(t, &near)
	if len(near.Couriers) != 1 || near.Couriers[0].ID != courier.CourierID || near.Couriers[0].Cell == "" || near.Couriers[0].Status != "available" {
		t.Fatalf("near: %s", r.body)
	}
	r = b.mustStatus(t, 200, "GET", "/v1/couriers/"+courier.CourierID+"/track?from="+t0.Add(-time.Hour).Format(time.RFC3339), dispatcher.Token, nil)
	var tr struct {
		Positions []struct {
			Seq uint64 `json:"seq"`
		} `json:"positions"`
	}
	r.json(t, &tr)
	if len(tr.Positions) != 8 {
		t.Fatalf("track has %d positions: %s", len(tr.Positions), r.body)
	}
	// Reading a track is audited.
	r = b.mustStatus(t, 200, "GET", "/v1/audit?subject=courier:"+courier.CourierID, admin, nil)
	if !strings.Contains(string(r.body), "read_track") {
		t.Fatalf("audit lacks the track read: %s", r.body)
	}
	r = b.mustStatus(t, 200, "GET", "/v1/density?res=8", dispatcher.Token, nil)
	if !strings.Contains(string(r.body), `"available_couriers":1`) {
		t.Fatalf("density: %s", r.body)
	}

	// ACL: a wildcard subscription is refused; publishing for someone else
	// gets the device disconnected and reaches nothing.
	var got atomic.Int32
	tok := c.Subscribe("#", 1, func(paho.Client, paho.Message) { got.Add(1) })
	if tok.WaitTimeout(5*time.Second) && tok.Error() == nil {
		if codes := tok.(*paho.SubscribeToken).Result(); codes["#"] != 0x80 {
			t.Fatalf("subscribe # granted: %v", codes)
		}
	}
	c.Publish(topic.Courier(prefix, "victim", topic.Pos), 1, false, mustEncode(t, fixes(1, 1, t0, 33.6, -7.6))).WaitTimeout(2 * time.Second)
	eventually(t, "ACL violator disconnected", 5*time.Second, func() bool { return !c.IsConnectionOpen() })
	if _, ok := b.Index.Get("victim"); ok {
		t.Fatal("publish to a foreign topic reached the index")
	}
	if got.Load() != 0 {
		t.Fatal("wildcard subscription received messages")
	}
	c, err = connect(t, b.MQTTAddr(), dev.ClientID, dev.Username, dev.Password, &wire.State{}, topic.Courier(prefix, courier.CourierID, topic.State))
	if err != nil {
		t.Fatal(err)
	}

	// Revoking the device disconnects it.
	b.mustStatus(t, 204, "DELETE", "/v1/couriers/"+courier.CourierID+"/device-credentials", admin, nil)
	eventually(t, "revoked device disconnected", 5*time.Second, func() bool { return !c.IsConnectionOpen() })
	if _, err := connect(t, b.MQTTAddr(), dev.ClientID, dev.Username, dev.Password, nil, ""); err == nil {
		t.Fatal("revoked credentials accepted")
	}
	// The Last Will marked the courier offline.
	eventually(t, "last will applied", 5*time.Second, func() bool { lc, _ := b.Index.Get(courier.CourierID); return !lc.Online })
}
