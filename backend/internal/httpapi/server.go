// Package httpapi is Tawsil's HTTP API (Fiber): JSON under /v1, RFC 7807
// errors from one error handler, JWT bearer auth with role and ownership
// checks on every route. The contract is api/openapi.yaml; a test checks
// that the routes registered here and the spec agree.
package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/limiter"
	"github.com/gofiber/fiber/v2/middleware/recover"
	"github.com/gofiber/fiber/v2/utils"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"

	"github.com/tawsil/tawsil/backend/internal/account"
	"github.com/tawsil/tawsil/backend/internal/auth"
	"github.com/tawsil/tawsil/backend/internal/i18n"
	"github.com/tawsil/tawsil/backend/internal/metrics"
)

// Options configure the HTTP server.
type Options struct {
	BodyLimit      int
	TrustedProxies []string
	// PublicRate and AuthRate are requests per minute per client address on
	// public and auth routes.
	PublicRate int
	AuthRate   int
	// NoAccessLog turns off the per-request log line (load benchmarks).
	NoAccessLog bool
}

// Server holds the API's dependencies.
type Server struct {
	app      *fiber.App
	opts     Options
	routeM   sync.Map // route path -> *routeMetrics
	routeN   atomic.Int32
	accounts *account.Service
	m        *metrics.Metrics
	log      *slog.Logger
	ready    func(ctx context.Context) error
	mappings []mapping
	tr       *i18n.Catalog // problem documents in the client's language

	// Audit appends to the audit log (who read or changed whose personal data).
	Audit func(ctx context.Context, actorID, actorRole, action, subject, detail string) error
	// Idem keeps Idempotency-Key answers for creating POSTs.
	Idem IdemStore
	// PushProfile stores a device profile and sends it to the courier's device.
	PushProfile func(ctx context.Context, courierID string, raw []byte) error
	// Bulk is the store's bulk writes for courier imports.
	Bulk account.BulkStore
	// OnCourierCreated lets the live index learn of a new courier at once.
	OnCourierCreated func(account.Courier)
	// OnCourierErased pseudonymises what other parts keep of an erased
	// courier (the cash ledger keeps amounts for accounting).
	OnCourierErased func(ctx context.Context, courierID string) error
}

// New builds the Fiber app with the foundation routes. Feature modules add
// theirs with Mount* methods before Listen.
func New(o Options, accounts *account.Service, ready func(context.Context) error, m *metrics.Metrics, log *slog.Logger) *Server {
	if o.PublicRate == 0 {
		o.PublicRate = 120
	}
	if o.AuthRate == 0 {
		o.AuthRate = 30
	}
	tr, err := i18n.Load()
	if err != nil {
		panic(err) // the locale files are embedded: a build defect, caught by the i18n tests
	}
	s := &Server{opts: o, accounts: accounts, m: m, log: log, ready: ready, tr: tr}
	cfg := fiber.Config{
		AppName:               "tawsil",
		BodyLimit:             o.BodyLimit,
		ReadBufferSize:        8 << 10, // also the request header size limit
		ReadTimeout:           10 * time.Second,
		WriteTimeout:          75 * time.Second, // event streams end at 60 s and clients reconnect
		IdleTimeout:           60 * time.Second,
		ErrorHandler:          s.errorHandler,
		DisableStartupMessage: true,
		Immutable:             true, // request strings stay valid after the handler returns
		CaseSensitive:         true,
		StrictRouting:         true,
		JSONEncoder:           json.Marshal,
		JSONDecoder:           json.Unmarshal,
	}
	if len(o.TrustedProxies) > 0 {
		cfg.ProxyHeader = fiber.HeaderXForwardedFor
		cfg.EnableTrustedProxyCheck = true
		cfg.TrustedProxies = o.TrustedProxies
	}
	s.app = fiber.New(cfg)
	s.app.Use(s.accessLog) // and the request metrics
	s.app.Use(recover.New())

	s.addMapping(account.ErrNotFound, 404, "not-found")
	s.addMapping(account.ErrConflict, 409, "conflict")
	s.addMapping(account.ErrInvalid, 400, "invalid")
	s.addMapping(account.ErrBadLogin, 401, "bad-login")
	s.addMapping(account.ErrTokenRevoked, 401, "token-revoked")
	s.addMapping(account.ErrDisabled, 401, "disabled")
	s.addMapping(account.ErrInactive, 409, "account-inactive")

	s.app.Get("/healthz", func(c *fiber.Ctx) error { return c.JSON(fiber.Map{"status": "ok"}) })
	s.app.Get("/readyz", s.readyz)
	metricsHandler := fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
	s.app.Get("/metrics", func(c *fiber.Ctx) error { metricsHandler(c.Context()); return nil })

	v1 := s.app.Group("/v1", noStore)
	authLimit := s.limit(o.AuthRate)
	v1.Post("/auth/login", authLimit, s.login)
	v1.Post("/auth/refresh", authLimit, s.refresh)
	v1.Post("/auth/logout", s.authn, s.logout)
	v1.Post("/auth/password", authLimit, s.authn, s.changePassword)
	v1.Post("/users", s.authn, s.need(auth.RoleAdmin), s.idempotent, s.createUser)
	v1.Get("/users/:id", s.authn, s.need(auth.RoleAdmin), s.getUser)
	v1.Delete("/users/:id", s.authn, s.need(auth.RoleAdmin), s.eraseUser)
	v1.Post("/users/:id/disable", s.authn, s.need(auth.RoleAdmin), s.setDisabled(true))
	v1.Post("/users/:id/enable", s.authn, s.need(auth.RoleAdmin), s.setDisabled(false))
	v1.Post("/couriers/import", s.authn, s.need(auth.RoleAdmin), s.limit(60), s.importCouriers)
	v1.Post("/couriers/:id/device-credentials", s.authn, s.need(auth.RoleAdmin), s.deviceCredentials)
	v1.Delete("/couriers/:id/device-credentials", s.authn, s.need(auth.RoleAdmin), s.revokeDevice)
	v1.Put("/couriers/:id/profile", s.authn, s.need(auth.RoleAdmin), s.pushProfile)
	return s
}

// App exposes the Fiber app (tests, route listing).
func (s *Server) App() *fiber.App { return s.app }

// V1 returns the /v1 router for feature modules.
// (New registered the /v1 middleware, no-store, once.)
func (s *Server) V1() fiber.Router { return s.app.Group("/v1") }

// Listen serves on addr until Shutdown.
func (s *Server) Listen(addr string) error { return s.app.Listen(addr) }

// Shutdown finishes in-flight requests until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error { return s.app.ShutdownWithContext(ctx) }

// noStore keeps API answers out of every cache: many carry a token, a
// secret, a handover code or personal data.
func noStore(c *fiber.Ctx) error {
	c.Response().Header.SetCanonical(canonCacheControl, noStoreValue)
	return c.Next()
}

// limit is a per-client-address rate limit (requests per minute).
func (s *Server) limit(perMinute int) fiber.Handler {
	return limiter.New(limiter.Config{
		Max:        perMinute,
		Expiration: time.Minute,
		LimitReached: func(c *fiber.Ctx) error {
			return &apiError{status: 429, slug: "rate-limited", detail: "too many requests; slow down", retryAfter: 60}
		},
	})
}

func (s *Server) readyz(c *fiber.Ctx) error {
	ctx, cancel := context.WithTimeout(c.UserContext(), 3*time.Second)
	defer cancel()
	if err := s.ready(ctx); err != nil {
		c.Status(fiber.StatusServiceUnavailable)
		return c.JSON(fiber.Map{"status": "unavailable", "reason": err.Error()})
	}
	return c.JSON(fiber.Map{"status": "ready"})
}

const principalKey = "principal"

// authn requires a valid, unrevoked bearer token.
func (s *Server) authn(c *fiber.Ctx) error {
	// The token is read in place, not copied as Immutable copies what
	// c.Get returns (a ~400-byte string per request): it is only used
	// during this call, and auth.Tokens copies what its cache keeps.
	token, ok := bytes.CutPrefix(c.Request().Header.Peek(fiber.HeaderAuthorization), []byte("Bearer "))
	if !ok || len(token) == 0 {
		c.Set(fiber.HeaderWWWAuthenticate, `Bearer realm="tawsil"`)
		return unauthorized("a bearer token is required")
	}
	p, err := s.accounts.Authenticate(c.UserContext(), utils.UnsafeString(token))
	if err != nil {
		c.Set(fiber.HeaderWWWAuthenticate, `Bearer realm="tawsil", error="invalid_token"`)
		if errors.Is(err, auth.ErrExpiredToken) {
			return unauthorized("token expired")
		}
		if errors.Is(err, auth.ErrInvalidToken) || errors.Is(err, account.ErrTokenRevoked) {
			return unauthorized("invalid or revoked token")
		}
		return err
	}
	setPrincipal(c, p)
	return c.Next()
}

// setPrincipal keeps the request's verified principal: in the access log's
// record of the request when there is one (no allocation), else in the
// locals.
func setPrincipal(c *fiber.Ctx, p auth.Principal) {
	if r := requestOf(c); r != nil {
		r.p, r.authed = p, true
		return
	}
	c.Locals(principalKey, p)
}

// need requires one of the roles.
func (s *Server) need(roles ...auth.Role) fiber.Handler {
	return func(c *fiber.Ctx) error {
		p := principal(c)
		for _, r := range roles {
			if p.Role == r {
				return c.Next()
			}
		}
		return forbidden(fmt.Sprintf("role %s may not do this", p.Role))
	}
}

// principal is the principal authn verified for the request (zero before
// or without authn).
func principal(c *fiber.Ctx) auth.Principal {
	if r := requestOf(c); r != nil && r.authed {
		return r.p
	}
	p, _ := c.Locals(principalKey).(auth.Principal)
	return p
}

// decode reads a JSON body strictly: a JSON media type, exactly one value
// and nothing after it, no duplicate keys, known fields only.
func decode(c *fiber.Ctx, dst any) error {
	if err := jsonMediaType(c); err != nil {
		return err
	}
	body := c.Body()
	if err := strictJSON(body); err != nil {
		return badRequest("invalid JSON body: " + err.Error())
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return badRequest("invalid JSON body: " + jsonErr(err))
	}
	return nil
}

// jsonMediaType accepts application/json and application/<x>+json, with
// at most a charset parameter that names UTF-8.
func jsonMediaType(c *fiber.Ctx) error {
	bad := problem(fiber.StatusUnsupportedMediaType, "unsupported-media-type", "send application/json")
	mt, params, err := mime.ParseMediaType(string(c.Request().Header.ContentType()))
	if err != nil {
		return bad
	}
	sub, ok := strings.CutPrefix(mt, "application/")
	if !ok || (sub != "json" && (!strings.HasSuffix(sub, "+json") || len(sub) == len("+json"))) {
		return bad
	}
	for k, v := range params {
		if k != "charset" || !strings.EqualFold(v, "utf-8") {
			return bad
		}
	}
	return nil
}

func jsonErr(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	case errors.As(err, &te):
		return fmt.Sprintf("field %q must be %s", te.Field, te.Type.String())
	case strings.HasPrefix(err.Error(), "json: unknown field"):
		return strings.TrimPrefix(err.Error(), "json: ")
	}
	return "malformed"
}
