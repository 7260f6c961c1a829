package core

import (
	"testing"
	"time"

	"github.com/tawsil/tawsil/backend/internal/failure"
	"github.com/tawsil/tawsil/backend/internal/geo"
)

var now = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

func TestAfterFailure(t *testing.T) {
	departs := []time.Time{now.Add(5 * time.Minute), now.Add(12 * time.Minute)}
	relay := failure.Relay{ID: "r1", Name: "Hanout", Lat: 33.58, Lng: -7.63}
	tests := []struct {
		name       string
		give       failure.Decision
		allowRelay bool
		relays     []failure.Relay
		want       failure.Action
		notBefore  time.Time
		window     bool
	}{
		{"retry in an hour", failure.Decision{Action: failure.RetryLater, Params: failure.Params{RetryAfterMinutes: 60}}, false, nil, failure.RetryLater, now.Add(time.Hour), false},
		{"retry after the next stop", failure.Decision{Action: failure.RetryLater, Params: failure.Params{AfterNextStops: 1}}, false, nil, failure.RetryLater, now.Add(5 * time.Minute), false},
		{"after more stops than left", failure.Decision{Action: failure.RetryLater, Params: failure.Params{AfterNextStops: 5}}, false, nil, failure.RetryLater, now.Add(12 * time.Minute), false},
		{"the later of both", failure.Decision{Action: failure.RetryLater, Params: failure.Params{RetryAfterMinutes: 10, AfterNextStops: 1}}, false, nil, failure.RetryLater, now.Add(10 * time.Minute), false},
		{"retry at once", failure.Decision{Action: failure.RetryLater}, false, nil, failure.RetryLater, time.Time{}, false},
		{"contact", failure.Decision{Action: failure.ContactCustomer, Params: failure.Params{ReplyWindowMinutes: 20, Then: failure.ReturnToMerchant}}, false, nil, failure.ContactCustomer, now.Add(20 * time.Minute), true},
		{"relay allowed", failure.Decision{Action: failure.RelayPoint}, true, []failure.Relay{relay}, failure.RelayPoint, time.Time{}, false},
		{"relay not allowed", failure.Decision{Action: failure.RelayPoint}, false, []failure.Relay{relay}, failure.ReturnToMerchant, time.Time{}, false},
		{"no relay point", failure.Decision{Action: failure.RelayPoint}, true, nil, failure.ReturnToMerchant, time.Time{}, false},
		{"return", failure.Decision{Action: failure.ReturnToMerchant}, false, nil, failure.ReturnToMerchant, time.Time{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := AfterFailure(tt.give, Situation{Now: now, Dropoff: geo.Point{Lat: 33.58, Lng: -7.63}, AllowRelay: tt.allowRelay, Relays: tt.relays, Departs: departs})
			if got.Action != tt.want || !got.NotBefore.Equal(tt.notBefore) || (got.Window != nil) != tt.window {
				t.Fatalf("got %+v, want %s not before %v window %v", got, tt.want, tt.notBefore, tt.window)
			}
			if tt.window && !got.Window.Until.Equal(tt.notBefore) {
				t.Fatalf("window until %v", got.Window.Until)
			}
			if got.Action == failure.RelayPoint && (got.Relay == nil || got.Relay.ID != "r1") {
				t.Fatalf("relay %+v", got.Relay)
			}
		})
	}
}

func TestCloseContact(t *testing.T) {
	departs := []time.Time{now.Add(7 * time.Minute)}
	tests := []struct {
		name      string
		then      failure.Params
		how       Closing
		want      failure.Action
		notBefore time.Time
	}{
		{"reachable", failure.Params{Then: failure.ReturnToMerchant}, Reachable, failure.RetryLater, time.Time{}},
		{"no reply: return", failure.Params{Then: failure.ReturnToMerchant}, NoReply, failure.ReturnToMerchant, time.Time{}},
		{"not reachable: cancel", failure.Params{Then: failure.Cancel}, NotReachable, failure.Cancel, time.Time{}},
		{"no reply: retry in an hour", failure.Params{Then: failure.RetryLater, RetryAfterMinutes: 60}, NoReply, failure.RetryLater, now.Add(time.Hour)},
		{"no reply: retry after the next stop", failure.Params{Then: failure.RetryLater, AfterNextStops: 1}, NoReply, failure.RetryLater, now.Add(7 * time.Minute)},
		{"no reply: relay needs a dispatcher", failure.Params{Then: failure.RelayPoint}, NoReply, failure.DispatcherReview, time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := CloseContact(Window{Until: now, Then: tt.then}, tt.how, now, departs)
			if got.Action != tt.want || !got.NotBefore.Equal(tt.notBefore) {
				t.Fatalf("got %+v, want %s not before %v", got, tt.want, tt.notBefore)
			}
		})
	}
}
