package docstore

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"
)

// listeningTCP returns the inodes of this process's listening TCP sockets.
func listeningTCP(tb testing.TB) map[string]string {
	tb.Helper()
	mine := map[string]bool{}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		tb.Fatal(err)
	}
	for _, fd := range fds {
		if l, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); err == nil && strings.HasPrefix(l, "socket:[") {
			mine[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	out := map[string]string{}
	for _, f := range []string{"/proc/self/net/tcp", "/proc/self/net/tcp6"} {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			// sl local rem st ... inode (field 9); st 0A is LISTEN
			if len(fs) > 9 && fs[3] == "0A" && mine[fs[9]] {
				out[fs[9]] = fs[1]
			}
		}
		fh.Close()
	}
	return out
}

// TestOnlyTheBackendReachesTheStore: the embedded FerretDB opens no TCP
// port (audit: any local process read password hashes and made a merchant
// admin through 127.0.0.1), listens on a Unix socket in a 0700 directory,
// and the backend's driver works over it.
func TestOnlyTheBackendReachesTheStore(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	before := listeningTCP(t)
	dataDir := t.TempDir()
	if err := os.Chmod(dataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dataDir, "ferretdb"), 0o777); err != nil { // a careless earlier mode
		t.Fatal(err)
	}
	srv, err := Start(ctx, Options{DataDir: dataDir, Logger: slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError}))})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	for inode, addr := range listeningTCP(t) {
		if _, ok := before[inode]; !ok {
			t.Errorf("the store listens on TCP %s: any local user can connect", addr)
		}
	}
	if strings.Contains(srv.URI(), "127.0.0.1") || strings.Contains(srv.URI(), "localhost") {
		t.Errorf("store URI %s is a TCP address", srv.URI())
	}
	fi, err := os.Stat(filepath.Join(dataDir, "ferretdb"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("store directory mode %v, want 0700", fi.Mode().Perm())
	}
	if fi, err := os.Stat(filepath.Dir(srv.Socket())); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("socket %s not in a private directory: %v %v", srv.Socket(), fi, err)
	}
	// The backend's driver reaches it.
	cl, err := mongo.Connect(ctx, options.Client().ApplyURI(srv.URI()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Disconnect(context.Background())
	coll := cl.Database("t").Collection("c")
	if _, err := coll.InsertOne(ctx, bson.M{"_id": "a", "v": 1}); err != nil {
		t.Fatal(err)
	}
	var got bson.M
	if err := coll.FindOne(ctx, bson.M{"_id": "a"}).Decode(&got); err != nil || got["v"] != int32(1) {
		t.Fatalf("read back %v, %v", got, err)
	}
}

// TestLongDataDir: a data directory too deep for a socket address still
// gets a private socket, removed at Close.
func TestLongDataDir(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	deep := filepath.Join(t.TempDir(), strings.Repeat("d", 60), strings.Repeat("e", 60))
	srv, err := Start(ctx, Options{DataDir: deep, Logger: slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError}))})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Dir(srv.Socket()))
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("socket dir %v, %v", fi, err)
	}
	srv.Close()
	if _, err := os.Stat(filepath.Dir(srv.Socket())); !os.IsNotExist(err) {
		t.Errorf("temporary socket dir left behind: %v", err)
	}
}

// withLZ4 leaves a URL that chooses the compression, a keyword/value string
// and an unreachable server's URL as given; with a server (TAWSIL_TEST_PG_URL)
// it adds lz4, which the server then uses for the session.
func TestWithLZ4(t *testing.T) {
	ctx := context.Background()
	for _, raw := range []string{
		"postgres://u:p@127.0.0.1:5432/db?default_toast_compression=pglz&pool_max_conns=9",
		"host=127.0.0.1 user=u dbname=db",
		"postgres://u:p@127.0.0.1:1/db?sslmode=disable&pool_max_conns=9", // nothing listens on port 1
	} {
		if got := withLZ4(ctx, raw, nil); got != raw {
			t.Errorf("withLZ4(%q) = %q, want it unchanged", raw, got)
		}
	}
	raw := os.Getenv("TAWSIL_TEST_PG_URL")
	if raw == "" {
		t.Skip("TAWSIL_TEST_PG_URL not set: no PostgreSQL to ask")
	}
	sep := "?"
	if strings.Contains(raw, "?") {
		sep = "&"
	}
	got := withLZ4(ctx, raw+sep+"pool_max_conns=9", nil) // a pool parameter must not spoil the probe
	if !strings.Contains(got, "default_toast_compression=lz4") {
		t.Fatalf("withLZ4 = %q: no lz4", got)
	}
	cfg, err := pgxpool.ParseConfig(got)
	if err != nil {
		t.Fatal(err)
	}
	c, err := pgx.ConnectConfig(ctx, cfg.ConnConfig)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var v string
	if err := c.QueryRow(ctx, "SHOW default_toast_compression").Scan(&v); err != nil || v != "lz4" {
		t.Fatalf("session default_toast_compression = %q, %v", v, err)
	}
}
