package delivery

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// Every replica runs the webhook sender over one outbox: each event is
// delivered by one of them (without the claim, each replica sent each event).
func TestWebhookOneSenderPerEvent(t *testing.T) {
	w := mustWorld(t)
	ctx := context.Background()
	var mu sync.Mutex
	got := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("Tawsil-Event-Id")
		mu.Lock()
		got[id]++
		mu.Unlock()
		rw.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	replicas := []*Webhooks{NewWebhooks(w.st, true, log, nil), NewWebhooks(w.st, true, log, nil), NewWebhooks(w.st, true, log, nil)}
	if _, err := replicas[0].Register(ctx, "m1", srv.URL, []string{"order.booked"}); err != nil {
		t.Fatal(err)
	}
	const events = 20
	for range events {
		replicas[0].Enqueue(ctx, "m1", "order.booked", map[string]any{"order_id": "o"})
	}
	var wg sync.WaitGroup
	for _, r := range replicas {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.deliverDue(ctx)
		}()
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(got) != events {
		t.Fatalf("%d event ids reached the receiver, want %d", len(got), events)
	}
	for id, n := range got {
		if n != 1 {
			t.Errorf("event %s delivered %d times, want once", id, n)
		}
	}
}
