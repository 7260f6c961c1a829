// Package docstore runs FerretDB in-process (SQLite or PostgreSQL handler) and
// serves the MongoDB wire protocol on a Unix socket in a private (0700)
// directory, so the backend reaches it through the same mongo driver code
// path as a real MongoDB and no other local user can: FerretDB v1 has no
// authentication of its own, and a loopback TCP port is open to every
// process on the machine (password hashes, webhook secrets, customer data).
package docstore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
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
	sock   string
	tmpDir string // socket directory to remove at Close, when DataDir was too deep
	cancel context.CancelFunc
	done   chan struct{}
}

// Options choose the handler and where data lives.
type Options struct {
	Handler string // "sqlite" (default) or "postgresql"
	DataDir string // sqlite: directory for the database files
	PGURL   string // postgresql: connection URL
	// Unix, if set, is the socket path to listen on (the caller puts it in a
	// directory only this user can enter). Otherwise a socket in
	// DataDir/ferretdb, made 0700.
	Unix   string
	Logger *slog.Logger
}

// Start starts FerretDB on a Unix socket: Options.Unix, or one under
// DataDir/ferretdb (mode 0700), or under a private temporary directory when
// that path cannot be a socket address (too long, or upper-case letters the
// driver would lower). Never on TCP. FerretDB logs every error reply at
// length; give it a logger at warning level or above.
func Start(ctx context.Context, o Options) (*Server, error) {
	dir, err := filepath.Abs(filepath.Join(o.DataDir, "ferretdb"))
	if err != nil {
		return nil, err
	}
	if err := privateDir(dir); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	cfg := &ferretdb.Config{Logger: o.Logger, Handler: o.Handler}
	switch o.Handler {
	case "", "sqlite":
		cfg.Handler = "sqlite"
		cfg.SQLiteURL = "file:" + dir + "/"
	case "postgresql":
		cfg.PostgreSQLURL = o.PGURL
	default:
		return nil, fmt.Errorf("ferretdb handler %q", o.Handler)
	}
	s := &Server{done: make(chan struct{})}
	sockDir := dir
	switch {
	case o.Unix != "":
		s.sock = o.Unix
	case !sockOK(filepath.Join(dir, sockName)):
		if sockDir, err = os.MkdirTemp("", "tawsil-docstore-"); err != nil { // created 0700
			return nil, fmt.Errorf("socket dir: %w", err)
		}
		s.tmpDir = sockDir
	}
	if s.sock == "" {
		s.sock = filepath.Join(sockDir, sockName)
	}
	if o.Unix == "" && !sockOK(s.sock) {
		s.removeTmp()
		return nil, fmt.Errorf("no usable socket path (%s): set TMPDIR to a short, lower-case directory", s.sock)
	}
	// A socket left by a killed process would make the listen fail; only
	// this user can enter its directory, so a socket there is stale.
	if fi, err := os.Lstat(s.sock); err == nil && fi.Mode()&fs.ModeSocket != 0 {
		if err := os.Remove(s.sock); err != nil {
			s.removeTmp()
			return nil, fmt.Errorf("stale socket: %w", err)
		}
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.removeTmp()
		return nil, fmt.Errorf("socket path: %w", err)
	}
	cfg.Listener = ferretdb.ListenerConfig{Unix: s.sock}
	f, err := ferretdb.New(cfg)
	if err != nil {
		s.removeTmp()
		return nil, fmt.Errorf("start ferretdb: %w", err)
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	go func() {
		defer close(s.done)
		_ = f.Run(rctx)
	}()
	// The mongo driver takes a socket path percent-encoded as the host.
	s.uri = "mongodb://" + url.PathEscape(s.sock) + "/"
	if err := waitSocket(ctx, s.sock); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

const (
	sockName    = "mongodb.sock"
	maxSockPath = 100 // sun_path is 108 bytes on Linux, 104 on the BSDs
)

// sockOK reports whether path can be a socket address the mongo driver
// dials as given: short enough, and in lower case (the driver lower-cases
// host names, socket paths included).
func sockOK(path string) bool {
	return len(path) <= maxSockPath && strings.ToLower(path) == path
}

// privateDir creates dir (and parents) and makes dir itself 0700, whatever
// mode it had.
func privateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return os.Chmod(dir, 0o700)
}

// Socket is the path of the Unix socket the server listens on.
func (s *Server) Socket() string { return s.sock }

func (s *Server) removeTmp() {
	if s.tmpDir != "" {
		_ = os.RemoveAll(s.tmpDir)
	}
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
	s.removeTmp()
}

func waitSocket(ctx context.Context, path string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := net.DialTimeout("unix", path, 200*time.Millisecond)
		if err == nil {
			return conn.Close()
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("ferretdb did not listen on %s: %w", path, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
