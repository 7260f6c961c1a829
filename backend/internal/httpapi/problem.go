package httpapi

import (
	"errors"
	"strconv"
	"strings"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/utils"
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
		s.log.Error("request failed", "method", c.Method(), "route", c.Route().Path, "err", err)
		ae = &apiError{status: fiber.StatusInternalServerError, slug: "internal", detail: "internal error; the incident was logged"}
	}
	p := fiber.Map{"type": "https://tawsil.ma/problems/" + ae.slug, "title": titleOf(ae.status), "status": ae.status,
		"detail": ae.detail, "instance": c.Path()}
	for k, v := range ae.extra {
		p[k] = v
	}
	if ae.retryAfter > 0 {
		c.Set(fiber.HeaderRetryAfter, strconv.Itoa(ae.retryAfter))
	}
	c.Status(ae.status)
	c.Set(fiber.HeaderContentType, "application/problem+json")
	return c.JSON(p, "application/problem+json")
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
