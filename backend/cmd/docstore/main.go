// Command docstore runs the embedded document store (FerretDB v1.24 on
// SQLite or PostgreSQL) as its own server, so several backend replicas share
// it through MONGODB_URI as they would share a MongoDB replica set:
//
//	MONGODB_URI='mongodb://tawsil:<password>@host:27017/?authMechanism=PLAIN'
//
// FerretDB itself listens only on a Unix socket in a private directory; the
// public listener authenticates every connection first (docstore.Guard).
//
// Environment: TAWSIL_DOCSTORE_LISTEN (default 127.0.0.1:27017),
// TAWSIL_DOCSTORE_USERNAME (default tawsil), TAWSIL_DOCSTORE_PASSWORD
// (required, ≥ 12 characters), TAWSIL_FERRET_HANDLER (sqlite|postgresql),
// TAWSIL_FERRET_PG_URL, TAWSIL_DATA_DIR (sqlite files, default ./data),
// TAWSIL_DOCSTORE_TLS_CERT and _KEY (serve TLS: PLAIN sends the password, so
// use TLS off the host), TAWSIL_LOG_LEVEL. TAWSIL_DOCSTORE_LISTEN_FD=n serves
// on an inherited listening socket instead (tests, socket activation).
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/tawsil/tawsil/backend/internal/embedded/docstore"
	"github.com/tawsil/tawsil/backend/internal/tlsconf"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "tawsil docstore:", err)
		os.Exit(1)
	}
}

func env(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func run() error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(env("TAWSIL_LOG_LEVEL", "info"))); err != nil {
		return fmt.Errorf("TAWSIL_LOG_LEVEL: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	password := os.Getenv("TAWSIL_DOCSTORE_PASSWORD")
	if len(password) < 12 {
		return errors.New("TAWSIL_DOCSTORE_PASSWORD: required, at least 12 characters")
	}
	handler := env("TAWSIL_FERRET_HANDLER", "sqlite")
	if handler == "postgresql" && os.Getenv("TAWSIL_FERRET_PG_URL") == "" {
		return errors.New("TAWSIL_FERRET_PG_URL: required with TAWSIL_FERRET_HANDLER=postgresql")
	}
	ln, err := listen()
	if err != nil {
		return err
	}
	if cert := os.Getenv("TAWSIL_DOCSTORE_TLS_CERT"); cert != "" {
		cfg, _, err := tlsconf.Server(cert, os.Getenv("TAWSIL_DOCSTORE_TLS_KEY"))
		if err != nil {
			return fmt.Errorf("TAWSIL_DOCSTORE_TLS_CERT: %w", err)
		}
		ln = tls.NewListener(ln, cfg)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	private, err := os.MkdirTemp("", "tawsil-docstore-") // 0700
	if err != nil {
		return err
	}
	defer os.RemoveAll(private)
	sock := filepath.Join(private, "ferretdb.sock")
	// FerretDB logs whole documents in its records: warnings and up only.
	ferretLog := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("component", "ferretdb")
	srv, err := docstore.Start(ctx, docstore.Options{Handler: handler, DataDir: env("TAWSIL_DATA_DIR", "./data"),
		PGURL: os.Getenv("TAWSIL_FERRET_PG_URL"), Unix: sock, Logger: ferretLog})
	if err != nil {
		return err
	}
	defer srv.Close()
	g := &docstore.Guard{Username: env("TAWSIL_DOCSTORE_USERNAME", "tawsil"), Password: password, Log: log,
		Dial: func(ctx context.Context) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}}
	log.Info("document store listening", "addr", ln.Addr().String(), "handler", handler)
	return g.Serve(ctx, ln)
}

func listen() (net.Listener, error) {
	if fd := os.Getenv("TAWSIL_DOCSTORE_LISTEN_FD"); fd != "" {
		n, err := strconv.Atoi(fd)
		if err != nil || n < 3 {
			return nil, fmt.Errorf("TAWSIL_DOCSTORE_LISTEN_FD: %q is not an inherited descriptor", fd)
		}
		ln, err := net.FileListener(os.NewFile(uintptr(n), "listener"))
		if err != nil {
			return nil, fmt.Errorf("TAWSIL_DOCSTORE_LISTEN_FD: %w", err)
		}
		return ln, nil
	}
	addr := env("TAWSIL_DOCSTORE_LISTEN", "127.0.0.1:27017")
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("TAWSIL_DOCSTORE_LISTEN %s: %w", addr, err)
	}
	return ln, nil
}
