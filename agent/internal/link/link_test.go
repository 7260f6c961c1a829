package link

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/tawsil/tawsil/agent/internal/outbox"
	"github.com/tawsil/tawsil/agent/internal/source"
	"github.com/tawsil/tawsil/shared/profile"
	"github.com/tawsil/tawsil/shared/topic"
	"github.com/tawsil/tawsil/shared/wire"
	"github.com/tawsil/tawsil/shared/wire/golden"
)

func TestBackoff(t *testing.T) {
	m := profile.MQTT{ReconnectMinS: 1, ReconnectMaxS: 60}
	tests := []struct {
		attempt int
		rnd     float64
		want    time.Duration
	}{
		{attempt: 0, rnd: 0, want: 500 * time.Millisecond},
		{attempt: 0, rnd: 0.5, want: 750 * time.Millisecond},
		{attempt: 3, rnd: 0.5, want: 6 * time.Second},   // ceiling 8 s, jitter in [4, 8)
		{attempt: 10, rnd: 0, want: 30 * time.Second},   // capped at 60 s
		{attempt: 1000, rnd: 1, want: 60 * time.Second}, // no overflow
	}
	for _, tt := range tests {
		if got := Backoff(m, tt.attempt, func() float64 { return tt.rnd }); got != tt.want {
			t.Errorf("Backoff(attempt %d, rnd %v) = %v, want %v", tt.attempt, tt.rnd, got, tt.want)
		}
	}
}

func TestPublishPacketSizeMatchesPaho(t *testing.T) {
	tp := topic.Courier(topic.DefaultPrefix, "c42", topic.Pos)
	for _, n := range []int{0, 20, 127, 128, 5000, 16383, 16384} {
		pk := packets.NewControlPacket(packets.Publish).(*packets.PublishPacket)
		pk.Qos, pk.TopicName, pk.MessageID, pk.Payload = 1, tp, 7, make([]byte, n)
		var buf bytes.Buffer
		if err := pk.Write(&buf); err != nil {
			t.Fatal(err)
		}
		if got := PublishPacketSize(tp, n, 1); got != buf.Len() {
			t.Errorf("payload %d: PublishPacketSize = %d, paho writes %d bytes", n, got, buf.Len())
		}
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	good := Config{Broker: "tcp://127.0.0.1:1883", ClientID: "dev-c1", Courier: "c1", Profile: profile.Default()}
	tests := []struct {
		name string
		edit func(*Config)
	}{
		{name: "courier with wildcard", edit: func(c *Config) { c.Courier = "c/#" }},
		{name: "no client id", edit: func(c *Config) { c.ClientID = "" }},
		{name: "http broker", edit: func(c *Config) { c.Broker = "http://127.0.0.1" }},
		{name: "no host", edit: func(c *Config) { c.Broker = "tcp://" }},
		{name: "bad profile", edit: func(c *Config) { c.Profile.MQTT.BatchMax = 0 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.edit(&c)
			if _, err := New(c, outbox.NewMemory(1000, 0)); err == nil {
				t.Fatal("accepted")
			} else if !errors.Is(err, ErrConfig) && !errors.Is(err, profile.ErrInvalid) {
				t.Fatalf("err %v: want ErrConfig or profile.ErrInvalid", err)
			}
		})
	}
	if _, err := New(good, outbox.NewMemory(1000, 0)); err != nil {
		t.Fatalf("good config refused: %v", err)
	}
}

// rideFixes are consecutive accepted-like fixes of a simulated ride, 5 s apart.
func rideFixes(tb testing.TB, n int) []wire.Fix {
	tb.Helper()
	city, err := source.CityByName("casablanca")
	if err != nil {
		tb.Fatal(err)
	}
	sim := source.NewSim(city, time.Second, 7)
	t0 := time.Date(2025, 6, 12, 9, 0, 0, 0, time.UTC)
	out := make([]wire.Fix, n)
	for i := range out {
		out[i] = sim.Step(t0.Add(time.Duration(i)*5*time.Second), 5).Fix
		out[i].Seq = uint64(1000 + i)
	}
	return out
}

// liveFixes are n fixes of a simulated ride at 1 Hz, as a device a month
// into its epoch numbers them (seq ~2.6 million, epoch 30 days old), so
// the version-3 payload pays its real first-fix cost.
func liveFixes(tb testing.TB, n int) []wire.Fix {
	tb.Helper()
	city, err := source.CityByName("casablanca")
	if err != nil {
		tb.Fatal(err)
	}
	sim := source.NewSim(city, time.Second, 11)
	t0 := time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)
	epoch := wire.NewDeviceEpoch(t0.Add(-30 * 24 * time.Hour))
	out := make([]wire.Fix, 0, n)
	for i := 0; len(out) < n; i++ {
		f := sim.Step(t0.Add(time.Duration(i)*time.Second), 1).Fix
		f.Epoch, f.Seq = epoch, uint64(2_592_000+i)
		out = append(out, f)
	}
	return out
}

// BenchmarkBytesPerFix reports bytes on the wire per fix for one fix per
// message, batches of 10 and 100 (backlog drain) on the long topic
// (tawsil/v1/couriers/<20-char id>/pos, as issue 17 measured), live5: what
// the agent sends at 1 fix/s with a 5 s publish delay (5 fixes a message,
// the compact topic t/<24-char id>, as the backend issues ids), and
// OwnTracks JSON for comparison. "wire" counts the whole MQTT PUBLISH
// packet (QoS1); TCP/TLS overhead, the PUBACK and the storage
// acknowledgements are excluded (agent/bench.sh measures those too).
func BenchmarkBytesPerFix(b *testing.B) {
	fixes := rideFixes(b, 1000)
	tp := topic.Courier(topic.DefaultPrefix, "c0123456789abcdefghi", topic.Pos)
	for _, batch := range []int{1, 10, 100} {
		b.Run(map[int]string{1: "single", 10: "batch10", 100: "batch100"}[batch], func(b *testing.B) {
			var buf []byte
			var payload, wireBytes, n int
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				start := (i * batch) % (len(fixes) - batch)
				var err error
				buf, err = wire.EncodeBatch(buf[:0], fixes[start:start+batch])
				if err != nil {
					b.Fatal(err)
				}
				payload += len(buf)
				wireBytes += PublishPacketSize(tp, len(buf), 1)
				n += batch
			}
			b.ReportMetric(float64(payload)/float64(n), "payload-B/fix")
			b.ReportMetric(float64(wireBytes)/float64(n), "wire-B/fix")
		})
	}
	b.Run("live5", func(b *testing.B) {
		live := liveFixes(b, 1000)
		ctp := topic.CompactCourier(topic.DefaultPrefix, "5f2b3c4d5e6f708192a3b4c5", topic.Pos)
		var buf []byte
		var payload, wireBytes, n int
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			start := (i * 5) % (len(live) - 5)
			var err error
			buf, err = wire.EncodeBatch(buf[:0], live[start:start+5])
			if err != nil {
				b.Fatal(err)
			}
			payload += len(buf)
			wireBytes += PublishPacketSize(ctp, len(buf), 1)
			n += 5
		}
		b.ReportMetric(float64(payload)/float64(n), "payload-B/fix")
		b.ReportMetric(float64(wireBytes)/float64(n), "wire-B/fix")
	})
	b.Run("owntracks", func(b *testing.B) {
		p, _, err := golden.OwnTracksSample()
		if err != nil {
			b.Fatal(err)
		}
		otTopic := topic.OwnTracksTopic("c0123456789abcdefghi", "phone")
		for i := 0; i < b.N; i++ {
			_ = PublishPacketSize(otTopic, len(p), 1)
		}
		b.ReportMetric(float64(len(p)), "payload-B/fix")
		b.ReportMetric(float64(PublishPacketSize(otTopic, len(p), 1)), "wire-B/fix")
	})
}
