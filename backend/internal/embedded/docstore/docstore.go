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
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
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
		cfg.PostgreSQLURL = withLZ4(ctx, o.PGURL, o.Logger)
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

// withLZ4 returns the PostgreSQL URL with default_toast_compression=lz4 (a
// session setting, sent when FerretDB's connections start), when the URL
// does not choose one and the server takes it (PostgreSQL 14 and later,
// built with lz4; else the URL as given). FerretDB stores a document as one
// jsonb value: a history bucket (a few kB) is compressed when stored, and
// every index expression on it (_id, courier, times) decompresses it whole
// on insert; with PostgreSQL's default pglz that was half of PostgreSQL's
// CPU during ingest, with lz4 a tenth of it. Values stored before stay as
// they are (each names its method); reads are unchanged.
func withLZ4(ctx context.Context, raw string, log *slog.Logger) string {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return raw // a keyword/value string: left as the operator wrote it
	}
	q := u.Query()
	if q.Has(toastParam) {
		return raw
	}
	q.Set(toastParam, "lz4")
	u.RawQuery = q.Encode()
	lz4 := u.String()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	// The pool's own parameters (pool_max_conns…) are not the server's.
	cfg, err := pgxpool.ParseConfig(lz4)
	if err != nil {
		return raw
	}
	c, err := pgx.ConnectConfig(ctx, cfg.ConnConfig)
	if err != nil {
		var pe *pgconn.PgError
		// 22023 invalid_parameter_value (no lz4), 42704 undefined_object
		// (before PostgreSQL 14): the server's default it is. Anything else
		// (not reachable yet) also keeps the URL as given: FerretDB reports it.
		if errors.As(err, &pe) && (pe.Code == "22023" || pe.Code == "42704") && log != nil {
			log.Info("PostgreSQL without lz4: history buckets compressed with the server's default", "err", pe.Message)
		}
		return raw
	}
	_ = c.Close(ctx)
	return lz4
}

const toastParam = "default_toast_compression"
