package httpapi

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"

	"github.com/tawsil/tawsil/backend/internal/account"
	"github.com/tawsil/tawsil/backend/internal/auth"
	"github.com/tawsil/tawsil/backend/internal/livemap"
	"github.com/tawsil/tawsil/backend/internal/metrics"
	"github.com/tawsil/tawsil/shared/wire"
)

// userStore answers the one question Authenticate asks the store per
// (uncached) use: the user's token version. Everything else is unused here.
type userStore struct {
	account.Store
	users map[string]account.User
}

func (s userStore) UserByID(_ context.Context, id string) (account.User, error) {
	u, ok := s.users[id]
	if !ok {
		return account.User{}, account.ErrNotFound
	}
	return u, nil
}

// discardLines is a JSONLineWriter that writes nowhere.
type discardLines struct{ slog.Handler }

func (discardLines) JSONLines() io.Writer { return io.Discard }

// nearFixture is the near= path as the backend mounts it: the real Server
// (access log, recover, metrics, no-store, authn, role check) over a live
// index of 50,000 available couriers with names, as cmd/nearbench loads it.
type nearFixture struct {
	s     *Server
	idx   *livemap.Index
	token string // a dispatcher's
	// courierToken is a courier's (bench-courier-000001), whom near= refuses.
	courierToken string
	bearer       []byte // "Bearer " + token
	names        map[string]string
}

func newNearFixture(tb testing.TB, n int) *nearFixture {
	tb.Helper()
	keys := []auth.Key{{KID: "k1", Secret: []byte(strings.Repeat("s", 32))}}
	tokens, err := auth.NewTokens(keys, "k1", "tawsil", "tawsil-api", 2*time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	store := userStore{users: map[string]account.User{"u-disp": {ID: "u-disp", Role: auth.RoleDispatcher, TokenVersion: 1},
		"u-cour": {ID: "u-cour", Role: auth.RoleCourier, CourierID: "bench-courier-000001", TokenVersion: 1}}}
	accounts := account.NewService(store, tokens, time.Hour, 4, slog.New(slog.DiscardHandler))
	token, _, err := tokens.Sign(auth.Principal{UserID: "u-disp", Role: auth.RoleDispatcher, TokenVersion: 1})
	if err != nil {
		tb.Fatal(err)
	}
	courierToken, _, err := tokens.Sign(auth.Principal{UserID: "u-cour", Role: auth.RoleCourier, CourierID: "bench-courier-000001", TokenVersion: 1})
	if err != nil {
		tb.Fatal(err)
	}
	idx := livemap.New()
	names := make(map[string]string, n)
	rng := rand.New(rand.NewPCG(42, 42^0x5eed))
	now := time.Now()
	for i := range n {
		id := fmt.Sprintf("bench-courier-%06d", i)
		// Positions in whole 1e-6 degrees, as fixes from the wire are (and
		// as nearbench's fleet writes them).
		f := wire.Fix{Seq: 1, Time: now.Add(-time.Second),
			Lat: math.Round((33.45+rng.Float64()*0.2)*1e6) / 1e6, Lng: math.Round((-7.75+rng.Float64()*0.3)*1e6) / 1e6,
			Accuracy: 5, Speed: 3, Heading: 90, Battery: 80}
		if _, err := idx.Update(id, f, now); err != nil {
			tb.Fatal(err)
		}
		if err := idx.SetStatus(id, livemap.StatusAvailable, 0); err != nil {
			tb.Fatal(err)
		}
		if err := idx.SetProfile(id, "scooter", 2); err != nil {
			tb.Fatal(err)
		}
		idx.SetShift(id, true)
		idx.SetOnline(id, true, now)
		names[id] = "Bench " + strconv.Itoa(i)
	}
	// The backend's access log is on at info: a JSON line per request,
	// handed whole to its log buffer as cmd/backend's handler takes it
	// (here into io.Discard, so the write itself is not counted).
	log := slog.New(discardLines{slog.NewJSONHandler(io.Discard, nil)})
	s := New(Options{}, accounts, func(context.Context) error { return nil }, metrics.New(func() float64 { return 0 }), log)
	s.MountTracking(Tracking{Index: idx, Name: func(id string) string { return names[id] },
		Names: func(ids, out []string) {
			for i, id := range ids {
				out[i] = names[id]
			}
		}})
	return &nearFixture{s: s, idx: idx, token: token, courierToken: courierToken, bearer: []byte("Bearer " + token), names: names}
}

// nearRequest writes request i of nearbench's sequence (the same query
// points as .ci/bench.sh) into req.
func nearRequest(req *fasthttp.Request, bearer []byte, i int) {
	lat := 33.52 + float64((i*7919)%1000)/1000*0.10
	lng := -7.68 + float64((i*104729)%1000)/1000*0.18
	var uri [96]byte
	u := append(uri[:0], "/v1/couriers?near="...)
	u = strconv.AppendFloat(u, lat, 'f', 6, 64)
	u = append(u, ',')
	u = strconv.AppendFloat(u, lng, 'f', 6, 64)
	u = append(u, "&status=available&limit=5"...)
	req.Reset()
	req.Header.SetMethod(fasthttp.MethodGet)
	req.SetRequestURIBytes(u)
	req.Header.SetBytesV(fasthttp.HeaderAuthorization, bearer)
}

var benchAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}

// processCPU is the CPU time the process has used (the garbage collector's
// included): on a shared machine a per-request figure less disturbed by
// other processes than wall time.
func processCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// serveOne runs h on one request as fasthttp's server would: a RequestCtx
// reused across requests of a connection.
func serveOne(ctx *fasthttp.RequestCtx, h fasthttp.RequestHandler) {
	ctx.Response.Reset()
	h(ctx)
}

// BenchmarkNearHTTP is GET /v1/couriers?near=...&status=available&limit=5
// through the whole handler chain, without the network: what the backend
// spends per request besides reading and writing the connection. bare is a
// Fiber app with one constant answer of the same size, no middleware: the
// part of a request's cost no handler can save.
func BenchmarkNearHTTP(b *testing.B) {
	fx := newNearFixture(b, 50_000)
	b.Run("backend", func(b *testing.B) {
		h := fx.s.App().Handler()
		var ctx fasthttp.RequestCtx
		ctx.Init(&fasthttp.Request{}, benchAddr, nil)
		nearRequest(&ctx.Request, fx.bearer, 0)
		serveOne(&ctx, h)
		if ctx.Response.StatusCode() != 200 || len(ctx.Response.Body()) < 1000 {
			b.Fatalf("near= answered %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
		}
		size := len(ctx.Response.Body())
		b.ReportAllocs()
		cpu0 := processCPU(b)
		i := 0
		for b.Loop() {
			i++
			nearRequest(&ctx.Request, fx.bearer, i)
			serveOne(&ctx, h)
		}
		b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
		if ctx.Response.StatusCode() != 200 {
			b.Fatalf("near= answered %d", ctx.Response.StatusCode())
		}
		b.ReportMetric(float64(size), "body-B")
	})
	// parallel: 8 requests at a time over GOMAXPROCS threads, as 8
	// connections: what sharing locks and counters between cores costs.
	b.Run("parallel", func(b *testing.B) {
		h := fx.s.App().Handler()
		var next atomic.Int64
		b.SetParallelism(4)
		b.ReportAllocs()
		cpu0 := processCPU(b)
		b.RunParallel(func(pb *testing.PB) {
			var ctx fasthttp.RequestCtx
			ctx.Init(&fasthttp.Request{}, benchAddr, nil)
			for pb.Next() {
				nearRequest(&ctx.Request, fx.bearer, int(next.Add(1)))
				serveOne(&ctx, h)
				if ctx.Response.StatusCode() != 200 {
					b.Errorf("near= answered %d", ctx.Response.StatusCode())
					return
				}
			}
		})
		b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
	})
	b.Run("bare", func(b *testing.B) {
		var ctx fasthttp.RequestCtx
		ctx.Init(&fasthttp.Request{}, benchAddr, nil)
		nearRequest(&ctx.Request, fx.bearer, 0)
		serveOne(&ctx, fx.s.App().Handler())
		body := append([]byte(nil), ctx.Response.Body()...)
		app := fiber.New(fiber.Config{DisableStartupMessage: true})
		app.Get("/v1/couriers", func(c *fiber.Ctx) error {
			c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
			return c.Send(body)
		})
		h := app.Handler()
		b.ReportAllocs()
		cpu0 := processCPU(b)
		i := 0
		for b.Loop() {
			i++
			nearRequest(&ctx.Request, fx.bearer, i)
			serveOne(&ctx, h)
		}
		b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
		if ctx.Response.StatusCode() != 200 {
			b.Fatalf("bare answered %d", ctx.Response.StatusCode())
		}
	})
}
