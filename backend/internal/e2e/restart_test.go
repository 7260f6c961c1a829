package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/tawsil/tawsil/backend/internal/config"
)

func TestRestartRebuildsLiveState(t *testing.T) {
	dir := t.TempDir()
	b1 := mustBackend(t, func(c *config.Config) { c.DataDir = dir })
	admin, _ := b1.login(t, adminEmail, adminPass)
	merchant := b1.mustUser(t, admin, "merchant")
	cd := b1.mustCourierDevice(t, admin)
	// A short ride teaches the ETA model some speeds (5 m/s, fixes 10 s apart).
	start := time.Now().Add(-2 * time.Minute)
	for i := 0; i < 6; i++ {
		cd.at(t, [2]float64{store[0] - 0.0027 + float64(i)*0.00045, store[1]}, start.Add(time.Duration(i)*10*time.Second))
	}
	cd.at(t, store, time.Now())
	learned := b1.ETA.Snapshot().Cells
	if len(learned) == 0 {
		t.Fatal("the ride taught the ETA model nothing")
	}
	o := b1.book(t, merchant, "restart-1", bookBody(custA, "Amina"))
	cd.waitTask(t, "offer")
	b1.mustStatus(t, 200, "POST", "/v1/orders/"+o.ID+"/accept", cd.Token, nil)
	before, ok := b1.Index.Get(cd.CourierID)
	if !ok || !before.HasFix {
		t.Fatal("courier not indexed before the restart")
	}
	cd.client.Disconnect(100)
	if err := b1.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	b2 := mustBackend(t, func(c *config.Config) { c.DataDir = dir })
	after, ok := b2.Index.Get(cd.CourierID)
	if !ok || !after.HasFix || after.Fix.Seq != before.Fix.Seq || after.Fix.Lat != before.Fix.Lat || !after.OnShift {
		t.Fatalf("live index not rebuilt: before %+v after %+v", before, after)
	}
	if after.Load != 1 || after.Status.String() != "busy" {
		t.Fatalf("courier load not restored: %+v", after)
	}
	if got := b2.ETA.Snapshot().Cells; len(got) != len(learned) || got[0].Samples != learned[0].Samples {
		t.Fatalf("ETA model after restart %+v, before %+v", got, learned)
	}
	// Tokens issued before the restart still work; the active order and its route are back.
	r := b2.mustStatus(t, 200, "GET", "/v1/me/tasks", cd.Token, nil)
	var tasks struct {
		Tasks []struct {
			OrderID string `json:"order_id"`
			Status  string `json:"status"`
		} `json:"tasks"`
		Route struct {
			Stops []struct {
				OrderID string `json:"order_id"`
				Kind    string `json:"kind"`
			} `json:"stops"`
		} `json:"route"`
	}
	r.json(t, &tasks)
	if len(tasks.Tasks) != 1 || tasks.Tasks[0].OrderID != o.ID || tasks.Tasks[0].Status != "assigned" || len(tasks.Route.Stops) != 2 {
		t.Fatalf("tasks after restart: %s", r.body)
	}
	// The courier is still found near the store.
	r = b2.mustStatus(t, 200, "GET", "/v1/couriers/"+cd.CourierID, admin, nil)
	if r.m(t)["status"] != "busy" {
		t.Fatalf("courier after restart: %s", r.body)
	}
}
