// Package tlsconf builds the server-side TLS settings of the backend's two
// listeners (the HTTPS API and the embedded MQTT broker) from PEM files, and
// the client-side trust pool used to reach an external broker.
//
// Certificates can be renewed without a restart: the returned configurations
// take their certificate from a Keypair, whose Reload re-reads the files
// (the application calls it on SIGHUP or on a timer). A failed reload keeps
// serving the previous certificate.
package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"
)

// Sentinel errors; the returned errors wrap them with the file names.
var (
	// ErrNoCertificate means a PEM file held no usable certificate.
	ErrNoCertificate = errors.New("no certificate in PEM data")
	// ErrExpired means the certificate's validity period is over (or has not begun).
	ErrExpired = errors.New("certificate not valid now")
)

// MinVersion is the oldest protocol version the listeners accept.
const MinVersion = tls.VersionTLS12

// Keypair is a certificate and its private key loaded from two PEM files,
// safe for concurrent use by TLS handshakes while Reload replaces it.
type Keypair struct {
	certFile, keyFile string
	cur               atomic.Pointer[tls.Certificate]
}

// LoadKeypair reads certFile (the leaf first, then any intermediates) and
// keyFile. It fails if the files cannot be read, the key does not match the
// certificate, or the leaf is outside its validity period.
func LoadKeypair(certFile, keyFile string) (*Keypair, error) {
	k := &Keypair{certFile: certFile, keyFile: keyFile}
	if err := k.Reload(); err != nil {
		return nil, err
	}
	return k, nil
}

// Reload re-reads the files. On error the previous certificate stays in use.
func (k *Keypair) Reload() error {
	cert, err := tls.LoadX509KeyPair(k.certFile, k.keyFile)
	if err != nil {
		return fmt.Errorf("load key pair %s, %s: %w", k.certFile, k.keyFile, err)
	}
	// Go 1.23+ fills Leaf; parse it ourselves if an older behaviour is ever seen.
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return fmt.Errorf("parse certificate %s: %w", k.certFile, err)
		}
	}
	if now := time.Now(); now.Before(cert.Leaf.NotBefore) || now.After(cert.Leaf.NotAfter) {
		return fmt.Errorf("certificate %s (valid %s to %s): %w", k.certFile,
			cert.Leaf.NotBefore.Format(time.RFC3339), cert.Leaf.NotAfter.Format(time.RFC3339), ErrExpired)
	}
	k.cur.Store(&cert)
	return nil
}

// Leaf is the certificate currently served.
func (k *Keypair) Leaf() *x509.Certificate { return k.cur.Load().Leaf }

// GetCertificate serves the current certificate; it fits tls.Config.GetCertificate.
func (k *Keypair) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return k.cur.Load(), nil
}

// Config returns a server configuration serving k with TLS 1.2 or later
// (Go's default cipher suites, which exclude the weak ones for TLS 1.2).
func (k *Keypair) Config() *tls.Config {
	return &tls.Config{MinVersion: MinVersion, GetCertificate: k.GetCertificate}
}

// Server loads certFile and keyFile and returns a server configuration for
// them together with the Keypair to reload.
func Server(certFile, keyFile string) (*tls.Config, *Keypair, error) {
	k, err := LoadKeypair(certFile, keyFile)
	if err != nil {
		return nil, nil, err
	}
	return k.Config(), k, nil
}

// CertPool reads a PEM bundle of CA certificates (to trust a broker or an
// API signed by a private CA).
func CertPool(caFile string) (*x509.CertPool, error) {
	raw, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("read CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(raw) {
		return nil, fmt.Errorf("CA file %s: %w", caFile, ErrNoCertificate)
	}
	return pool, nil
}
