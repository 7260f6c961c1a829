package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/tawsil/tawsil/shared/profile"
	"github.com/tawsil/tawsil/shared/topic"
	"github.com/tawsil/tawsil/shared/wire"
)

func TestReadCredentials(t *testing.T) {
	tests := []struct {
		name    string
		give    string
		want    []Credential
		wantErr bool
	}{
		{
			name: "json array",
			give: `[{"courier_id":"c1","mqtt_username":"u1","mqtt_password":"p1","client_id":"dev-c1"},{"courier_id":"c2","mqtt_username":"u2","mqtt_password":"p2"}]`,
			want: []Credential{{"c1", "u1", "p1", "dev-c1"}, {"c2", "u2", "p2", "dev-c2"}},
		},
		{
			name: "json lines",
			give: "{\"courier_id\":\"c1\",\"mqtt_username\":\"u1\",\"mqtt_password\":\"p1\",\"client_id\":\"x1\"}\n\n{\"courier_id\":\"c2\",\"mqtt_username\":\"u2\",\"mqtt_password\":\"p2\",\"client_id\":\"x2\"}\n",
			want: []Credential{{"c1", "u1", "p1", "x1"}, {"c2", "u2", "p2", "x2"}},
		},
		{name: "bad courier id", give: `[{"courier_id":"c/#"}]`, wantErr: true},
		{name: "empty", give: `[]`, wantErr: true},
		{name: "broken line", give: "{\"courier_id\":\"c1\"}\n{oops", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadCredentials(strings.NewReader(tt.give))
			if tt.wantErr {
				if !errors.Is(err, ErrCredentials) {
					t.Fatalf("err %v, want ErrCredentials", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestFleetAgainstEmbeddedBroker runs a small fleet and checks that each
// courier publishes on its own topic with its own gap-free sequence.
func TestFleetAgainstEmbeddedBroker(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	srv := mochi.New(&mochi.Options{InlineClient: true, Logger: slog.New(slog.DiscardHandler)})
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		t.Fatal(err)
	}
	if err := srv.AddListener(listeners.NewTCP(listeners.Config{ID: "t", Address: addr})); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	got := map[string][]uint64{}
	err = srv.Subscribe(topic.Filter(topic.DefaultPrefix, topic.Pos), 1, func(_ *mochi.Client, _ packets.Subscription, pk packets.Packet) {
		courier, _, ok := topic.Parse(topic.DefaultPrefix, pk.TopicName)
		fixes, err := wire.DecodeBatch(pk.Payload)
		if !ok || err != nil {
			t.Errorf("bad message on %s: %v", pk.TopicName, err)
			return
		}
		mu.Lock()
		for _, f := range fixes {
			got[courier] = append(got[courier], f.Seq)
		}
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	p := profile.Default()
	p.Filter.MinIntervalS, p.Filter.MaxIntervalS = 0, 0.2 // send nearly every sample
	p.MQTT.MaxPublishDelayS = 0.5                         // several fixes a message
	creds := Templated(5, "sim-{n}", "sim-{n}", "pw")
	f, err := New(Config{Broker: "tcp://" + addr, City: "tanger", Interval: 50 * time.Millisecond, Profile: p, Couriers: creds})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := f.Run(ctx); err != nil {
		t.Fatal(err)
	}
	tot := f.Totals()
	if tot.Acknowledged == 0 || tot.Acknowledged > tot.Accepted {
		t.Fatalf("totals %+v", tot)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 5 {
		t.Fatalf("messages from %d couriers, want 5", len(got))
	}
	for c, seqs := range got {
		for i := 1; i < len(seqs); i++ {
			if seqs[i] != seqs[i-1]+1 {
				t.Fatalf("courier %s: seq %d after %d", c, seqs[i], seqs[i-1])
			}
		}
	}
}
