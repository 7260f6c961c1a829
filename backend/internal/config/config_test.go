package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const secret = "0123456789abcdef0123456789abcdef"

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestLoadDefaults(t *testing.T) {
	c, err := Load(env(map[string]string{"TAWSIL_JWT_SECRET": secret}))
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTPAddr != ":8080" || c.MQTTListen != ":1883" || c.DataDir != "./data" || c.MongoURI != "" {
		t.Fatalf("defaults not applied: %+v", c)
	}
	if c.JWTActiveKID != "k1" || string(c.JWTKeys[0].Secret) != secret {
		t.Fatalf("jwt key: %+v", c.JWTKeys)
	}
}

func TestLoadNamesBadSetting(t *testing.T) {
	tests := []struct {
		name string
		give map[string]string
		want string
	}{
		{"no secret", map[string]string{}, "TAWSIL_JWT_SECRET"},
		{"short secret", map[string]string{"TAWSIL_JWT_SECRET": "short"}, "TAWSIL_JWT_SECRET"},
		{"addr", map[string]string{"TAWSIL_JWT_SECRET": secret, "TAWSIL_HTTP_ADDR": "8080"}, "TAWSIL_HTTP_ADDR"},
		{"mongo", map[string]string{"TAWSIL_JWT_SECRET": secret, "MONGODB_URI": "http://x"}, "MONGODB_URI"},
		{"mqtt", map[string]string{"TAWSIL_JWT_SECRET": secret, "MQTT_URL": "ftp://x:1"}, "MQTT_URL"},
		{"duration", map[string]string{"TAWSIL_JWT_SECRET": secret, "TAWSIL_ACCESS_TTL": "soon"}, "TAWSIL_ACCESS_TTL"},
		{"admin pair", map[string]string{"TAWSIL_JWT_SECRET": secret, "TAWSIL_ADMIN_EMAIL": "a@b.c"}, "TAWSIL_ADMIN_PASSWORD"},
		{"retention", map[string]string{"TAWSIL_JWT_SECRET": secret, "TAWSIL_POSITIONS_RETENTION_DAYS": "0"}, "TAWSIL_POSITIONS_RETENTION_DAYS"},
		{"keys", map[string]string{"TAWSIL_JWT_KEYS": "nocolon"}, "TAWSIL_JWT_KEYS"},
		{"active kid", map[string]string{"TAWSIL_JWT_KEYS": "a:" + secret, "TAWSIL_JWT_ACTIVE_KID": "b"}, "TAWSIL_JWT_ACTIVE_KID"},
		{"handler", map[string]string{"TAWSIL_JWT_SECRET": secret, "TAWSIL_FERRET_HANDLER": "mysql"}, "TAWSIL_FERRET_HANDLER"},
		{"proxy", map[string]string{"TAWSIL_JWT_SECRET": secret, "TAWSIL_TRUSTED_PROXIES": "not-an-ip"}, "TAWSIL_TRUSTED_PROXIES"},
		{"http cert alone", map[string]string{"TAWSIL_JWT_SECRET": secret, "TAWSIL_HTTP_TLS_CERT": "a.crt"}, "TAWSIL_HTTP_TLS_KEY"},
		{"http key alone", map[string]string{"TAWSIL_JWT_SECRET": secret, "TAWSIL_HTTP_TLS_KEY": "a.key"}, "TAWSIL_HTTP_TLS_CERT"},
		{"mqtt cert alone", map[string]string{"TAWSIL_JWT_SECRET": secret, "TAWSIL_MQTT_TLS_CERT": "a.crt"}, "TAWSIL_MQTT_TLS_KEY"},
		{"mqtt key alone", map[string]string{"TAWSIL_JWT_SECRET": secret, "TAWSIL_MQTT_TLS_KEY": "a.key"}, "TAWSIL_MQTT_TLS_CERT"},
		{"mqtt cert external", map[string]string{"TAWSIL_JWT_SECRET": secret, "MQTT_URL": "tls://broker:8883",
			"TAWSIL_MQTT_TLS_CERT": "a.crt", "TAWSIL_MQTT_TLS_KEY": "a.key"}, "TAWSIL_MQTT_TLS_CERT"},
		{"ca embedded", map[string]string{"TAWSIL_JWT_SECRET": secret, "TAWSIL_MQTT_CA_FILE": "ca.pem"}, "TAWSIL_MQTT_CA_FILE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(env(tt.give))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Load() error = %v, want one naming %s", err, tt.want)
			}
		})
	}
}

func TestLoadFileThenEnv(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tawsil.yaml")
	if err := os.WriteFile(path, []byte("http_addr: \"127.0.0.1:9000\"\noffer_timeout: 45s\nstale_after: 2m\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(env(map[string]string{"TAWSIL_CONFIG": path, "TAWSIL_JWT_SECRET": secret, "TAWSIL_STALE_AFTER": "3m"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTPAddr != "127.0.0.1:9000" || c.OfferTimeout != 45*time.Second || c.StaleAfter != 3*time.Minute {
		t.Fatalf("file/env precedence wrong: %+v", c)
	}
	if err := os.WriteFile(path, []byte("bogus_key: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(env(map[string]string{"TAWSIL_CONFIG": path, "TAWSIL_JWT_SECRET": secret})); err == nil || !strings.Contains(err.Error(), "bogus_key") {
		t.Fatalf("unknown file key accepted: %v", err)
	}
}

func TestJWTRotationKeys(t *testing.T) {
	c, err := Load(env(map[string]string{"TAWSIL_JWT_KEYS": "new:" + secret + "X,old:" + secret, "TAWSIL_JWT_ACTIVE_KID": "new"}))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.JWTKeys) != 2 || c.JWTActiveKID != "new" {
		t.Fatalf("keys: %+v active %s", c.JWTKeys, c.JWTActiveKID)
	}
}

func TestLoadTLS(t *testing.T) {
	tests := []struct {
		name string
		give map[string]string
		want Config
	}{
		{name: "http and embedded broker", give: map[string]string{"TAWSIL_HTTP_TLS_CERT": "api.crt", "TAWSIL_HTTP_TLS_KEY": "api.key",
			"TAWSIL_MQTT_TLS_CERT": "mqtt.crt", "TAWSIL_MQTT_TLS_KEY": "mqtt.key"},
			want: Config{HTTPTLSCert: "api.crt", HTTPTLSKey: "api.key", MQTTTLSCert: "mqtt.crt", MQTTTLSKey: "mqtt.key"}},
		{name: "external broker", give: map[string]string{"MQTT_URL": "tls://broker:8883", "TAWSIL_MQTT_CA_FILE": "ca.pem"},
			want: Config{MQTTCAFile: "ca.pem"}},
		{name: "none", give: map[string]string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.give["TAWSIL_JWT_SECRET"] = secret
			c, err := Load(env(tt.give))
			if err != nil {
				t.Fatal(err)
			}
			if c.HTTPTLSCert != tt.want.HTTPTLSCert || c.HTTPTLSKey != tt.want.HTTPTLSKey || c.MQTTTLSCert != tt.want.MQTTTLSCert ||
				c.MQTTTLSKey != tt.want.MQTTTLSKey || c.MQTTCAFile != tt.want.MQTTCAFile {
				t.Fatalf("TLS settings = %q %q %q %q %q", c.HTTPTLSCert, c.HTTPTLSKey, c.MQTTTLSCert, c.MQTTTLSKey, c.MQTTCAFile)
			}
		})
	}
}

func TestLoadListsEveryBadSetting(t *testing.T) {
	_, err := Load(env(map[string]string{
		"TAWSIL_HTTP_ADDR":                "8080",
		"MONGODB_URI":                     "http://x",
		"TAWSIL_ACCESS_TTL":               "soon",
		"TAWSIL_POSITIONS_RETENTION_DAYS": "0",
		"TAWSIL_OFFER_TIMEOUT":            "1ms",
		"TAWSIL_LOG_LEVEL":                "loud",
		"TAWSIL_HTTP_TLS_CERT":            "a.crt",
	}))
	want := []string{"TAWSIL_HTTP_ADDR", "TAWSIL_JWT_SECRET", "MONGODB_URI", "TAWSIL_ACCESS_TTL",
		"TAWSIL_POSITIONS_RETENTION_DAYS", "TAWSIL_OFFER_TIMEOUT", "TAWSIL_LOG_LEVEL", "TAWSIL_HTTP_TLS_KEY"}
	if err == nil {
		t.Fatal("Load accepted bad settings")
	}
	for _, name := range want {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error does not name %s:\n%v", name, err)
		}
	}
	if n := strings.Count(err.Error(), "\n") + 1; n != len(want) {
		t.Errorf("%d lines, want one per bad setting (%d):\n%v", n, len(want), err)
	}
}
