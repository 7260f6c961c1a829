package core

import (
	"testing"
	"time"

	"github.com/tawsil/tawsil/backend/internal/order"
	"github.com/tawsil/tawsil/backend/internal/routing"
)

func TestStopsOfRetryAfterPromise(t *testing.T) {
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	o := State{Order: &order.Order{ID: "o1", Status: order.StatusReattemptScheduled, PromiseBy: now.Add(10 * time.Minute),
		Pickup: order.Place{Lat: 33.58, Lng: -7.63}, Dropoff: order.Place{Lat: 33.59, Lng: -7.62}}}
	retry := now.Add(90 * time.Minute) // next wave: after the promise
	o.NotBefore = retry
	stops := Stops(o)
	if len(stops) != 1 || stops[0].Earliest != retry || stops[0].Latest.Before(stops[0].Earliest) {
		t.Fatalf("stops = %+v", stops)
	}
	p := routing.Problem{Start: routing.Point{Lat: 33.58, Lng: -7.63}, StartTime: now, Stops: stops, Travel: routing.DefaultTravel()}
	if err := p.Validate(); err != nil {
		t.Fatalf("a retry after the promise makes an invalid problem: %v", err)
	}
	o.NotBefore = time.Time{}
	if got := Stops(o); got[0].Latest != o.PromiseBy {
		t.Fatalf("without a retry the due time is the promise: %+v", got)
	}
}
