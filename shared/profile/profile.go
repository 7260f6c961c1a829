// Package profile defines a device profile: how often a handheld reads and
// sends GPS, how it filters, how it talks MQTT, how much it buffers, and how it
// saves battery. The agent loads one from YAML (firmware-configs/); the backend
// can push one as JSON on the courier's config topic.
package profile

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Profile is one device profile. Field names are the YAML/JSON keys.
type Profile struct {
	Name        string  `json:"name" yaml:"name"`
	Description string  `json:"description,omitempty" yaml:"description,omitempty"`
	GPS         GPS     `json:"gps" yaml:"gps"`
	Filter      Filter  `json:"filter" yaml:"filter"`
	MQTT        MQTT    `json:"mqtt" yaml:"mqtt"`
	Outbox      Outbox  `json:"outbox" yaml:"outbox"`
	Battery     Battery `json:"battery" yaml:"battery"`
}

// GPS says how the receiver is read and which fixes are believable.
type GPS struct {
	ReadIntervalS float64 `json:"read_interval_s" yaml:"read_interval_s"` // sampling period of the source
	MaxAccuracyM  float64 `json:"max_accuracy_m" yaml:"max_accuracy_m"`   // worse fixes are dropped
	MaxSpeedMPS   float64 `json:"max_speed_mps" yaml:"max_speed_mps"`     // faster jumps are impossible
	MaxFixAgeS    float64 `json:"max_fix_age_s" yaml:"max_fix_age_s"`     // older fixes (vs device clock) are stale
}

// Filter decides which valid fixes are worth sending.
type Filter struct {
	MinIntervalS        float64 `json:"min_interval_s" yaml:"min_interval_s"`                 // never more often than this
	MaxIntervalS        float64 `json:"max_interval_s" yaml:"max_interval_s"`                 // while moving, at least this often
	MinDistanceM        float64 `json:"min_distance_m" yaml:"min_distance_m"`                 // send when moved this far
	MinHeadingChangeDeg float64 `json:"min_heading_change_deg" yaml:"min_heading_change_deg"` // send on a turn this sharp
	StillSpeedMPS       float64 `json:"still_speed_mps" yaml:"still_speed_mps"`               // slower counts as still
	StillHeartbeatS     float64 `json:"still_heartbeat_s" yaml:"still_heartbeat_s"`           // a still courier reports this often
}

// MQTT tunes the connection.
type MQTT struct {
	KeepAliveS    int     `json:"keepalive_s" yaml:"keepalive_s"`
	BatchMax      int     `json:"batch_max" yaml:"batch_max"`               // fixes per message when draining a backlog
	DrainMsgsPerS float64 `json:"drain_msgs_per_s" yaml:"drain_msgs_per_s"` // message rate while draining
	MaxInFlight   int     `json:"max_in_flight" yaml:"max_in_flight"`       // unacknowledged messages at once
	ReconnectMinS float64 `json:"reconnect_min_s" yaml:"reconnect_min_s"`
	ReconnectMaxS float64 `json:"reconnect_max_s" yaml:"reconnect_max_s"`
	// MaxPublishDelayS holds live fixes up to this long so that they travel
	// together: at 1 fix/s, 5 s makes messages of 5 fixes and divides the
	// bytes per fix by about four. 0 (or absent): each fix at once.
	MaxPublishDelayS float64 `json:"max_publish_delay_s,omitempty" yaml:"max_publish_delay_s,omitempty"`
	// TaskPublishDelayS replaces MaxPublishDelayS while the courier has an
	// accepted assignment (0: each fix at once); absent: the same delay.
	TaskPublishDelayS *float64 `json:"task_publish_delay_s,omitempty" yaml:"task_publish_delay_s,omitempty"`
}

// MaxPublishDelayLimitS bounds the publish delays of a profile.
const MaxPublishDelayLimitS = 60

// PublishDelay is how long live fixes may wait to be published, with or
// without an active task.
func (m MQTT) PublishDelay(taskActive bool) time.Duration {
	d := m.MaxPublishDelayS
	if taskActive && m.TaskPublishDelayS != nil {
		d = *m.TaskPublishDelayS
	}
	return time.Duration(d * float64(time.Second))
}

// Outbox bounds the on-disk buffer.
type Outbox struct {
	MaxFixes int `json:"max_fixes" yaml:"max_fixes"` // when full, the oldest fix is dropped (and counted)
}

// Battery trades freshness for battery life.
type Battery struct {
	LowPercent        int     `json:"low_percent" yaml:"low_percent"`
	LowIntervalFactor float64 `json:"low_interval_factor" yaml:"low_interval_factor"` // multiplies the filter intervals when low
}

// Default is a sensible profile for a mid-range Android handheld on a scooter.
func Default() Profile {
	return Profile{
		Name:        "default",
		Description: "built-in default: mid-range Android handheld, scooter courier",
		GPS:         GPS{ReadIntervalS: 1, MaxAccuracyM: 50, MaxSpeedMPS: 45, MaxFixAgeS: 30},
		Filter: Filter{MinIntervalS: 2, MaxIntervalS: 15, MinDistanceM: 30, MinHeadingChangeDeg: 30,
			StillSpeedMPS: 0.7, StillHeartbeatS: 120},
		MQTT: MQTT{KeepAliveS: 60, BatchMax: 100, DrainMsgsPerS: 5, MaxInFlight: 20, ReconnectMinS: 1, ReconnectMaxS: 120,
			MaxPublishDelayS: 5},
		Outbox:  Outbox{MaxFixes: 50000},
		Battery: Battery{LowPercent: 15, LowIntervalFactor: 2},
	}
}

// ErrInvalid wraps every validation failure; the message names the field.
var ErrInvalid = errors.New("invalid profile")

// Validate checks the semantic rules that a JSON Schema cannot express alone,
// naming the first offending field.
func (p Profile) Validate() error {
	bad := func(field string, format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrInvalid, field, fmt.Sprintf(format, args...))
	}
	switch {
	case p.Name == "":
		return bad("name", "required")
	case p.GPS.ReadIntervalS <= 0 || p.GPS.ReadIntervalS > 60:
		return bad("gps.read_interval_s", "must be in (0, 60], got %v", p.GPS.ReadIntervalS)
	case p.GPS.MaxAccuracyM <= 0:
		return bad("gps.max_accuracy_m", "must be > 0, got %v", p.GPS.MaxAccuracyM)
	case p.GPS.MaxSpeedMPS <= 0 || p.GPS.MaxSpeedMPS > 100:
		return bad("gps.max_speed_mps", "must be in (0, 100], got %v", p.GPS.MaxSpeedMPS)
	case p.GPS.MaxFixAgeS <= 0:
		return bad("gps.max_fix_age_s", "must be > 0, got %v", p.GPS.MaxFixAgeS)
	case p.Filter.MinIntervalS < 0:
		return bad("filter.min_interval_s", "must be >= 0, got %v", p.Filter.MinIntervalS)
	case p.Filter.MaxIntervalS < p.Filter.MinIntervalS || p.Filter.MaxIntervalS <= 0:
		return bad("filter.max_interval_s", "must be > 0 and >= filter.min_interval_s, got %v", p.Filter.MaxIntervalS)
	case p.Filter.MinDistanceM < 0:
		return bad("filter.min_distance_m", "must be >= 0, got %v", p.Filter.MinDistanceM)
	case p.Filter.MinHeadingChangeDeg < 0 || p.Filter.MinHeadingChangeDeg > 180:
		return bad("filter.min_heading_change_deg", "must be in [0, 180], got %v", p.Filter.MinHeadingChangeDeg)
	case p.Filter.StillSpeedMPS < 0:
		return bad("filter.still_speed_mps", "must be >= 0, got %v", p.Filter.StillSpeedMPS)
	case p.Filter.StillHeartbeatS < p.Filter.MaxIntervalS:
		return bad("filter.still_heartbeat_s", "must be >= filter.max_interval_s, got %v", p.Filter.StillHeartbeatS)
	case p.MQTT.KeepAliveS < 5 || p.MQTT.KeepAliveS > 1200:
		return bad("mqtt.keepalive_s", "must be in [5, 1200], got %d", p.MQTT.KeepAliveS)
	case p.MQTT.BatchMax < 1 || p.MQTT.BatchMax > 500:
		return bad("mqtt.batch_max", "must be in [1, 500], got %d", p.MQTT.BatchMax)
	case p.MQTT.DrainMsgsPerS <= 0:
		return bad("mqtt.drain_msgs_per_s", "must be > 0, got %v", p.MQTT.DrainMsgsPerS)
	case p.MQTT.MaxInFlight < 1 || p.MQTT.MaxInFlight > 1000:
		return bad("mqtt.max_in_flight", "must be in [1, 1000], got %d", p.MQTT.MaxInFlight)
	case p.MQTT.ReconnectMinS <= 0 || p.MQTT.ReconnectMaxS < p.MQTT.ReconnectMinS:
		return bad("mqtt.reconnect_max_s", "must be >= mqtt.reconnect_min_s > 0, got %v/%v", p.MQTT.ReconnectMinS, p.MQTT.ReconnectMaxS)
	case p.MQTT.MaxPublishDelayS < 0 || p.MQTT.MaxPublishDelayS > MaxPublishDelayLimitS:
		return bad("mqtt.max_publish_delay_s", "must be in [0, %d], got %v", MaxPublishDelayLimitS, p.MQTT.MaxPublishDelayS)
	case p.MQTT.TaskPublishDelayS != nil && (*p.MQTT.TaskPublishDelayS < 0 || *p.MQTT.TaskPublishDelayS > MaxPublishDelayLimitS):
		return bad("mqtt.task_publish_delay_s", "must be in [0, %d], got %v", MaxPublishDelayLimitS, *p.MQTT.TaskPublishDelayS)
	case p.Outbox.MaxFixes < 1000:
		return bad("outbox.max_fixes", "must be >= 1000, got %d", p.Outbox.MaxFixes)
	case p.Battery.LowPercent < 0 || p.Battery.LowPercent > 100:
		return bad("battery.low_percent", "must be in [0, 100], got %d", p.Battery.LowPercent)
	case p.Battery.LowIntervalFactor < 1:
		return bad("battery.low_interval_factor", "must be >= 1, got %v", p.Battery.LowIntervalFactor)
	}
	return nil
}

// DecodeJSON decodes a profile pushed on the config topic, refusing unknown
// fields, and validates it.
func DecodeJSON(p []byte) (Profile, error) {
	var pr Profile
	if len(p) > 64<<10 {
		return pr, fmt.Errorf("%w: too large", ErrInvalid)
	}
	dec := json.NewDecoder(bytes.NewReader(p))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&pr); err != nil {
		return pr, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return pr, pr.Validate()
}
