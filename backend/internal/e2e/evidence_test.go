package e2e

import (
	"testing"
	"time"

	"github.com/tawsil/tawsil/shared/topic"
	"github.com/tawsil/tawsil/shared/wire"
)

// TestForgedEvidenceRefused (issue 14, item 3): fixes numbered below the
// courier's current sequence skip the live speed check; the audit sent five
// of them "at the door" and got a CUSTOMER_UNAVAILABLE reported 2 km away
// verified (automatic retry_later). They are now stored as late and are
// never evidence.
func TestForgedEvidenceRefused(t *testing.T) {
	b := mustBackend(t, nil)
	admin, _ := b.login(t, adminEmail, adminPass)
	merchant := b.mustUser(t, admin, "merchant")
	dispatcher := b.mustUser(t, admin, "dispatcher")
	cd := b.mustCourierDevice(t, admin)
	now := time.Now()
	cd.seq = 1000 // numbers below are free for the forger
	cd.at(t, store, now.Add(-15*time.Minute))
	o := b.book(t, merchant, "forged-evidence", bookBody(custA, "Client"))
	b.mustStatus(t, 200, "POST", "/v1/orders/"+o.ID+"/assign", dispatcher.Token, map[string]any{"courier_id": cd.CourierID})
	b.mustStatus(t, 200, "POST", "/v1/orders/"+o.ID+"/pickup", cd.Token, nil)
	// The courier really is 2 km from the customer (its last fixes up to
	// 4 minutes ago).
	away := [2]float64{custA[0] - 0.018, custA[1]}
	for i := 0; i < 10; i++ {
		cd.at(t, away, now.Add(-10*time.Minute+time.Duration(i)*40*time.Second))
	}
	// Forged: five fixes at the door over the last 3 minutes, numbered below
	// the live one.
	var forged []wire.Fix
	for i := 0; i < 5; i++ {
		forged = append(forged, wire.Fix{Seq: uint64(2 + i), Time: now.Add(-170*time.Second + time.Duration(i)*40*time.Second).UTC().Truncate(time.Millisecond),
			Lat: custA[0], Lng: custA[1], Accuracy: 5, Speed: 0, Heading: wire.Unknown, Battery: 70})
	}
	mustPublish(t, cd.client, topic.Courier(topic.DefaultPrefix, cd.CourierID, topic.Pos), mustEncode(t, forged), false)
	eventually(t, "forged fixes stored", 10*time.Second, func() bool {
		n, err := b.Store.CountPositions(t.Context(), cd.CourierID)
		return err == nil && n == 1+10+5
	})
	r := b.mustStatus(t, 200, "POST", "/v1/orders/"+o.ID+"/fail", cd.Token,
		map[string]any{"reason": "CUSTOMER_UNAVAILABLE", "evidence": map[string]any{"call_attempts": 2}})
	var fail struct {
		Attempt struct {
			Verified bool `json:"verified"`
		} `json:"attempt"`
	}
	r.json(t, &fail)
	if fail.Attempt.Verified {
		t.Fatalf("a failed attempt 2 km from the door was verified by forged low-sequence fixes: %s", r.body)
	}
}
