// Command backend runs the Tawsil backend: HTTP API, MQTT ingest, live index,
// dispatch. Configuration comes from the environment (see README, or -h).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"syscall"
	"time"

	"github.com/tawsil/tawsil/backend/internal/app"
	"github.com/tawsil/tawsil/backend/internal/config"
)

func main() {
	if os.Getenv("GOGC") == "" {
		// The ingest path allocates per message and the live heap is
		// small: at Go's default (100) the collector took a quarter of the
		// backend's CPU under saturated ingest, at 400 about a tenth, for
		// a heap of a few hundred MB at most. GOGC (and GOMEMLIMIT) in the
		// environment still decide.
		debug.SetGCPercent(gcPercent)
	}
	err := run(os.Args[1:], os.Stdout, os.Getenv)
	switch {
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case errors.Is(err, errUsage):
		os.Exit(2)
	case err != nil:
		fmt.Fprintln(os.Stderr, "tawsil backend:", err)
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

// gcPercent is the backend's GOGC when the environment sets none.
const gcPercent = 400

func run(args []string, stdout io.Writer, getenv func(string) string) error {
	fs := flag.NewFlagSet("backend", flag.ContinueOnError)
	fs.SetOutput(stdout)
	fs.Usage = func() { fmt.Fprint(stdout, config.Usage) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stdout, "unexpected argument %q\n\n%s", fs.Arg(0), config.Usage)
		return errUsage
	}
	cfg, err := config.Load(getenv)
	if err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		return err
	}
	logBuf := newLogBuffer(os.Stderr)
	defer func() { _ = logBuf.Close() }()
	log := slog.New(logHandler{Handler: slog.NewJSONHandler(logBuf, &slog.HandlerOptions{Level: level}), buf: logBuf})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ln, err := inheritedListener()
	if err != nil {
		return err
	}
	if err := servePprof(getenv("TAWSIL_PPROF_ADDR"), log); err != nil {
		return err
	}
	m := app.New(cfg, log)
	if err := m.Start(ctx, ln); err != nil {
		return err
	}
	<-ctx.Done()
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return m.Close(sctx)
}

// inheritedListener is the HTTP listener handed over by the parent process
// (TAWSIL_HTTP_LISTEN_FD=n: socket activation, the cluster tests), or nil
// to listen on TAWSIL_HTTP_ADDR.
func inheritedListener() (net.Listener, error) {
	fd := os.Getenv("TAWSIL_HTTP_LISTEN_FD")
	if fd == "" {
		return nil, nil
	}
	n, err := strconv.Atoi(fd)
	if err != nil || n < 3 {
		return nil, fmt.Errorf("TAWSIL_HTTP_LISTEN_FD: %q is not an inherited descriptor", fd)
	}
	ln, err := net.FileListener(os.NewFile(uintptr(n), "http"))
	if err != nil {
		return nil, fmt.Errorf("TAWSIL_HTTP_LISTEN_FD: %w", err)
	}
	return ln, nil
}

// servePprof serves Go's profiler (net/http/pprof) on addr, when set: for
// benchmarks (.ci/bench.sh takes a CPU profile of the saturated ingest run
// with PERF=1). Loopback addresses only: the profiler is not for the
// network.
func servePprof(addr string, log *slog.Logger) error {
	if addr == "" {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("TAWSIL_PPROF_ADDR: %q is not a loopback host:port", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("TAWSIL_PPROF_ADDR: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	log.Info("pprof listening", "addr", ln.Addr().String())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return nil
}
