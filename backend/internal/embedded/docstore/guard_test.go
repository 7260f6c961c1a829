package docstore

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"
)

const (
	guardUser = "tawsil"
	guardPass = "guard-password-0123"
)

// mustGuarded starts FerretDB (SQLite) on a private Unix socket behind a
// Guard on a loopback port and returns the guard's address.
func mustGuarded(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	sock := filepath.Join(dir, "f.sock")
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := Start(ctx, Options{DataDir: dir, Unix: sock, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &Guard{Username: guardUser, Password: guardPass, Log: log, FailDelay: time.Millisecond,
		Dial: func(ctx context.Context) (net.Conn, error) { return (&net.Dialer{}).DialContext(ctx, "unix", sock) }}
	served := make(chan error, 1)
	go func() { served <- g.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Error(err)
		}
		srv.Close()
	})
	return ln.Addr().String()
}

func mustClient(t *testing.T, uri string) *mongo.Client {
	t.Helper()
	c, err := mongo.Connect(context.Background(), options.Client().ApplyURI(uri).SetServerSelectionTimeout(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Disconnect(context.Background()) })
	return c
}

func TestGuard(t *testing.T) {
	addr := mustGuarded(t)
	ctx := context.Background()

	good := mustClient(t, "mongodb://"+guardUser+":"+guardPass+"@"+addr+"/?authMechanism=PLAIN")
	coll := good.Database("g").Collection("c")
	if _, err := coll.InsertOne(ctx, bson.M{"_id": "a", "secret": "s"}); err != nil {
		t.Fatalf("insert with the right login: %v", err)
	}
	if n, err := coll.CountDocuments(ctx, bson.M{}); err != nil || n != 1 {
		t.Fatalf("count = %d, %v", n, err)
	}

	anon := mustClient(t, "mongodb://"+addr+"/")
	if err := anon.Ping(ctx, nil); err != nil {
		t.Fatalf("ping is allowed before login (monitoring): %v", err)
	}
	err := anon.Database("g").Collection("c").FindOne(ctx, bson.M{}).Err()
	var ce mongo.CommandError
	if !errors.As(err, &ce) || ce.Code != 13 {
		t.Fatalf("find without login = %v, want Unauthorized (13)", err)
	}
	if _, err := anon.Database("g").Collection("c").InsertOne(ctx, bson.M{"x": 1}); err == nil {
		t.Fatal("insert without login accepted")
	}

	for name, uri := range map[string]string{
		"password": "mongodb://" + guardUser + ":wrong-password-0000@" + addr + "/?authMechanism=PLAIN",
		"user":     "mongodb://admin:" + guardPass + "@" + addr + "/?authMechanism=PLAIN",
		"scram":    "mongodb://" + guardUser + ":" + guardPass + "@" + addr + "/",
	} {
		t.Run(name, func(t *testing.T) {
			bad := mustClient(t, uri)
			if err := bad.Ping(ctx, nil); err == nil {
				t.Fatal("login accepted")
			}
		})
	}
	if n, err := coll.CountDocuments(ctx, bson.M{}); err != nil || n != 1 {
		t.Fatalf("after refused clients: count = %d, %v", n, err)
	}
}

// TestGuardGarbage: bytes that are not the wire protocol close the
// connection; nothing reaches FerretDB.
func TestGuardGarbage(t *testing.T) {
	addr := mustGuarded(t)
	for _, give := range [][]byte{
		[]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		{0xff, 0xff, 0xff, 0x7f, 1, 2, 3, 4, 5, 6, 7, 8, 0xdd, 7, 0, 0},  // 2 GB frame
		{20, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0xdd, 7, 0, 0, 0, 0, 0, 0}, // OP_MSG without a section
	} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(give); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := c.Read(make([]byte, 64)); err == nil || n != 0 {
			t.Fatalf("%q: got %d bytes back, err %v; want the connection closed", give, n, err)
		}
		_ = c.Close()
	}
}
