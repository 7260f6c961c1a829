// Package docstore runs FerretDB in-process (SQLite or PostgreSQL handler) and
// serves the MongoDB wire protocol on a loopback port, so the backend reaches
// it through the same mongo driver code path as a real MongoDB.
package docstore

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
)

// Server is a running embedded FerretDB.
type Server struct {
	uri    string
	cancel context.CancelFunc
	done   chan struct{}
}

// Options choose the handler and where data lives.
type Options struct {
	Handler string // "sqlite" (default) or "postgresql"
	DataDir string // sqlite: directory for the database files
	PGURL   string // postgresql: connection URL
	// Unix, if set, is the only listener: a Unix socket at this path (put it
	// in a directory only this user can enter). Otherwise 127.0.0.1 on a free port.
	Unix   string
	Logger *slog.Logger
}

// Start starts FerretDB on 127.0.0.1 on a free port. FerretDB logs every
// error reply at length; give it a logger at warning level or above.
func Start(ctx context.Context, o Options) (*Server, error) {
	cfg := &ferretdb.Config{Listener: ferretdb.ListenerConfig{TCP: "127.0.0.1:0"}, Logger: o.Logger, Handler: o.Handler}
	if o.Unix != "" {
		cfg.Listener = ferretdb.ListenerConfig{Unix: o.Unix}
	}
	switch o.Handler {
	case "", "sqlite":
		cfg.Handler = "sqlite"
		dir, err := filepath.Abs(filepath.Join(o.DataDir, "ferretdb"))
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("data dir: %w", err)
		}
		cfg.SQLiteURL = "file:" + dir + "/"
	case "postgresql":
		cfg.PostgreSQLURL = o.PGURL
	default:
		return nil, fmt.Errorf("ferretdb handler %q", o.Handler)
	}
	f, err := ferretdb.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("start ferretdb: %w", err)
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s := &Server{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		_ = f.Run(rctx)
	}()
	s.uri = f.MongoDBURI()
	if o.Unix != "" {
		s.uri = "mongodb://" + strings.ReplaceAll(url.PathEscape(o.Unix), "/", "%2F") + "/"
	}
	if err := waitListen(ctx, s.uri); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// URI is the mongodb:// URI of the server.
func (s *Server) URI() string { return s.uri }

// Close stops the server and waits for it.
func (s *Server) Close() {
	s.cancel()
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
	}
}

func waitListen(ctx context.Context, uri string) error {
	host := uri[len("mongodb://"):]
	for i, c := range host {
		if c == '/' || c == '?' {
			host = host[:i]
			break
		}
	}
	network := "tcp"
	if p, err := url.PathUnescape(host); err == nil && strings.HasPrefix(p, "/") {
		network, host = "unix", p
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := net.DialTimeout(network, host, 200*time.Millisecond)
		if err == nil {
			return conn.Close()
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("ferretdb did not listen on %s: %w", host, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
