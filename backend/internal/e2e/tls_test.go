package e2e

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/tawsil/tawsil/backend/internal/app"
	"github.com/tawsil/tawsil/backend/internal/config"
	"github.com/tawsil/tawsil/backend/internal/tlsconf/certtest"
	"github.com/tawsil/tawsil/shared/topic"
)

// httpsClient talks to the API over TLS, trusting only roots.
type httpsClient struct {
	base string
	c    *http.Client
}

func newHTTPSClient(base string, roots *x509.CertPool) httpsClient {
	return httpsClient{base: base, c: &http.Client{Timeout: 20 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}}}
}

func (h httpsClient) call(method, path, token string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, h.base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := h.c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	return res.StatusCode, raw, err
}

func (h httpsClient) must(tb testing.TB, want int, method, path, token string, body, dst any) {
	tb.Helper()
	status, raw, err := h.call(method, path, token, body)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, path, err)
	}
	if status != want {
		tb.Fatalf("%s %s = %d, want %d: %s", method, path, status, want, raw)
	}
	if dst != nil {
		if err := json.Unmarshal(raw, dst); err != nil {
			tb.Fatalf("decode %s: %v", raw, err)
		}
	}
}

func (h httpsClient) login(tb testing.TB, email, password string) string {
	tb.Helper()
	var out struct {
		AccessToken string `json:"access_token"`
	}
	h.must(tb, 200, "POST", "/v1/auth/login", "", map[string]string{"email": email, "password": password}, &out)
	if out.AccessToken == "" {
		tb.Fatal("login returned no access token")
	}
	return out.AccessToken
}

// TestTLS starts the backend with HTTPS and a TLS MQTT listener on a
// certificate from a private CA: clients that trust the CA get through,
// others are refused, and a device's fix over tls:// is stored.
func TestTLS(t *testing.T) {
	ca := certtest.NewCA(t)
	dir := t.TempDir()
	apiCert, apiKey := ca.Files(t, dir, "api", "127.0.0.1")
	mqttCert, mqttKey := ca.Files(t, dir, "mqtt", "127.0.0.1")
	b := mustBackend(t, func(c *config.Config) {
		c.HTTPTLSCert, c.HTTPTLSKey = apiCert, apiKey
		c.MQTTTLSCert, c.MQTTTLSKey = mqttCert, mqttKey
	})
	api := newHTTPSClient("https://"+b.HTTPAddr(), ca.Pool())

	// HTTPS: trusted CA works; an untrusting client and plain HTTP do not.
	admin := api.login(t, adminEmail, adminPass)
	var unknown x509.UnknownAuthorityError
	if _, _, err := newHTTPSClient("https://"+b.HTTPAddr(), x509.NewCertPool()).call("GET", "/healthz", "", nil); !errors.As(err, &unknown) {
		t.Fatalf("client without the CA: err = %v, want an unknown-authority error", err)
	}
	if status, _, err := (httpsClient{base: "http://" + b.HTTPAddr(), c: client}).call("GET", "/healthz", "", nil); err == nil && status == 200 {
		t.Fatal("plain HTTP served on the HTTPS port")
	}

	var u struct {
		CourierID string `json:"courier_id"`
	}
	api.must(t, 201, "POST", "/v1/users", admin, map[string]any{"email": "tls-courier@tawsil.test", "password": "password-courier-123",
		"role": "courier", "name": "TLS courier"}, &u)
	courierToken := api.login(t, "tls-courier@tawsil.test", "password-courier-123")
	var d struct {
		Username string `json:"mqtt_username"`
		Password string `json:"mqtt_password"`
		ClientID string `json:"client_id"`
	}
	api.must(t, 201, "POST", "/v1/couriers/"+u.CourierID+"/device-credentials", admin, nil, &d)
	api.must(t, 200, "POST", "/v1/me/shift", courierToken, map[string]any{"on_duty": true}, nil)

	// MQTT over TLS: without the CA, or in plain TCP, the device gets nowhere.
	if _, err := dial(t, "tls://"+b.MQTTAddr(), d.ClientID, d.Username, d.Password, func(o *paho.ClientOptions) {
		o.SetTLSConfig(&tls.Config{RootCAs: x509.NewCertPool(), MinVersion: tls.VersionTLS12})
	}); err == nil {
		t.Fatal("device connected without trusting the broker's CA")
	}
	if _, err := dial(t, "tcp://"+b.MQTTAddr(), d.ClientID, d.Username, d.Password, nil); err == nil {
		t.Fatal("plain MQTT accepted on the TLS listener")
	}
	c := mustDial(t, "tls://"+b.MQTTAddr(), d.ClientID, d.Username, d.Password, func(o *paho.ClientOptions) {
		o.SetTLSConfig(&tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12})
	})
	t0 := time.Now().Add(-time.Minute).UTC().Truncate(time.Millisecond)
	mustPublish(t, c, topic.Courier(topic.DefaultPrefix, u.CourierID, topic.Pos), mustEncode(t, fixes(1, 3, t0, 33.57, -7.59)), false)
	// The embedded broker acknowledges only once the batch is stored.
	if n, err := b.Store.CountPositions(t.Context(), u.CourierID); err != nil || n != 3 {
		t.Fatalf("stored %d positions (%v), want 3", n, err)
	}
	if lc, ok := b.Index.Get(u.CourierID); !ok || lc.Fix.Seq != 3 {
		t.Fatalf("live index %+v, %v; want seq 3", lc.Fix, ok)
	}
}

// TestTLSRefusesBadFiles checks that a backend configured with an unusable
// certificate does not start, naming the setting.
func TestTLSRefusesBadFiles(t *testing.T) {
	ca := certtest.NewCA(t)
	dir := t.TempDir()
	now := time.Now()
	oldCert, oldKey := ca.Issue(t, now.Add(-48*time.Hour), now.Add(-24*time.Hour), "127.0.0.1")
	certtest.WriteFile(t, filepath.Join(dir, "old.crt"), oldCert)
	certtest.WriteFile(t, filepath.Join(dir, "old.key"), oldKey)
	goodCert, _ := ca.Files(t, dir, "good", "127.0.0.1")
	tests := []struct {
		name string
		give func(*config.Config)
		want string
	}{
		{name: "expired api cert", give: func(c *config.Config) { c.HTTPTLSCert, c.HTTPTLSKey = dir+"/old.crt", dir+"/old.key" }, want: "TAWSIL_HTTP_TLS_CERT"},
		{name: "missing mqtt key", give: func(c *config.Config) { c.MQTTTLSCert, c.MQTTTLSKey = goodCert, dir+"/absent.key" }, want: "TAWSIL_MQTT_TLS_CERT"},
		{name: "mismatched api pair", give: func(c *config.Config) { c.HTTPTLSCert, c.HTTPTLSKey = goodCert, dir+"/old.key" }, want: "TAWSIL_HTTP_TLS_CERT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := startErr(t, tt.give)
			if err == nil || !bytes.Contains([]byte(err.Error()), []byte(tt.want)) {
				t.Fatalf("start error = %v, want one naming %s", err, tt.want)
			}
		})
	}
}

// startErr starts an embedded-mode backend with mod applied and returns the
// error of Start (stopping the backend if it did start).
func startErr(tb testing.TB, mod func(*config.Config)) error {
	tb.Helper()
	env := e2eEnv(tb)
	cfg, err := config.Load(func(k string) string { return env[k] })
	if err != nil {
		tb.Fatal(err)
	}
	mod(&cfg)
	m := app.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	m.BcryptCost = 4
	m.MQTTListener = listenLocal(tb)
	ln := listenLocal(tb)
	if err := m.Start(tb.Context(), ln); err != nil {
		return err
	}
	if err := m.Close(tb.Context()); err != nil {
		tb.Logf("close: %v", err)
	}
	return nil
}
