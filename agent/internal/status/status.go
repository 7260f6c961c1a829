// Package status serves the agent's local status page: GET /status (JSON
// counters) and GET /tasks (current offers, assignments, route plan). It
// listens on loopback only: the courier's phone apps may read it, the
// network may not.
package status

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/tawsil/tawsil/agent/internal/tasks"
)

// Report is the body of GET /status.
type Report struct {
	Connected     bool   `json:"connected"`
	Courier       string `json:"courier"`
	Epoch         uint64 `json:"epoch"` // sequence epoch of the outbox file
	LastSeq       uint64 `json:"last_seq"`
	OutboxDepth   int    `json:"outbox_depth"`
	OutboxDropped uint64 `json:"outbox_dropped"` // for the profile's bound, over the file's life
	OutboxLost    uint64 `json:"outbox_lost"`    // every fix lost unsent: the bound, plus a full or failing disk since start
	OutboxDamaged int    `json:"outbox_damaged"` // damaged outbox files moved aside
	// Storage acknowledgements from the backend (with --storage-ack).
	StorageAcks     uint64 `json:"storage_acks"`
	StorageAckBytes uint64 `json:"storage_ack_bytes"` // downlink, MQTT header included
	FixesStored     uint64 `json:"fixes_stored"`      // confirmed by the backend
	FixesResent     uint64 `json:"fixes_resent"`      // broker-acknowledged, never confirmed, sent again
	Fixes           Fixes  `json:"fixes"`
	Messages        uint64 `json:"messages_published"`
	BytesSent       uint64 `json:"bytes_sent"`    // PUBLISH packets on pos, MQTT headers included
	PayloadBytes    uint64 `json:"payload_bytes"` // pos payloads only
	// Every byte of the broker connection, both ways (all MQTT packets; TLS
	// records on a TLS link; TCP/IP headers excluded).
	ConnBytesSent     uint64 `json:"conn_bytes_sent"`
	ConnBytesReceived uint64 `json:"conn_bytes_received"`
	// BytesPerFix is bytes_sent / fixes published.
	BytesPerFix  float64           `json:"bytes_per_fix"`
	Profile      string            `json:"profile"`
	LastTaskSeq  uint64            `json:"last_task_seq"`
	RouteVersion uint64            `json:"route_version,omitempty"` // of the route plan in force
	Source       string            `json:"source"`
	SourceDone   bool              `json:"source_done"`
	Skipped      map[string]uint64 `json:"source_skipped"`
	Uptime       string            `json:"uptime"`
}

// Fixes are the fix counters.
type Fixes struct {
	Read         uint64            `json:"read"`
	Accepted     uint64            `json:"accepted"`
	Suppressed   uint64            `json:"suppressed"` // valid but thinned out by the profile
	Published    uint64            `json:"published"`
	Acknowledged uint64            `json:"acknowledged"`
	Dropped      map[string]uint64 `json:"dropped"`
}

// Provider gives the live figures.
type Provider interface {
	Status() Report
	Tasks() tasks.View
}

// ErrNotLoopback refuses a listen address reachable from the network.
var ErrNotLoopback = errors.New("status address must be a loopback address")

// CheckLoopback accepts 127.0.0.0/8, ::1 and "localhost", with a port.
func CheckLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%w: %q: %v", ErrNotLoopback, addr, err)
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%w: %q", ErrNotLoopback, addr)
	}
	return nil
}

// Handler serves the two endpoints.
func Handler(p Provider) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, p.Status()) })
	mux.HandleFunc("GET /tasks", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, p.Tasks()) })
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the client went away: nothing to do
}

// Listen checks addr and binds it; Serve then serves on the listener.
func Listen(addr string) (net.Listener, error) {
	if err := CheckLoopback(addr); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("status listen: %w", err)
	}
	return ln, nil
}

// Serve serves h on ln until ctx is done.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 10 * time.Second, IdleTimeout: 60 * time.Second, MaxHeaderBytes: 8 << 10}
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(shut) // best effort at exit
	}()
	log.Info("status endpoint", "addr", ln.Addr().String())
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("status server: %w", err)
	}
	return nil
}
