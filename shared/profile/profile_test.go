package profile

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestDefaultValid(t *testing.T) {
	if err := Default().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestValidateNamesField(t *testing.T) {
	tests := []struct {
		name  string
		give  func(*Profile)
		field string
	}{
		{"name", func(p *Profile) { p.Name = "" }, "name"},
		{"read", func(p *Profile) { p.GPS.ReadIntervalS = 0 }, "gps.read_interval_s"},
		{"maxint", func(p *Profile) { p.Filter.MaxIntervalS = 1; p.Filter.MinIntervalS = 5 }, "filter.max_interval_s"},
		{"keepalive", func(p *Profile) { p.MQTT.KeepAliveS = 1 }, "mqtt.keepalive_s"},
		{"outbox", func(p *Profile) { p.Outbox.MaxFixes = 10 }, "outbox.max_fixes"},
		{"battery", func(p *Profile) { p.Battery.LowIntervalFactor = 0.5 }, "battery.low_interval_factor"},
		{"publish delay", func(p *Profile) { p.MQTT.MaxPublishDelayS = 61 }, "mqtt.max_publish_delay_s"},
		{"task delay", func(p *Profile) { d := -1.0; p.MQTT.TaskPublishDelayS = &d }, "mqtt.task_publish_delay_s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Default()
			tt.give(&p)
			err := p.Validate()
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("Validate() = %v, want error naming %s", err, tt.field)
			}
		})
	}
}

func TestDecodeJSON(t *testing.T) {
	b, err := json.Marshal(Default())
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeJSON(b)
	if err != nil || got != Default() {
		t.Fatalf("DecodeJSON = %+v, %v", got, err)
	}
	if _, err := DecodeJSON([]byte(`{"name":"x","bogus":1}`)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("unknown field accepted: %v", err)
	}
}

func TestPublishDelay(t *testing.T) {
	m := Default().MQTT
	if got := m.PublishDelay(false); got != 5*time.Second {
		t.Fatalf("default delay %v, want 5s", got)
	}
	if got := m.PublishDelay(true); got != 5*time.Second {
		t.Fatalf("task delay without task_publish_delay_s: %v, want the same 5s", got)
	}
	zero := 0.0
	m.TaskPublishDelayS = &zero
	if got := m.PublishDelay(true); got != 0 {
		t.Fatalf("task delay %v, want 0 (at once)", got)
	}
	if got := m.PublishDelay(false); got != 5*time.Second {
		t.Fatalf("idle delay %v, want 5s", got)
	}
}
