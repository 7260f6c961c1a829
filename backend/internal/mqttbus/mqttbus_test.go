package mqttbus

import "testing"

// TestCourierKey: a courier's positions, states, OwnTracks and the replicas'
// notes about it go to one worker, so they are handled in arrival order.
func TestCourierKey(t *testing.T) {
	tests := []struct{ give, want string }{
		{give: "tawsil/v1/couriers/c42/pos", want: "c42"},
		{give: "tawsil/v1/couriers/c42/state", want: "c42"},
		{give: "tawsil/v1/backend/couriers/c42", want: "c42"},
		{give: "owntracks/c42/phone", want: "c42"},
		{give: "other/topic", want: "other/topic"},
	}
	for _, tt := range tests {
		if got := courierKey(tt.give); got != tt.want {
			t.Errorf("courierKey(%q) = %q, want %q", tt.give, got, tt.want)
		}
	}
}
