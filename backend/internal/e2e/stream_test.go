package e2e

import (
	"bufio"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestDispatcherEventStream(t *testing.T) {
	b := mustBackend(t, nil)
	admin, _ := b.login(t, adminEmail, adminPass)
	merchant := b.mustUser(t, admin, "merchant")
	dispatcher := b.mustUser(t, admin, "dispatcher")
	cd := b.mustCourierDevice(t, admin)
	cd.at(t, store, time.Now())

	req, err := http.NewRequest("GET", b.base+"/v1/stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+dispatcher.Token)
	res, err := (&http.Client{}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("stream: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	events := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			if ev, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
				events <- ev
			}
		}
		close(events)
	}()
	o := b.book(t, merchant, "stream-1", bookBody(custB, "Brahim"))
	cd.waitTask(t, "offer") // auto-dispatch offers first; the dispatcher then overrides it
	b.mustStatus(t, 200, "POST", "/v1/orders/"+o.ID+"/assign", dispatcher.Token, map[string]any{"courier_id": cd.CourierID})
	want := map[string]bool{"order.booked": false, "order.offered": false, "order.assigned": false, "route.planned": false}
	deadline := time.After(10 * time.Second)
	for missing := len(want); missing > 0; {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("stream closed early")
			}
			if seen, tracked := want[ev]; tracked && !seen {
				want[ev] = true
				missing--
			}
		case <-deadline:
			t.Fatalf("events seen: %v", want)
		}
	}
	// Merchants and couriers may not listen.
	b.mustStatus(t, 403, "GET", "/v1/stream", merchant.Token, nil)
	b.mustStatus(t, 403, "GET", "/v1/stream", cd.Token, nil)
}
