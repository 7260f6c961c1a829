package e2e

import (
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/tawsil/tawsil/shared/topic"
	"github.com/tawsil/tawsil/shared/wire"
)

// TestEmbeddedBrokerBurst fires bursts from many devices at once, every
// publish in flight together, and checks every fix is stored exactly once:
// ingest runs in the broker's publish hook, so no subscriber queue can
// overflow and drop messages silently.
func TestEmbeddedBrokerBurst(t *testing.T) {
	if testing.Short() {
		t.Skip("burst test")
	}
	b := mustBackend(t, nil)
	admin, _ := b.login(t, adminEmail, adminPass)
	const devices, msgs, perMsg = 20, 20, 10
	var cds []*courierDevice
	for i := 0; i < devices; i++ {
		cds = append(cds, b.mustCourierDevice(t, admin))
	}
	start := time.Now().Add(-30 * time.Minute)
	var wg sync.WaitGroup
	errs := make(chan error, devices*msgs)
	for d, cd := range cds {
		wg.Add(1)
		go func(d int, cd *courierDevice) {
			defer wg.Done()
			var toks []paho.Token
			for m := 0; m < msgs; m++ {
				fs := make([]wire.Fix, perMsg)
				for k := range fs {
					n := m*perMsg + k
					fs[k] = wire.Fix{Seq: uint64(n + 1), Time: start.Add(time.Duration(n) * time.Second), Lat: 33.55 + float64(d)*0.001 + float64(n)*0.00001,
						Lng: -7.62, Accuracy: 5, Speed: 1, Heading: 0, Battery: 90}
				}
				p, err := wire.EncodeBatch(nil, fs)
				if err != nil {
					errs <- err
					return
				}
				toks = append(toks, cd.client.Publish(topic.Courier(topic.DefaultPrefix, cd.CourierID, topic.Pos), 1, false, p))
			}
			for _, tok := range toks {
				if !tok.WaitTimeout(60*time.Second) || tok.Error() != nil {
					errs <- tok.Error()
				}
			}
		}(d, cd)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("publish: %v", err)
	}
	// Every PUBACK means stored: no waiting needed.
	for _, cd := range cds {
		n, err := b.Store.CountPositions(t.Context(), cd.CourierID)
		if err != nil || n != msgs*perMsg {
			t.Fatalf("courier %s: %d stored, want %d (%v)", cd.CourierID, n, msgs*perMsg, err)
		}
		lc, _ := b.Index.Get(cd.CourierID)
		if lc.Fix.Seq != msgs*perMsg {
			t.Fatalf("courier %s live at seq %d, want %d", cd.CourierID, lc.Fix.Seq, msgs*perMsg)
		}
	}
}
