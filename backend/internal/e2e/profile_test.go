package e2e

import (
	"encoding/json"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/tawsil/tawsil/shared/profile"
	"github.com/tawsil/tawsil/shared/topic"
)

func TestPushDeviceProfile(t *testing.T) {
	b := mustBackend(t, nil)
	admin, _ := b.login(t, adminEmail, adminPass)
	cd := b.mustCourierDevice(t, admin)
	got := make(chan profile.Profile, 4)
	tok := cd.client.Subscribe(topic.Courier(topic.DefaultPrefix, cd.CourierID, topic.Config), 1, func(_ paho.Client, m paho.Message) {
		if p, err := profile.DecodeJSON(m.Payload()); err == nil {
			got <- p
		}
	})
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	p := profile.Default()
	p.Name = "night-shift-saver"
	p.Filter.MaxIntervalS = 30
	b.mustStatus(t, 200, "PUT", "/v1/couriers/"+cd.CourierID+"/profile", admin, p)
	select {
	case rcv := <-got:
		if rcv != p {
			t.Fatalf("device got %+v, want %+v", rcv, p)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("profile not delivered on the config topic")
	}
	bad := profile.Default()
	bad.MQTT.KeepAliveS = 1
	r := b.mustStatus(t, 422, "PUT", "/v1/couriers/"+cd.CourierID+"/profile", admin, bad)
	if !json.Valid(r.body) || !contains(r.body, "mqtt.keepalive_s") {
		t.Fatalf("invalid profile answer does not name the field: %s", r.body)
	}
	b.mustStatus(t, 422, "PUT", "/v1/couriers/"+cd.CourierID+"/profile", admin, map[string]any{"name": "x", "bogus": 1})
	b.mustStatus(t, 403, "PUT", "/v1/couriers/"+cd.CourierID+"/profile", cd.Token, p)
	b.mustStatus(t, 404, "PUT", "/v1/couriers/aaaaaaaaaaaaaaaaaaaaaaaa/profile", admin, p)
}

func contains(b []byte, s string) bool {
	return len(s) > 0 && json.Valid(b) && indexOf(string(b), s) >= 0
}

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}
