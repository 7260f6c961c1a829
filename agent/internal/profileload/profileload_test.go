package profileload

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tawsil/tawsil/shared/profile"
)

// configsDir is firmware-configs/ at the repository root, relative to this
// package directory (tests run in the package directory).
const configsDir = "../../../firmware-configs"

func mustLoader(tb testing.TB) *Loader {
	tb.Helper()
	l, err := NewLoader()
	if err != nil {
		tb.Fatal(err)
	}
	return l
}

func TestEmbeddedSchemaMatchesFirmwareConfigs(t *testing.T) {
	onDisk, err := os.ReadFile(filepath.Join(configsDir, "profile.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(onDisk, Schema) {
		t.Fatal("agent/internal/profileload/profile.schema.json differs from firmware-configs/profile.schema.json: copy it over")
	}
}

func TestFirmwareConfigsAreValid(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(configsDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 3 {
		t.Fatalf("want at least 3 profiles in %s, found %d", configsDir, len(files))
	}
	l := mustLoader(t)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			p, err := l.File(f)
			if err != nil {
				t.Fatal(err)
			}
			if want := strings.TrimSuffix(filepath.Base(f), ".yaml"); p.Name != want {
				t.Fatalf("name %q, want the file name %q", p.Name, want)
			}
		})
	}
}

func TestRefusesNamingTheField(t *testing.T) {
	base, err := os.ReadFile(filepath.Join(configsDir, "rugged-android-handheld.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		give      string // replaces the first occurrence of the old line
		old       string
		wantField string
	}{
		{name: "schema type", old: "keepalive_s: 60", give: "keepalive_s: sixty", wantField: "mqtt.keepalive_s"},
		{name: "schema range", old: "max_speed_mps: 42", give: "max_speed_mps: 400", wantField: "gps.max_speed_mps"},
		{name: "schema unknown key", old: "  max_fixes: 100000", give: "  max_fixes: 100000\n  max_bytes: 5", wantField: "outbox"},
		{name: "schema missing key", old: "  low_percent: 15\n", give: "", wantField: "battery"},
		{name: "cross-field rule", old: "max_interval_s: 10", give: "max_interval_s: 1", wantField: "filter.max_interval_s"},
		{name: "heartbeat below max interval", old: "still_heartbeat_s: 90", give: "still_heartbeat_s: 5", wantField: "filter.still_heartbeat_s"},
		{name: "reconnect order", old: "reconnect_max_s: 60", give: "reconnect_max_s: 0.5", wantField: "mqtt.reconnect_max_s"},
		{name: "not yaml", old: "name: rugged-android-handheld", give: "name: [unclosed", wantField: "yaml"},
	}
	l := mustLoader(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !bytes.Contains(base, []byte(tt.old)) {
				t.Fatalf("fixture lacks %q", tt.old)
			}
			doc := bytes.Replace(base, []byte(tt.old), []byte(tt.give), 1)
			_, err := l.YAML(doc)
			if !errors.Is(err, profile.ErrInvalid) {
				t.Fatalf("err = %v, want profile.ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tt.wantField) {
				t.Fatalf("err = %q does not name %q", err, tt.wantField)
			}
		})
	}
}

func TestJSONConfigPush(t *testing.T) {
	l := mustLoader(t)
	tests := []struct {
		name    string
		give    string
		wantErr bool
	}{
		{name: "default", give: mustJSON(t, profile.Default())},
		{name: "unknown field", give: `{"name":"x","gps":{},"bogus":1}`, wantErr: true},
		{name: "garbage", give: `{"name":`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := l.JSON([]byte(tt.give))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err == nil && p != profile.Default() {
				t.Fatalf("decoded %+v, want the default", p)
			}
		})
	}
}
