package cluster

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkClusterTransitions measures order transitions per second through
// the shared store with 3 replicas on FerretDB/PostgreSQL: each operation is a
// booking and a cancellation (2 transitions, each an order write and its
// event), sent to the replicas round-robin by 4 concurrent clients.
//
//	cd backend && TAWSIL_TEST_PG_URL=... go test -run '^$' -bench ClusterTransitions -benchtime 200x ./internal/cluster
func BenchmarkClusterTransitions(b *testing.B) {
	c := NewCluster(b, replicasWant)
	c.StartAll()
	r := c.Replicas
	admin := r[0].Login(b, adminEmail, adminPass)
	merchant := r[0].NewUser(b, admin, "merchant")
	// Couriers on shift near the store so bookings stay feasible.
	var courier User
	for i := 0; i < 8; i++ {
		courier = r[i%3].NewUser(b, admin, "courier")
		d := c.Connect(r[1], admin, courier.CourierID)
		r[2].Must(b, 200, "POST", "/v1/me/shift", courier.Token, map[string]any{"on_duty": true})
		d.At(b, darkStore[0]+0.0005*float64(i+1), darkStore[1], time.Now())
	}
	eventually(b, "couriers indexed everywhere", 15*time.Second, func() bool {
		for _, rep := range r {
			if res := rep.Do(b, "GET", "/v1/couriers/"+courier.CourierID, admin, nil); res.Status != 200 {
				return false
			}
		}
		return true
	})
	const workers = 4
	var next, failed atomic.Int64
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					return
				}
				rep := r[i%3]
				res := rep.Do(b, "POST", "/v1/orders", merchant.Token, bookBody("Bench"), "Idempotency-Key", fmt.Sprintf("bench-%d-%d", b.N, i))
				if res.Status != 201 {
					if failed.Add(1) == 1 {
						b.Logf("booking answered %d: %s", res.Status, res.Body)
					}
					continue
				}
				var o struct {
					ID string `json:"id"`
				}
				res.JSON(b, &o)
				if res := r[(i+1)%3].Do(b, "POST", "/v1/orders/"+o.ID+"/cancel", merchant.Token, map[string]any{"reason": "bench"}); res.Status != 200 {
					if failed.Add(1) == 1 {
						b.Logf("cancel answered %d: %s", res.Status, res.Body)
					}
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(2*b.N)/el.Seconds(), "transitions/s")
	b.ReportMetric(float64(failed.Load()), "failed")
}
