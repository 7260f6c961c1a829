package agent

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/tawsil/tawsil/agent/internal/tasks"
	"github.com/tawsil/tawsil/shared/profile"
	"github.com/tawsil/tawsil/shared/topic"
	"github.com/tawsil/tawsil/shared/wire"
)

func getJSON(tb testing.TB, url string, v any) {
	tb.Helper()
	resp, err := http.Get(url)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		tb.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		tb.Fatal(err)
	}
}

// TestTasksAndConfigOverMQTT pushes a profile and task messages through the
// embedded broker and reads the result on the status endpoint.
func TestTasksAndConfigOverMQTT(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	broker := startMochi(t, ln, newReceived())
	defer broker.Close()
	a, err := New(Config{Broker: "tcp://" + ln.Addr().String(), Courier: "c-tasks", Source: "sim:rabat",
		OutboxDir: t.TempDir(), StatusAddr: "127.0.0.1:0",
		ProfilePath: filepath.Join("..", "..", "..", "firmware-configs", "linux-tracker.yaml")})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	base := "http://" + a.StatusAddr()
	waitFor(t, func() bool { var s map[string]any; getJSON(t, base+"/status", &s); return s["connected"] == true })

	pushed := profile.Default()
	pushed.Name = "pushed-by-backend"
	cfgJSON, err := json.Marshal(pushed)
	if err != nil {
		t.Fatal(err)
	}
	if err := broker.Publish(topic.Courier(topic.DefaultPrefix, "c-tasks", topic.Config), cfgJSON, true, 1); err != nil {
		t.Fatal(err)
	}
	if err := broker.Publish(topic.Courier(topic.DefaultPrefix, "c-tasks", topic.Config), []byte(`{"name":"evil","gps":{}}`), false, 1); err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Minute)
	for _, task := range []wire.Task{
		{Seq: 3, Type: wire.TaskOffer, OrderID: "o-7", ExpiresAt: &exp},
		{Seq: 4, Type: wire.TaskAssignment, OrderID: "o-8"},
		{Seq: 2, Type: wire.TaskAssignment, OrderID: "o-stale"},
		{Seq: 5, Type: wire.TaskRoutePlan, Route: &wire.Route{Version: 1, Stops: []wire.Stop{{OrderID: "o-8", Kind: wire.StopDropoff, Lat: 34.0, Lng: -6.85}}}},
	} {
		task.V, task.At = wire.MessageVersion, time.Now()
		p, err := json.Marshal(task)
		if err != nil {
			t.Fatal(err)
		}
		if err := broker.Publish(topic.Courier(topic.DefaultPrefix, "c-tasks", topic.Tasks), p, false, 1); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond) // keep the order of publication
	}
	waitFor(t, func() bool { var v tasks.View; getJSON(t, base+"/tasks", &v); return v.LastTaskSeq == 5 })
	var v tasks.View
	getJSON(t, base+"/tasks", &v)
	if len(v.Offers) != 1 || v.Offers[0].OrderID != "o-7" || len(v.Assignments) != 1 || v.Assignments[0].OrderID != "o-8" ||
		v.Route == nil || v.Route.Version != 1 {
		t.Fatalf("tasks view %+v", v)
	}
	waitFor(t, func() bool {
		var s map[string]any
		getJSON(t, base+"/status", &s)
		return s["profile"] == "pushed-by-backend"
	})
}

func waitFor(tb testing.TB, cond func() bool) {
	tb.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if cond() {
			return
		}
	}
	tb.Fatal("condition not met within 10 s")
}
