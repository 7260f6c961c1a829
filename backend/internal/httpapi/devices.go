package httpapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/tawsil/tawsil/backend/internal/account"
	"github.com/tawsil/tawsil/backend/internal/mqttack"
	"github.com/tawsil/tawsil/backend/internal/osmand"
	"github.com/tawsil/tawsil/shared/topic"
	"github.com/tawsil/tawsil/shared/wire"
)

// DeviceIngest is what the device HTTP endpoints need of ingest: the same
// pipeline the MQTT messages go through. Errors: nil (stored), mqttack.ErrDrop
// (refused by policy and counted: answered 200, as a PUBACK would be, so the
// app does not resend it forever), anything else (not stored yet: 503).
type DeviceIngest interface {
	HandleOwnTracks(ctx context.Context, courier, device string, payload []byte) error
	HandleFixes(ctx context.Context, courier string, fixes []wire.Fix) error
	Ignore(reason string)
}

// Devices mounts the HTTP ingestion of the couriers' own tracking apps:
// OwnTracks in HTTP mode and Traccar Client (OsmAnd protocol). Both
// authenticate with the device credentials of
// POST /v1/couriers/{id}/device-credentials.
type Devices struct {
	Ingest DeviceIngest
	Now    func() time.Time // nil: time.Now
}

// httpDevice is the OwnTracks device name used when the app names none.
const httpDevice = "http"

// MountDevices registers the device ingestion routes.
func (s *Server) MountDevices(d Devices) {
	if d.Now == nil {
		d.Now = time.Now
	}
	v1 := s.V1()
	v1.Post("/ingest/owntracks", func(c *fiber.Ctx) error { return s.ownTracksHTTP(c, d) })
	v1.Get("/ingest/osmand", func(c *fiber.Ctx) error { return s.osmAnd(c, d) })
	v1.Post("/ingest/osmand", func(c *fiber.Ctx) error { return s.osmAnd(c, d) })
}

// basicAuth returns the HTTP Basic credentials of a request.
func basicAuth(c *fiber.Ctx) (user, pass string, ok bool) {
	h := c.Get(fiber.HeaderAuthorization)
	enc, found := strings.CutPrefix(h, "Basic ")
	if !found {
		return "", "", false
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(enc))
	if err != nil {
		return "", "", false
	}
	return strings.Cut(string(raw), ":")
}

// deviceLogin checks device credentials; the courier comes from them only.
func (s *Server) deviceLogin(c *fiber.Ctx, user, pass string) (string, error) {
	if !topic.ValidID(user) || pass == "" {
		c.Set(fiber.HeaderWWWAuthenticate, `Basic realm="tawsil devices"`)
		return "", unauthorized("device credentials required")
	}
	courier, _, err := s.accounts.DeviceLogin(c.UserContext(), user, pass)
	if err != nil {
		c.Set(fiber.HeaderWWWAuthenticate, `Basic realm="tawsil devices"`)
		if errors.Is(err, account.ErrBadLogin) {
			return "", unauthorized("bad device credentials")
		}
		return "", err
	}
	return courier, nil
}

// ingestAnswer maps the pipeline's outcome to HTTP.
func ingestAnswer(err error) error {
	switch {
	case err == nil, errors.Is(err, mqttack.ErrDrop):
		return nil
	default:
		return &apiError{status: fiber.StatusServiceUnavailable, slug: "unavailable", detail: "not stored yet; send it again", retryAfter: 5}
	}
}

// ownTracksHTTP takes one message of an OwnTracks app in HTTP mode. The app
// authenticates with HTTP Basic (user = the device username), names its
// device in X-Limit-D (Android) or in the payload's topic (iOS), and expects
// a JSON array in reply (messages for it: none here).
func (s *Server) ownTracksHTTP(c *fiber.Ctx, d Devices) error {
	user, pass, _ := basicAuth(c)
	courier, err := s.deviceLogin(c, user, pass)
	if err != nil {
		return err
	}
	body := c.Body()
	if len(body) > wire.MaxOwnTracksPayload {
		return problem(fiber.StatusRequestEntityTooLarge, "too-large", "an OwnTracks message is at most 4 KiB")
	}
	if wire.OwnTracksType(body) == "" {
		return badRequest("body is not an OwnTracks JSON object")
	}
	device := c.Get("X-Limit-D")
	if !topic.ValidDevice(device) {
		device = payloadDevice(body)
	}
	if _, err := wire.DecodeOwnTracks(body); err != nil && !errors.Is(err, wire.ErrNotLocation) {
		return badRequest("OwnTracks location: " + err.Error())
	}
	if err := ingestAnswer(d.Ingest.HandleOwnTracks(c.UserContext(), courier, device, body)); err != nil {
		return err
	}
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return c.SendString("[]")
}

// payloadDevice reads the device level of the topic the iOS app puts in its
// HTTP payloads; httpDevice when there is none.
func payloadDevice(body []byte) string {
	var m struct {
		Topic string `json:"topic"`
	}
	if json.Unmarshal(body, &m) == nil {
		if _, dev, ok := strings.Cut(strings.TrimPrefix(m.Topic, topic.OwnTracksRoot+"/"), "/"); ok && topic.ValidDevice(dev) {
			return dev
		}
	}
	return httpDevice
}

// osmAnd takes a Traccar Client report: GET or POST with the OsmAnd query
// parameters (or a form body), or POST with the JSON body of Traccar Client
// 9+. Traccar Client has no password field, so the credentials are HTTP
// Basic when present, otherwise the device identifier (id) is the device
// username and the password is the key parameter of the server URL
// (https://host/v1/ingest/osmand?key=...). It answers 200 with no body,
// as Traccar does.
func (s *Server) osmAnd(c *fiber.Ctx, d Devices) error {
	q, err := url.ParseQuery(string(c.Request().URI().QueryString()))
	if err != nil {
		return badRequest("query string is not URL-encoded")
	}
	isJSON := strings.HasPrefix(string(c.Request().Header.ContentType()), fiber.MIMEApplicationJSON)
	if c.Method() == fiber.MethodPost && !isJSON && len(c.Body()) > 0 {
		form, err := url.ParseQuery(string(c.Body()))
		if err != nil {
			return badRequest("form body is not URL-encoded")
		}
		for k, v := range form {
			if _, dup := q[k]; !dup {
				q[k] = v
			}
		}
	}
	var rep osmand.Report
	if isJSON && c.Method() == fiber.MethodPost {
		rep, err = osmand.DecodeJSON(c.Body())
	} else {
		rep, err = osmand.DecodeQuery(q, d.Now())
	}
	user, pass, ok := basicAuth(c)
	if !ok {
		user, pass = rep.DeviceID, q.Get("key")
		if user == "" {
			user = q.Get("id")
		}
	}
	courier, lerr := s.deviceLogin(c, user, pass)
	if lerr != nil {
		return lerr
	}
	switch {
	case errors.Is(err, osmand.ErrInvalid):
		d.Ingest.Ignore("osmand_invalid_fix")
		return c.SendStatus(fiber.StatusOK)
	case err != nil:
		return badRequest("Traccar Client report: " + err.Error())
	}
	if err := ingestAnswer(d.Ingest.HandleFixes(c.UserContext(), courier, rep.Fixes)); err != nil {
		return err
	}
	return c.SendStatus(fiber.StatusOK)
}
