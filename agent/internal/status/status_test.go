package status

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/tawsil/tawsil/agent/internal/tasks"
)

func TestCheckLoopback(t *testing.T) {
	tests := []struct {
		give string
		want error
	}{
		{give: "127.0.0.1:7070"},
		{give: "127.3.2.1:0"},
		{give: "[::1]:7070"},
		{give: "localhost:7070"},
		{give: "0.0.0.0:7070", want: ErrNotLoopback},
		{give: ":7070", want: ErrNotLoopback},
		{give: "192.168.1.20:7070", want: ErrNotLoopback},
		{give: "[::]:7070", want: ErrNotLoopback},
		{give: "example.com:7070", want: ErrNotLoopback},
		{give: "127.0.0.1", want: ErrNotLoopback},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			if err := CheckLoopback(tt.give); !errors.Is(err, tt.want) {
				t.Fatalf("CheckLoopback(%q) = %v, want %v", tt.give, err, tt.want)
			}
		})
	}
	if _, err := Listen("0.0.0.0:0"); !errors.Is(err, ErrNotLoopback) {
		t.Fatalf("Listen on all interfaces: %v, want refused", err)
	}
}

type fixed struct{}

func (fixed) Status() Report {
	return Report{Connected: true, Courier: "c42", LastSeq: 7, OutboxDepth: 2,
		Fixes: Fixes{Read: 10, Accepted: 7, Published: 5, Acknowledged: 5, Dropped: map[string]uint64{"accuracy": 3}}}
}
func (fixed) Tasks() tasks.View { return tasks.View{LastTaskSeq: 4} }

func TestHandler(t *testing.T) {
	srv := httptest.NewServer(Handler(fixed{}))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got struct {
		Connected   bool   `json:"connected"`
		Courier     string `json:"courier"`
		LastSeq     uint64 `json:"last_seq"`
		OutboxDepth int    `json:"outbox_depth"`
		Fixes       struct {
			Read, Accepted, Published, Acknowledged uint64
			Dropped                                 map[string]uint64
		} `json:"fixes"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if !got.Connected || got.Courier != "c42" || got.LastSeq != 7 || got.OutboxDepth != 2 ||
		got.Fixes.Read != 10 || got.Fixes.Acknowledged != 5 || got.Fixes.Dropped["accuracy"] != 3 {
		t.Fatalf("status body %+v", got)
	}
	post, err := http.Post(srv.URL+"/status", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	post.Body.Close()
	if post.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST /status: %d, want 405", post.StatusCode)
	}
}
