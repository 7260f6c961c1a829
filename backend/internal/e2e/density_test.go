package e2e

import (
	"fmt"
	"testing"
	"time"
)

func TestDensityAndAlerts(t *testing.T) {
	b := mustBackend(t, nil)
	admin, _ := b.login(t, adminEmail, adminPass)
	merchant := b.mustUser(t, admin, "merchant")
	dispatcher := b.mustUser(t, admin, "dispatcher")
	busy := b.mustCourierDevice(t, admin)
	busy.at(t, store, time.Now())
	idle := b.mustCourierDevice(t, admin)
	idle.at(t, [2]float64{33.5731, -7.5898}, time.Now()) // ~4 km away, another cell
	for i := 0; i < 3; i++ {
		o := b.book(t, merchant, fmt.Sprintf("dens-%d", i), bookBody(custB, "Brahim"))
		b.mustStatus(t, 200, "POST", "/v1/orders/"+o.ID+"/assign", dispatcher.Token, map[string]any{"courier_id": busy.CourierID})
	}
	var fc struct {
		Type     string `json:"type"`
		Features []struct {
			Geometry struct {
				Type        string         `json:"type"`
				Coordinates [][][2]float64 `json:"coordinates"`
			} `json:"geometry"`
			Properties map[string]any `json:"properties"`
		} `json:"features"`
	}
	r := b.mustStatus(t, 200, "GET", "/v1/density?res=8&bbox=-7.70,33.50,-7.50,33.65", dispatcher.Token, nil)
	r.json(t, &fc)
	var storeCell map[string]any
	for _, f := range fc.Features {
		if f.Geometry.Type != "Polygon" || len(f.Geometry.Coordinates[0]) != 7 {
			t.Fatalf("feature geometry: %+v", f.Geometry)
		}
		if f.Properties["open_orders"].(float64) > 0 {
			storeCell = f.Properties
		}
	}
	if fc.Type != "FeatureCollection" || storeCell == nil || storeCell["open_orders"] != 3.0 || storeCell["booked_15m"] != 3.0 ||
		storeCell["busy_couriers"] != 1.0 || storeCell["available_couriers"] != 0.0 {
		t.Fatalf("density: %s", r.body)
	}
	for _, k := range []string{"cell", "available_couriers", "busy_couriers", "open_orders", "booked_15m", "booked_60m", "failed_60m"} {
		if _, ok := storeCell[k]; !ok {
			t.Fatalf("property %s missing: %v", k, storeCell)
		}
	}
	// A bbox elsewhere holds nothing; a bad bbox is refused.
	r = b.mustStatus(t, 200, "GET", "/v1/density?bbox=-5.9,35.7,-5.7,35.8", dispatcher.Token, nil)
	r.json(t, &fc)
	if len(fc.Features) != 0 {
		t.Fatalf("Tanger bbox: %s", r.body)
	}
	b.mustStatus(t, 400, "GET", "/v1/density?bbox=1,2,3", dispatcher.Token, nil)
	b.mustStatus(t, 400, "GET", "/v1/density?res=12", dispatcher.Token, nil)

	// The store's cell is under-supplied; the idle courier is proposed.
	r = b.mustStatus(t, 200, "GET", "/v1/density/alerts", dispatcher.Token, nil)
	var al struct {
		Alerts []struct {
			Cell        string `json:"cell"`
			Demand      int    `json:"demand"`
			NoSupply    bool   `json:"no_supply"`
			NearestIdle []struct {
				ID string `json:"id"`
			} `json:"nearest_idle_couriers"`
		} `json:"alerts"`
	}
	r.json(t, &al)
	if len(al.Alerts) != 1 || al.Alerts[0].Cell != storeCell["cell"] || !al.Alerts[0].NoSupply || al.Alerts[0].Demand != 6 ||
		len(al.Alerts[0].NearestIdle) != 1 || al.Alerts[0].NearestIdle[0].ID != idle.CourierID {
		t.Fatalf("alerts: %s", r.body)
	}
	b.mustStatus(t, 403, "GET", "/v1/density/alerts", merchant.Token, nil)
}
