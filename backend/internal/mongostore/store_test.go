package mongostore_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/tawsil/tawsil/backend/internal/account"
	"github.com/tawsil/tawsil/backend/internal/embedded/docstore"
	"github.com/tawsil/tawsil/backend/internal/mongostore"
)

func mustStore(tb testing.TB) *mongostore.Store {
	tb.Helper()
	st, _ := mustStoreURI(tb)
	return st
}

// mustStoreURI starts an embedded FerretDB and opens it; uri opens it again.
func mustStoreURI(tb testing.TB) (st *mongostore.Store, uri string) {
	tb.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := docstore.Start(context.Background(), docstore.Options{DataDir: tb.TempDir(), Logger: quiet})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(srv.Close)
	return mustOpen(tb, srv.URI()), srv.URI()
}

func mustOpen(tb testing.TB, uri string) *mongostore.Store {
	tb.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := mongostore.Open(context.Background(), uri, "tawsil_test", quiet)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = st.Close(context.Background()) })
	return st
}

func TestPositionsExactlyOnce(t *testing.T) {
	st := mustStore(t)
	ctx := context.Background()
	t0 := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	batch := func(from, to uint64) []mongostore.Position {
		var ps []mongostore.Position
		for s := from; s <= to; s++ {
			ps = append(ps, mongostore.Position{CourierID: "c1", Seq: s, Lat: 33.5, Lng: -7.6, T: t0.Add(time.Duration(s) * time.Second)})
		}
		return ps
	}
	n, err := st.InsertPositions(ctx, batch(1, 10))
	if err != nil || n != 10 {
		t.Fatalf("first insert = %d, %v", n, err)
	}
	// A redelivered, overlapping batch stores only what is new.
	n, err = st.InsertPositions(ctx, batch(5, 15))
	if err != nil || n != 5 {
		t.Fatalf("overlapping insert = %d, %v; want 5 new", n, err)
	}
	if c, err := st.CountPositions(ctx, "c1"); err != nil || c != 15 {
		t.Fatalf("count = %d, %v", c, err)
	}
	track, err := st.Track(ctx, "c1", t0.Add(3*time.Second), t0.Add(6*time.Second), 100)
	if err != nil || len(track) != 4 || track[0].Seq != 3 {
		t.Fatalf("track = %+v, %v", track, err)
	}
	// A limit keeps the latest fixes of the window, still oldest first.
	latest, err := st.Track(ctx, "c1", t0, t0.Add(time.Minute), 3)
	if err != nil || len(latest) != 3 || latest[0].Seq != 13 || latest[2].Seq != 15 {
		t.Fatalf("track limit 3 = %+v, %v; want seqs 13..15", latest, err)
	}
	purged, err := st.PurgePositions(ctx, t0.Add(11*time.Second))
	if err != nil || purged != 10 {
		t.Fatalf("purge = %d, %v", purged, err)
	}
}

func TestRefreshSingleUse(t *testing.T) {
	st := mustStore(t)
	ctx := context.Background()
	now := time.Now().UTC()
	if err := st.InsertRefresh(ctx, account.RefreshToken{Hash: "h1", UserID: "u", Family: "f", ExpiresAt: now.Add(time.Hour), CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.UseRefresh(ctx, "h1", now); err != nil {
		t.Fatal(err)
	}
	if _, err := st.UseRefresh(ctx, "h1", now); !errors.Is(err, account.ErrTokenRevoked) {
		t.Fatalf("second use = %v", err)
	}
}

func TestUserUniqueEmail(t *testing.T) {
	st := mustStore(t)
	ctx := context.Background()
	u := account.User{Email: "a@tawsil.ma", Name: "A", Role: "admin", CreatedAt: time.Now()}
	if err := st.CreateUser(ctx, &u); err != nil {
		t.Fatal(err)
	}
	u2 := u
	if err := st.CreateUser(ctx, &u2); !errors.Is(err, account.ErrConflict) {
		t.Fatalf("duplicate email: %v", err)
	}
	got, err := st.UserByEmail(ctx, "a@tawsil.ma")
	if err != nil || got.ID != u.ID {
		t.Fatalf("UserByEmail = %+v, %v", got, err)
	}
	if _, err := st.UserByID(ctx, `{"$ne":null}`); !errors.Is(err, account.ErrNotFound) {
		t.Fatalf("operator-looking id: %v", err)
	}
}
