// Package config loads the backend's configuration: defaults, then an optional
// YAML file (TAWSIL_CONFIG), then the environment. Secrets come only from the
// environment. Validate names the setting that is wrong.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is everything the backend process needs to start.
type Config struct {
	HTTPAddr       string        `yaml:"http_addr"`       // TAWSIL_HTTP_ADDR
	DataDir        string        `yaml:"data_dir"`        // TAWSIL_DATA_DIR: embedded FerretDB files
	MongoURI       string        `yaml:"-"`               // MONGODB_URI: empty → embedded FerretDB
	MongoDatabase  string        `yaml:"mongo_database"`  // TAWSIL_MONGO_DB
	FerretHandler  string        `yaml:"ferret_handler"`  // TAWSIL_FERRET_HANDLER: sqlite | postgresql
	FerretPGURL    string        `yaml:"-"`               // TAWSIL_FERRET_PG_URL (with postgresql handler)
	MQTTURL        string        `yaml:"-"`               // MQTT_URL: empty → embedded mochi broker
	MQTTListen     string        `yaml:"mqtt_listen"`     // TAWSIL_MQTT_LISTEN: embedded broker address
	MQTTUsername   string        `yaml:"-"`               // TAWSIL_MQTT_USERNAME: backend's own broker login
	MQTTPassword   string        `yaml:"-"`               // TAWSIL_MQTT_PASSWORD
	MQTTClientID   string        `yaml:"mqtt_client_id"`  // TAWSIL_MQTT_CLIENT_ID: stable per replica
	MQTTGroup      string        `yaml:"mqtt_group"`      // TAWSIL_MQTT_SHARE_GROUP: shared-subscription group
	TopicPrefix    string        `yaml:"topic_prefix"`    // TAWSIL_TOPIC_PREFIX
	JWTKeys        []JWTKey      `yaml:"-"`               // TAWSIL_JWT_SECRET or TAWSIL_JWT_KEYS
	JWTActiveKID   string        `yaml:"-"`               // TAWSIL_JWT_ACTIVE_KID
	JWTIssuer      string        `yaml:"jwt_issuer"`      // TAWSIL_JWT_ISSUER
	JWTAudience    string        `yaml:"jwt_audience"`    // TAWSIL_JWT_AUDIENCE
	AccessTTL      time.Duration `yaml:"access_ttl"`      // TAWSIL_ACCESS_TTL
	RefreshTTL     time.Duration `yaml:"refresh_ttl"`     // TAWSIL_REFRESH_TTL
	AdminEmail     string        `yaml:"-"`               // TAWSIL_ADMIN_EMAIL
	AdminPassword  string        `yaml:"-"`               // TAWSIL_ADMIN_PASSWORD
	Seed           bool          `yaml:"seed"`            // TAWSIL_SEED: create demo accounts
	TrustedProxies []string      `yaml:"trusted_proxies"` // TAWSIL_TRUSTED_PROXIES: CIDRs/IPs allowed to set X-Forwarded-For
	BodyLimit      int           `yaml:"body_limit"`      // TAWSIL_BODY_LIMIT bytes
	LogLevel       string        `yaml:"log_level"`       // TAWSIL_LOG_LEVEL: debug|info|warn|error
	NoAccessLog    bool          `yaml:"no_access_log"`   // TAWSIL_ACCESS_LOG=false: no per-request log line (load benchmarks)

	PositionsRetentionDays int           `yaml:"positions_retention_days"` // TAWSIL_POSITIONS_RETENTION_DAYS
	CashCapMAD             float64       `yaml:"cash_cap_mad"`             // TAWSIL_CASH_CAP_MAD: cash in hand over which a courier gets no cash-on-delivery offers (0: no cap)
	CustomerDataDays       int           `yaml:"customer_data_days"`       // TAWSIL_CUSTOMER_DATA_DAYS: redact customer PII on finished orders after
	HistoryFlushInterval   time.Duration `yaml:"history_flush_interval"`   // TAWSIL_HISTORY_FLUSH
	HistoryQueueMax        int           `yaml:"history_queue_max"`        // TAWSIL_HISTORY_QUEUE_MAX fixes held in memory during a store outage
	AckInterval            time.Duration `yaml:"ack_interval"`             // TAWSIL_ACK_INTERVAL: at most one storage acknowledgement per courier per interval
	StaleAfter             time.Duration `yaml:"stale_after"`              // TAWSIL_STALE_AFTER: courier offline when silent this long
	MaxFixAge              time.Duration `yaml:"max_fix_age"`              // TAWSIL_MAX_FIX_AGE: older device times are refused
	MaxFixFuture           time.Duration `yaml:"max_fix_future"`           // TAWSIL_MAX_FIX_FUTURE: device clock skew allowed
	MaxAccuracyM           float64       `yaml:"max_accuracy_m"`           // TAWSIL_MAX_ACCURACY_M
	MaxSpeedMPS            float64       `yaml:"max_speed_mps"`            // TAWSIL_MAX_SPEED_MPS between consecutive fixes
	RulesFile              string        `yaml:"rules_file"`               // TAWSIL_RULES_FILE: failed-delivery rules (empty: built-in)
	OfferTimeout           time.Duration `yaml:"offer_timeout"`            // TAWSIL_OFFER_TIMEOUT
	DispatchEvery          time.Duration `yaml:"dispatch_every"`           // TAWSIL_DISPATCH_EVERY: time between dispatch epochs
	VROOMURL               string        `yaml:"vroom_url"`                // TAWSIL_VROOM_URL: optional route optimiser
	BasemapURL             string        `yaml:"basemap_url"`              // TAWSIL_BASEMAP_URL: raster tile URL template with {z}/{x}/{y} for the console
	BasemapPMTiles         string        `yaml:"basemap_pmtiles"`          // TAWSIL_BASEMAP_PMTILES: local .pmtiles file the backend serves
	BasemapAttribution     string        `yaml:"basemap_attribution"`      // TAWSIL_BASEMAP_ATTRIBUTION: credit shown on the map
	WebhookAllowPrivate    bool          `yaml:"webhook_allow_private"`    // TAWSIL_WEBHOOK_ALLOW_PRIVATE: http:// and private addresses (on-premise, tests)

	// TLS: PEM files. Certificate and key come in pairs; empty means plain TCP.
	HTTPTLSCert string `yaml:"http_tls_cert"` // TAWSIL_HTTP_TLS_CERT: HTTPS for the API (leaf first, then intermediates)
	HTTPTLSKey  string `yaml:"http_tls_key"`  // TAWSIL_HTTP_TLS_KEY
	MQTTTLSCert string `yaml:"mqtt_tls_cert"` // TAWSIL_MQTT_TLS_CERT: TLS on the embedded broker's listener
	MQTTTLSKey  string `yaml:"mqtt_tls_key"`  // TAWSIL_MQTT_TLS_KEY
	MQTTCAFile  string `yaml:"mqtt_ca_file"`  // TAWSIL_MQTT_CA_FILE: CA bundle trusted for an external broker's tls:// URL
}

// JWTKey is one HMAC signing/verification key with its key id.
type JWTKey struct {
	KID    string
	Secret []byte
}

// Default returns the configuration used when nothing is set.
func Default() Config {
	return Config{
		HTTPAddr:               ":8080",
		DataDir:                "./data",
		MongoDatabase:          "tawsil",
		FerretHandler:          "sqlite",
		MQTTListen:             ":1883",
		MQTTClientID:           "tawsil-backend-1",
		MQTTGroup:              "tawsil-backend",
		TopicPrefix:            "tawsil/v1",
		JWTIssuer:              "tawsil",
		JWTAudience:            "tawsil-api",
		AccessTTL:              15 * time.Minute,
		RefreshTTL:             30 * 24 * time.Hour,
		BodyLimit:              256 << 10,
		LogLevel:               "info",
		PositionsRetentionDays: 30,
		CustomerDataDays:       90,
		CashCapMAD:             2000,
		HistoryFlushInterval:   100 * time.Millisecond,
		HistoryQueueMax:        200_000,
		AckInterval:            30 * time.Second,
		StaleAfter:             5 * time.Minute,
		MaxFixAge:              48 * time.Hour,
		MaxFixFuture:           2 * time.Minute,
		MaxAccuracyM:           100,
		MaxSpeedMPS:            50,
		OfferTimeout:           30 * time.Second,
		DispatchEvery:          30 * time.Second,
	}
}

// Load builds the configuration from defaults, the YAML file named by
// TAWSIL_CONFIG (if any) and the environment, then validates it.
func Load(getenv func(string) string) (Config, error) {
	c := Default()
	if path := getenv("TAWSIL_CONFIG"); path != "" {
		raw, err := os.ReadFile(path)
		if err != nil {
			return c, fmt.Errorf("TAWSIL_CONFIG: %w", err)
		}
		dec := yaml.NewDecoder(strings.NewReader(string(raw)))
		dec.KnownFields(true)
		if err := dec.Decode(&c); err != nil {
			return c, fmt.Errorf("TAWSIL_CONFIG %s: %w", path, err)
		}
	}
	// Every bad setting at once: unparsable values and invalid ones.
	return c, errors.Join(c.applyEnv(getenv), c.Validate())
}

func (c *Config) applyEnv(getenv func(string) string) error {
	str := func(name string, dst *string) {
		if v := getenv(name); v != "" {
			*dst = v
		}
	}
	var errs []error
	dur := func(name string, dst *time.Duration) {
		if v := getenv(name); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %q is not a duration (e.g. 30s, 15m)", name, v))
				return
			}
			*dst = d
		}
	}
	num := func(name string, dst *int) {
		if v := getenv(name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %q is not an integer", name, v))
				return
			}
			*dst = n
		}
	}
	flt := func(name string, dst *float64) {
		if v := getenv(name); v != "" {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %q is not a number", name, v))
				return
			}
			*dst = n
		}
	}
	str("TAWSIL_HTTP_ADDR", &c.HTTPAddr)
	str("TAWSIL_DATA_DIR", &c.DataDir)
	str("MONGODB_URI", &c.MongoURI)
	str("TAWSIL_MONGO_DB", &c.MongoDatabase)
	str("TAWSIL_FERRET_HANDLER", &c.FerretHandler)
	str("TAWSIL_FERRET_PG_URL", &c.FerretPGURL)
	str("MQTT_URL", &c.MQTTURL)
	str("TAWSIL_MQTT_LISTEN", &c.MQTTListen)
	str("TAWSIL_MQTT_USERNAME", &c.MQTTUsername)
	str("TAWSIL_MQTT_PASSWORD", &c.MQTTPassword)
	str("TAWSIL_MQTT_CLIENT_ID", &c.MQTTClientID)
	str("TAWSIL_MQTT_SHARE_GROUP", &c.MQTTGroup)
	str("TAWSIL_TOPIC_PREFIX", &c.TopicPrefix)
	str("TAWSIL_JWT_ISSUER", &c.JWTIssuer)
	str("TAWSIL_JWT_AUDIENCE", &c.JWTAudience)
	str("TAWSIL_JWT_ACTIVE_KID", &c.JWTActiveKID)
	str("TAWSIL_ADMIN_EMAIL", &c.AdminEmail)
	str("TAWSIL_ADMIN_PASSWORD", &c.AdminPassword)
	str("TAWSIL_LOG_LEVEL", &c.LogLevel)
	str("TAWSIL_RULES_FILE", &c.RulesFile)
	str("TAWSIL_VROOM_URL", &c.VROOMURL)
	str("TAWSIL_BASEMAP_URL", &c.BasemapURL)
	str("TAWSIL_BASEMAP_PMTILES", &c.BasemapPMTiles)
	str("TAWSIL_BASEMAP_ATTRIBUTION", &c.BasemapAttribution)
	str("TAWSIL_HTTP_TLS_CERT", &c.HTTPTLSCert)
	str("TAWSIL_HTTP_TLS_KEY", &c.HTTPTLSKey)
	str("TAWSIL_MQTT_TLS_CERT", &c.MQTTTLSCert)
	str("TAWSIL_MQTT_TLS_KEY", &c.MQTTTLSKey)
	str("TAWSIL_MQTT_CA_FILE", &c.MQTTCAFile)
	dur("TAWSIL_ACCESS_TTL", &c.AccessTTL)
	dur("TAWSIL_REFRESH_TTL", &c.RefreshTTL)
	dur("TAWSIL_HISTORY_FLUSH", &c.HistoryFlushInterval)
	dur("TAWSIL_STALE_AFTER", &c.StaleAfter)
	dur("TAWSIL_MAX_FIX_AGE", &c.MaxFixAge)
	dur("TAWSIL_MAX_FIX_FUTURE", &c.MaxFixFuture)
	dur("TAWSIL_OFFER_TIMEOUT", &c.OfferTimeout)
	dur("TAWSIL_DISPATCH_EVERY", &c.DispatchEvery)
	num("TAWSIL_BODY_LIMIT", &c.BodyLimit)
	num("TAWSIL_POSITIONS_RETENTION_DAYS", &c.PositionsRetentionDays)
	num("TAWSIL_CUSTOMER_DATA_DAYS", &c.CustomerDataDays)
	num("TAWSIL_HISTORY_QUEUE_MAX", &c.HistoryQueueMax)
	dur("TAWSIL_ACK_INTERVAL", &c.AckInterval)
	flt("TAWSIL_MAX_ACCURACY_M", &c.MaxAccuracyM)
	flt("TAWSIL_MAX_SPEED_MPS", &c.MaxSpeedMPS)
	flt("TAWSIL_CASH_CAP_MAD", &c.CashCapMAD)
	if v := getenv("TAWSIL_SEED"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("TAWSIL_SEED: %q is not a boolean", v))
		}
		c.Seed = b
	}
	if v := getenv("TAWSIL_ACCESS_LOG"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("TAWSIL_ACCESS_LOG: %q is not a boolean", v))
		}
		c.NoAccessLog = err == nil && !b
	}
	if v := getenv("TAWSIL_WEBHOOK_ALLOW_PRIVATE"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("TAWSIL_WEBHOOK_ALLOW_PRIVATE: %q is not a boolean", v))
		}
		c.WebhookAllowPrivate = b
	}
	if v := getenv("TAWSIL_TRUSTED_PROXIES"); v != "" {
		c.TrustedProxies = strings.Split(v, ",")
	}
	if v := getenv("TAWSIL_JWT_KEYS"); v != "" {
		// kid1:secret1,kid2:secret2 — all verify; TAWSIL_JWT_ACTIVE_KID (default: the first) signs.
		for _, part := range strings.Split(v, ",") {
			kid, secret, ok := strings.Cut(strings.TrimSpace(part), ":")
			if !ok || kid == "" {
				errs = append(errs, errors.New("TAWSIL_JWT_KEYS: each entry must be kid:secret"))
				continue
			}
			c.JWTKeys = append(c.JWTKeys, JWTKey{KID: kid, Secret: []byte(secret)})
		}
	} else if v := getenv("TAWSIL_JWT_SECRET"); v != "" {
		c.JWTKeys = []JWTKey{{KID: "k1", Secret: []byte(v)}}
	}
	if c.JWTActiveKID == "" && len(c.JWTKeys) > 0 {
		c.JWTActiveKID = c.JWTKeys[0].KID
	}
	return errors.Join(errs...)
}

// Validate reports every setting that is missing or invalid, each by its
// environment variable name, joined in one error (one line each).
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if err := validAddr(c.HTTPAddr); err != nil {
		bad("TAWSIL_HTTP_ADDR: %w", err)
	}
	if len(c.JWTKeys) == 0 {
		bad("TAWSIL_JWT_SECRET: required (or TAWSIL_JWT_KEYS=kid:secret,...): at least 32 random bytes")
	} else {
		active := false
		seen := map[string]bool{}
		for _, k := range c.JWTKeys {
			if len(k.Secret) < 32 {
				bad("TAWSIL_JWT_SECRET: key %q is %d bytes, need at least 32", k.KID, len(k.Secret))
			}
			if seen[k.KID] {
				bad("TAWSIL_JWT_KEYS: key id %q appears twice", k.KID)
			}
			seen[k.KID] = true
			active = active || k.KID == c.JWTActiveKID
		}
		if !active {
			bad("TAWSIL_JWT_ACTIVE_KID: %q is not among the configured keys", c.JWTActiveKID)
		}
	}
	if c.MongoURI != "" {
		u, err := url.Parse(c.MongoURI)
		if err != nil || (u.Scheme != "mongodb" && u.Scheme != "mongodb+srv") {
			bad("MONGODB_URI: must be a mongodb:// or mongodb+srv:// URL")
		}
	} else {
		if c.DataDir == "" {
			bad("TAWSIL_DATA_DIR: required for the embedded store")
		}
		switch c.FerretHandler {
		case "sqlite":
		case "postgresql":
			if c.FerretPGURL == "" {
				bad("TAWSIL_FERRET_PG_URL: required with TAWSIL_FERRET_HANDLER=postgresql")
			}
		default:
			bad("TAWSIL_FERRET_HANDLER: %q is not sqlite or postgresql", c.FerretHandler)
		}
	}
	if c.MQTTURL != "" {
		u, err := url.Parse(c.MQTTURL)
		if err != nil || u.Host == "" && (u.Scheme != "unix" || u.Path == "") {
			bad("MQTT_URL: must be a URL such as tcp://host:1883, tls://host:8883 or unix:///run/mosquitto.sock")
		} else {
			switch u.Scheme {
			case "tcp", "mqtt", "tls", "ssl", "mqtts", "ws", "wss", "unix":
			default:
				bad("MQTT_URL: scheme %q not supported", u.Scheme)
			}
		}
	} else if err := validAddr(c.MQTTListen); err != nil {
		bad("TAWSIL_MQTT_LISTEN: %w", err)
	}
	checks := []struct {
		wrong bool
		msg   string
	}{
		{c.MongoDatabase == "", "TAWSIL_MONGO_DB: required"},
		{c.TopicPrefix == "" || strings.ContainsAny(c.TopicPrefix, "+#") || strings.HasSuffix(c.TopicPrefix, "/"),
			"TAWSIL_TOPIC_PREFIX: must be a topic without wildcards or trailing slash"},
		{c.AccessTTL < time.Minute || c.AccessTTL > 24*time.Hour, "TAWSIL_ACCESS_TTL: must be between 1m and 24h"},
		{c.RefreshTTL < c.AccessTTL, "TAWSIL_REFRESH_TTL: must be at least TAWSIL_ACCESS_TTL"},
		{(c.AdminEmail == "") != (c.AdminPassword == ""), "TAWSIL_ADMIN_PASSWORD: TAWSIL_ADMIN_EMAIL and TAWSIL_ADMIN_PASSWORD go together"},
		{c.AdminPassword != "" && len(c.AdminPassword) < 10, "TAWSIL_ADMIN_PASSWORD: at least 10 characters"},
		{c.BodyLimit < 1024 || c.BodyLimit > 16<<20, "TAWSIL_BODY_LIMIT: must be between 1 KiB and 16 MiB"},
		{c.PositionsRetentionDays < 1, "TAWSIL_POSITIONS_RETENTION_DAYS: must be at least 1"},
		{c.CustomerDataDays < 1, "TAWSIL_CUSTOMER_DATA_DAYS: must be at least 1"},
		{c.HistoryFlushInterval <= 0 || c.HistoryFlushInterval > 10*time.Second, "TAWSIL_HISTORY_FLUSH: must be in (0, 10s]"},
		{c.AckInterval < 100*time.Millisecond || c.AckInterval > time.Minute, "TAWSIL_ACK_INTERVAL: must be between 100ms and 1m"},
		{c.HistoryQueueMax < 1000, "TAWSIL_HISTORY_QUEUE_MAX: must be at least 1000"},
		{c.StaleAfter < 10*time.Second, "TAWSIL_STALE_AFTER: must be at least 10s"},
		{c.MaxFixAge <= 0 || c.MaxFixFuture < 0, "TAWSIL_MAX_FIX_AGE: must be > 0 (and TAWSIL_MAX_FIX_FUTURE >= 0)"},
		{c.MaxAccuracyM <= 0, "TAWSIL_MAX_ACCURACY_M: must be > 0"},
		{c.MaxSpeedMPS <= 0, "TAWSIL_MAX_SPEED_MPS: must be > 0"},
		{c.CashCapMAD < 0 || c.CashCapMAD > 1_000_000 || c.CashCapMAD != float64(int64(c.CashCapMAD*100))/100, "TAWSIL_CASH_CAP_MAD: must be between 0 and 1000000 MAD, at most two decimals"},
		{c.OfferTimeout < time.Second, "TAWSIL_OFFER_TIMEOUT: must be at least 1s"},
		{c.DispatchEvery < 50*time.Millisecond || c.DispatchEvery > 10*time.Minute, "TAWSIL_DISPATCH_EVERY: must be between 50ms and 10m"},
	}
	for _, ch := range checks {
		if ch.wrong {
			errs = append(errs, errors.New(ch.msg))
		}
	}
	errs = append(errs, c.validateTLS()...)
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("TAWSIL_LOG_LEVEL: %q is not debug, info, warn or error", c.LogLevel)
	}
	for _, p := range c.TrustedProxies {
		if net.ParseIP(p) == nil {
			if _, _, err := net.ParseCIDR(p); err != nil {
				bad("TAWSIL_TRUSTED_PROXIES: %q is not an IP or CIDR", p)
			}
		}
	}
	return errors.Join(errs...)
}

// validateTLS checks that certificates and keys come in pairs and that each
// setting applies to the broker mode in use. The files are read at start.
func (c Config) validateTLS() []error {
	var errs []error
	pairs := []struct{ certVar, cert, keyVar, key string }{
		{"TAWSIL_HTTP_TLS_CERT", c.HTTPTLSCert, "TAWSIL_HTTP_TLS_KEY", c.HTTPTLSKey},
		{"TAWSIL_MQTT_TLS_CERT", c.MQTTTLSCert, "TAWSIL_MQTT_TLS_KEY", c.MQTTTLSKey},
	}
	for _, p := range pairs {
		switch {
		case p.cert != "" && p.key == "":
			errs = append(errs, fmt.Errorf("%s: required with %s", p.keyVar, p.certVar))
		case p.key != "" && p.cert == "":
			errs = append(errs, fmt.Errorf("%s: required with %s", p.certVar, p.keyVar))
		}
	}
	switch {
	case c.MQTTURL != "" && c.MQTTTLSCert != "":
		errs = append(errs, errors.New("TAWSIL_MQTT_TLS_CERT: applies to the embedded broker only; with MQTT_URL the external broker holds the certificate"))
	case c.MQTTURL == "" && c.MQTTCAFile != "":
		errs = append(errs, errors.New("TAWSIL_MQTT_CA_FILE: applies to an external broker (MQTT_URL) only"))
	}
	return errs
}

func validAddr(a string) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("%q is not host:port", a)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("%q has no valid port", a)
	}
	if host != "" && net.ParseIP(host) == nil && host != "localhost" {
		return fmt.Errorf("%q: host must be an IP address or localhost", a)
	}
	return nil
}
