package tlsconf_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"io/fs"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/tawsil/tawsil/backend/internal/tlsconf"
	"github.com/tawsil/tawsil/backend/internal/tlsconf/certtest"
)

func TestLoadKeypair(t *testing.T) {
	ca := certtest.NewCA(t)
	other := certtest.NewCA(t)
	now := time.Now()
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		certtest.WriteFile(t, p, data)
		return p
	}
	goodCert, goodKey := ca.Issue(t, now.Add(-time.Hour), now.Add(time.Hour), "127.0.0.1")
	_, otherKey := other.Issue(t, now.Add(-time.Hour), now.Add(time.Hour), "127.0.0.1")
	oldCert, oldKey := ca.Issue(t, now.Add(-48*time.Hour), now.Add(-24*time.Hour), "127.0.0.1")
	soonCert, soonKey := ca.Issue(t, now.Add(24*time.Hour), now.Add(48*time.Hour), "127.0.0.1")

	tests := []struct {
		name     string
		giveCert string
		giveKey  string
		wantErr  error // nil: loads
		wantFail bool  // fails without a sentinel (I/O, PEM, mismatch)
	}{
		{name: "valid", giveCert: write("good.crt", goodCert), giveKey: write("good.key", goodKey)},
		{name: "expired", giveCert: write("old.crt", oldCert), giveKey: write("old.key", oldKey), wantErr: tlsconf.ErrExpired},
		{name: "not yet valid", giveCert: write("soon.crt", soonCert), giveKey: write("soon.key", soonKey), wantErr: tlsconf.ErrExpired},
		{name: "missing cert", giveCert: filepath.Join(dir, "absent.crt"), giveKey: write("good2.key", goodKey), wantErr: fs.ErrNotExist},
		{name: "missing key", giveCert: write("good3.crt", goodCert), giveKey: filepath.Join(dir, "absent.key"), wantErr: fs.ErrNotExist},
		{name: "key of another cert", giveCert: write("good4.crt", goodCert), giveKey: write("other.key", otherKey), wantFail: true},
		{name: "garbage", giveCert: write("junk.crt", []byte("not pem")), giveKey: write("junk.key", []byte("junk")), wantFail: true},
		{name: "swapped", giveCert: write("good5.key", goodKey), giveKey: write("good5.crt", goodCert), wantFail: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := tlsconf.LoadKeypair(tt.giveCert, tt.giveKey)
			switch {
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
			case tt.wantFail:
				if err == nil {
					t.Fatal("loaded, want an error")
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
				if got := k.Leaf().IPAddresses; len(got) != 1 || !got[0].Equal(net.ParseIP("127.0.0.1")) {
					t.Fatalf("leaf IPs = %v", got)
				}
			}
		})
	}
}

func TestServerHandshake(t *testing.T) {
	ca := certtest.NewCA(t)
	certFile, keyFile := ca.Files(t, t.TempDir(), "server", "127.0.0.1", "api.tawsil.test")
	srv, _, err := tlsconf.Server(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		give    *tls.Config
		wantErr bool
	}{
		{name: "trusted", give: &tls.Config{RootCAs: ca.Pool(), ServerName: "api.tawsil.test"}},
		{name: "trusted ip", give: &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"}},
		{name: "system roots", give: &tls.Config{RootCAs: x509.NewCertPool(), ServerName: "api.tawsil.test"}, wantErr: true},
		{name: "wrong name", give: &tls.Config{RootCAs: ca.Pool(), ServerName: "evil.test"}, wantErr: true},
		{name: "tls 1.1", give: &tls.Config{RootCAs: ca.Pool(), ServerName: "api.tawsil.test", MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			state, err := handshake(t, srv, tt.give)
			if (err != nil) != tt.wantErr {
				t.Fatalf("handshake err = %v, want error %v", err, tt.wantErr)
			}
			if err == nil && state.Version < tls.VersionTLS12 {
				t.Fatalf("negotiated %x", state.Version)
			}
		})
	}
}

func TestReload(t *testing.T) {
	ca := certtest.NewCA(t)
	dir := t.TempDir()
	certFile, keyFile := ca.Files(t, dir, "server", "127.0.0.1")
	srv, k, err := tlsconf.Server(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	first := k.Leaf().SerialNumber

	// A renewed certificate is served after Reload, without a new tls.Config.
	ca.Files(t, dir, "server", "127.0.0.1")
	if err := k.Reload(); err != nil {
		t.Fatal(err)
	}
	second := k.Leaf().SerialNumber
	if second.Cmp(first) == 0 {
		t.Fatal("reload kept the old certificate")
	}
	state, err := handshake(t, srv, &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	if got := state.PeerCertificates[0].SerialNumber; got.Cmp(second) != 0 {
		t.Fatalf("served serial %v, want the renewed %v", got, second)
	}

	// A broken renewal is refused and the previous certificate stays.
	certtest.WriteFile(t, certFile, []byte("truncated"))
	if err := k.Reload(); err == nil {
		t.Fatal("reload of a broken file succeeded")
	}
	if k.Leaf().SerialNumber.Cmp(second) != 0 {
		t.Fatal("failed reload replaced the certificate")
	}
}

func TestCertPool(t *testing.T) {
	ca := certtest.NewCA(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "ca.pem")
	certtest.WriteFile(t, good, ca.PEM)
	empty := filepath.Join(dir, "empty.pem")
	certtest.WriteFile(t, empty, []byte("# nothing here\n"))
	tests := []struct {
		give    string
		wantErr error
	}{
		{give: good},
		{give: empty, wantErr: tlsconf.ErrNoCertificate},
		{give: filepath.Join(dir, "absent.pem"), wantErr: fs.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(filepath.Base(tt.give), func(t *testing.T) {
			pool, err := tlsconf.CertPool(tt.give)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err == nil && !pool.Equal(ca.Pool()) {
				t.Fatal("pool does not hold exactly the CA")
			}
		})
	}
}

func BenchmarkHandshake(b *testing.B) {
	ca := certtest.NewCA(b)
	certFile, keyFile := ca.Files(b, b.TempDir(), "server", "127.0.0.1")
	srv, _, err := tlsconf.Server(certFile, keyFile)
	if err != nil {
		b.Fatal(err)
	}
	cli := &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := handshake(b, srv, cli); err != nil {
			b.Fatal(err)
		}
	}
}

// handshake runs a full TLS handshake over loopback TCP (kernel buffers, so
// a failing side's alert never deadlocks against the other's flight, as it
// can over net.Pipe) and returns the client's view of it.
func handshake(tb testing.TB, srv, cli *tls.Config) (tls.ConnectionState, error) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		sc, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer sc.Close()
		done <- tls.Server(sc, srv).Handshake()
	}()
	cc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	c := tls.Client(cc, cli)
	err = c.Handshake()
	_ = cc.Close()
	if serr := <-done; err == nil && serr != nil && !errors.Is(serr, io.EOF) {
		err = serr
	}
	return c.ConnectionState(), err
}
