package link

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/tawsil/tawsil/agent/internal/outbox"
	"github.com/tawsil/tawsil/shared/profile"
	"github.com/tawsil/tawsil/shared/topic"
	"github.com/tawsil/tawsil/shared/wire"
)

// TestLinkHoldsLiveFixes runs the link against an embedded broker with a
// publish delay far longer than the test: fresh fixes leave only as a full
// batch_max batch, at once while a task is active (task_publish_delay_s 0),
// or when the link is flushed, each time as one message on the compact
// topic.
func TestLinkHoldsLiveFixes(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := mochi.New(&mochi.Options{InlineClient: true, Logger: slog.New(slog.DiscardHandler)})
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		t.Fatal(err)
	}
	if err := srv.AddListener(listeners.NewNet("t", ln)); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var batches [][]uint64
	err = srv.Subscribe(topic.CompactFilter(topic.DefaultPrefix), 1, func(_ *mochi.Client, _ packets.Subscription, pk packets.Packet) {
		fixes, err := wire.DecodeBatch(pk.Payload)
		if err != nil {
			t.Errorf("bad message on %s: %v", pk.TopicName, err)
			return
		}
		var seqs []uint64
		for _, f := range fixes {
			seqs = append(seqs, f.Seq)
		}
		mu.Lock()
		batches = append(batches, seqs)
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
	p.MQTT.BatchMax = 5
	p.MQTT.MaxPublishDelayS = 60
	atOnce := 0.0
	p.MQTT.TaskPublishDelayS = &atOnce // on a task: each fix at once
	box := outbox.NewMemory(1000, 0)
	l, err := New(Config{Broker: "tcp://" + ln.Addr().String(), ClientID: "dev-c1", Courier: "c1", Profile: p, Compact: true}, box)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	defer func() { cancel(); <-done }()

	enqueue := func(n int) {
		for range n {
			if _, err := box.Enqueue(wire.Fix{Time: time.Now(), Lat: 33.57, Lng: -7.59, Accuracy: 5, Speed: 3, Heading: 90, Battery: 70}); err != nil {
				t.Fatal(err)
			}
			l.Kick()
		}
	}
	waitBatches := func(n int) [][]uint64 {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			mu.Lock()
			got := append([][]uint64(nil), batches...)
			mu.Unlock()
			if len(got) >= n || time.Now().After(deadline) {
				return got
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	enqueue(5) // a full batch: at once, whatever the delay
	if got := waitBatches(1); len(got) != 1 || len(got[0]) != 5 {
		t.Fatalf("batches %v, want one of 5", got)
	}
	enqueue(1) // held: the delay is 60 s...
	l.SetTaskActive(true)
	if got := waitBatches(2); len(got) != 2 || len(got[1]) != 1 || got[1][0] != 6 {
		t.Fatalf("batches %v, want [1..5] then [6] once a task is active", got)
	}
	l.SetTaskActive(false)
	enqueue(3) // held again
	l.Flush()
	if got := waitBatches(3); len(got) != 3 || len(got[2]) != 3 || got[2][0] != 7 {
		t.Fatalf("batches %v, want [1..5] [6] then [7 8 9] at the flush", got)
	}
	if st := l.Stats(); st.ConnSent == 0 || st.ConnReceived == 0 || st.ConnSent < st.WireBytes {
		t.Fatalf("connection bytes %d sent, %d received; %d B of pos PUBLISH", st.ConnSent, st.ConnReceived, st.WireBytes)
	}
}
