package httpapi

import (
	"errors"
	"strconv"
	"strings"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/utils"

	"github.com/tawsil/tawsil/backend/internal/i18n"
)

// Problem is an RFC 7807 problem document.
type Problem struct {
	Type     string         `json:"type"`
	Title    string         `json:"title"`
	Status   int            `json:"status"`
	Detail   string         `json:"detail,omitempty"`
	Instance string         `json:"instance,omitempty"`
	Extra    map[string]any `json:"-"`
}

// apiError is an error that carries its HTTP answer. Handlers return it (via
// the helpers below) or a sentinel from a domain package; errorHandler is the
// one place that turns either into a response.
type apiError struct {
	status     int
	slug       string
	detail     string
	retryAfter int
	extra      map[string]any
}

func (e *apiError) Error() string { return e.slug + ": " + e.detail }

func problem(status int, slug, detail string) error {
	return &apiError{status: status, slug: slug, detail: detail}
}

func badRequest(detail string) error { return problem(fiber.StatusBadRequest, "bad-request", detail) }
func notFound(what string) error {
	return problem(fiber.StatusNotFound, "not-found", what+" not found")
}
func forbidden(detail string) error { return problem(fiber.StatusForbidden, "forbidden", detail) }
func conflict(detail string) error  { return problem(fiber.StatusConflict, "conflict", detail) }
func unauthorized(detail string) error {
	return problem(fiber.StatusUnauthorized, "unauthorized", detail)
}

// mapper turns domain sentinels into API errors; domain integrations add
// their own with addMapping.
type mapping struct {
	target error
	status int
	slug   string
}

func (s *Server) addMapping(target error, status int, slug string) {
	s.mappings = append(s.mappings, mapping{target, status, slug})
}

func (s *Server) errorHandler(c *fiber.Ctx, err error) error {
	var ae *apiError
	var fe *fiber.Error
	switch {
	case errors.As(err, &ae):
	case errors.As(err, &fe):
		ae = &apiError{status: fe.Code, slug: slugOf(fe.Code), detail: fe.Message}
		if fe.Code >= 500 {
			ae.detail = "internal error"
		}
	default:
		for _, m := range s.mappings {
			if errors.Is(err, m.target) {
				ae = &apiError{status: m.status, slug: m.slug, detail: clientDetail(err, m.target)}
				break
			}
		}
	}
	if ae == nil {
		s.log.Error("request failed", "method", c.Method(), "route", c.Route().Path, "request_id", requestID(c), "err", err)
		ae = &apiError{status: fiber.StatusInternalServerError, slug: "internal", detail: "internal error; the incident was logged"}
	}
	p := fiber.Map{"type": "https://tawsil.ma/problems/" + ae.slug, "status": ae.status, "instance": c.Path()}
	s.localize(c, p, ae)
	for k, v := range ae.extra {
		p[k] = v
	}
	if id := requestID(c); id != "" {
		p["request_id"] = id
	}
	if ae.retryAfter > 0 {
		c.Set(fiber.HeaderRetryAfter, strconv.Itoa(ae.retryAfter))
	}
	c.Status(ae.status)
	c.Set(fiber.HeaderContentType, "application/problem+json")
	return c.JSON(p, "application/problem+json")
}

// localize sets the problem's title and detail in the client's language
// (Accept-Language, French by default). A detail the catalogue cannot
// translate is replaced by the slug's sentence in that language, and the
// original is kept in "detail_en" so that no information is lost.
func (s *Server) localize(c *fiber.Ctx, p fiber.Map, ae *apiError) {
	lang := i18n.Negotiate(c.Get(fiber.HeaderAcceptLanguage))
	title, detail, exact := titleOf(ae.status), ae.detail, true
	if s.tr != nil {
		title, detail, exact = s.tr.Problem(lang, ae.status, ae.slug, ae.detail)
		if title == "" {
			title = titleOf(ae.status)
		}
		c.Set(fiber.HeaderContentLanguage, lang)
		c.Vary(fiber.HeaderAcceptLanguage)
	}
	p["title"], p["detail"] = title, detail
	if !exact && ae.detail != "" {
		p["detail_en"] = ae.detail
	}
}

// clientDetail keeps the domain's message (which names the field or rule)
// but never text from below the domain (driver errors are not sentinels).
func clientDetail(err, target error) string {
	msg := err.Error()
	if i := strings.Index(msg, target.Error()); i >= 0 {
		return msg[i:]
	}
	return target.Error()
}

func slugOf(status int) string {
	switch status {
	case 400:
		return "bad-request"
	case 401:
		return "unauthorized"
	case 403:
		return "forbidden"
	case 404:
		return "not-found"
	case 405:
		return "method-not-allowed"
	case 409:
		return "conflict"
	case 413:
		return "payload-too-large"
	case 415:
		return "unsupported-media-type"
	case 422:
		return "unprocessable"
	case 429:
		return "rate-limited"
	}
	return "error"
}

func titleOf(status int) string {
	if t := utils.StatusMessage(status); t != "" {
		return t
	}
	return "Error"
}
