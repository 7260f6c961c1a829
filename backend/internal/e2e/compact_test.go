package e2e

import (
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/tawsil/tawsil/backend/internal/config"
	"github.com/tawsil/tawsil/shared/topic"
	"github.com/tawsil/tawsil/shared/wire"
)

// TestCompactBatchAckedOnce: what the agent sends at 1 fix/s (a 5-fix
// version-3 batch on the compact position topic) goes through the embedded
// broker to the backend, is stored exactly once (a redelivery too), moves
// the live position to its newest fix at once, and is acknowledged on the
// compact ack topic after the history write. Another courier's compact
// topics stay closed.
func TestCompactBatchAckedOnce(t *testing.T) {
	b := mustBackend(t, func(c *config.Config) { c.AckInterval = 200 * time.Millisecond })
	admin, _ := b.login(t, adminEmail, adminPass)
	courier := b.mustUser(t, admin, "courier")
	dev := b.mustDevice(t, admin, courier.CourierID)
	b.mustStatus(t, 200, "POST", "/v1/me/shift", courier.Token, map[string]any{"on_duty": true})
	c, err := connect(t, b.MQTTAddr(), dev.ClientID, dev.Username, dev.Password, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var acks []wire.Ack
	ackTopic := topic.CompactCourier(topic.DefaultPrefix, courier.CourierID, topic.Ack)
	tok := c.Subscribe(ackTopic, 0, func(_ paho.Client, m paho.Message) {
		a, err := wire.DecodeAck(m.Payload())
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			t.Errorf("ack on %s: %v", m.Topic(), err)
			return
		}
		acks = append(acks, a)
	})
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil || tok.(*paho.SubscribeToken).Result()[ackTopic] == 0x80 {
		t.Fatalf("subscribe %s: %v", ackTopic, tok.Error())
	}
	acked := func(epoch, from, to uint64) bool {
		mu.Lock()
		defer mu.Unlock()
		for s := from; s <= to; s++ {
			found := false
			for _, a := range acks {
				found = found || a.Contains(epoch, s)
			}
			if !found {
				return false
			}
		}
		return true
	}

	now := time.Now().UTC().Truncate(time.Second)
	epoch := wire.NewDeviceEpoch(now.Add(-time.Hour))
	batch := make([]wire.Fix, 5)
	for i := range batch {
		batch[i] = wire.Fix{Epoch: epoch, Seq: uint64(101 + i), Time: now.Add(time.Duration(i-5) * time.Second),
			Lat: 33.5731 + float64(i)*0.00008, Lng: -7.5898 + float64(i)*0.00003, Accuracy: 6.5, Speed: 8.4, Heading: 71, Battery: 64}
	}
	payload := mustEncode(t, batch)
	if payload[0] != wire.PosVersion3 {
		t.Fatalf("the agent's batch is version %d, want 3", payload[0])
	}
	pos := topic.CompactCourier(topic.DefaultPrefix, courier.CourierID, topic.Pos)
	mustPublish(t, c, pos, payload, false)
	// The PUBACK follows the history write, so the batch is stored and live now.
	if n, err := b.Store.CountPositions(t.Context(), courier.CourierID); err != nil || n != 5 {
		t.Fatalf("stored %d, %v; want 5", n, err)
	}
	lc, _ := b.Index.Get(courier.CourierID)
	if lc.Fix.Seq != 105 || lc.Fix.Lat != batch[4].Lat {
		t.Fatalf("live fix %+v, want the batch's newest (seq 105)", lc.Fix)
	}
	eventually(t, "storage ack of 101..105 on "+ackTopic, 5*time.Second, func() bool { return acked(epoch, 101, 105) })

	// The same batch again (a re-send after a lost ack): stored once, acknowledged again.
	mu.Lock()
	acks = nil
	mu.Unlock()
	mustPublish(t, c, pos, payload, false)
	eventually(t, "second storage ack", 5*time.Second, func() bool { return acked(epoch, 101, 105) })
	if n, _ := b.Store.CountPositions(t.Context(), courier.CourierID); n != 5 {
		t.Fatalf("after the re-send stored %d, want 5", n)
	}

	// Another courier's compact topics: the ack cannot be read, a position
	// cannot be written (the device is disconnected, nothing indexed).
	other := topic.CompactCourier(topic.DefaultPrefix, "victim", topic.Ack)
	if tok := c.Subscribe(other, 0, nil); tok.WaitTimeout(5*time.Second) && tok.Error() == nil {
		if code := tok.(*paho.SubscribeToken).Result()[other]; code != 0x80 {
			t.Fatalf("subscribe %s granted: %#x", other, code)
		}
	}
	c.Publish(topic.CompactCourier(topic.DefaultPrefix, "victim", topic.Pos), 1, false, payload).WaitTimeout(2 * time.Second)
	eventually(t, "ACL violator disconnected", 5*time.Second, func() bool { return !c.IsConnectionOpen() })
	if _, ok := b.Index.Get("victim"); ok {
		t.Fatal("a foreign compact topic reached the index")
	}
}
