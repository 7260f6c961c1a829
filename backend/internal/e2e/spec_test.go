package e2e

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"
	"gopkg.in/yaml.v3"

	"github.com/tawsil/tawsil/shared/topic"
	"github.com/tawsil/tawsil/shared/wire"
)

// The API contract lives at the repository root (api/); these tests keep it
// true to the served routes, the roles the server enforces and the MQTT
// contract in shared/.
const (
	specOpenAPIFile  = "../../../api/openapi.yaml"
	specAsyncAPIFile = "../../../api/asyncapi.yaml"
	specRepoRoot     = "../../.."
)

// specPublic marks operations that need no token.
const specPublic = "public"

// specDevice marks operations for the couriers' own tracking apps: no bearer
// token, device credentials (HTTP Basic, or Traccar Client's key) instead.
const specDevice = "device"

var specRoles = []string{"admin", "merchant", "dispatcher", "courier"}

// specRoute is one (method, path) with the path in OpenAPI style: /v1/orders/{id}.
type specRoute struct {
	Method string
	Path   string
}

func (r specRoute) String() string { return r.Method + " " + r.Path }

func compareSpecRoutes(a, b specRoute) int {
	if c := strings.Compare(a.Path, b.Path); c != 0 {
		return c
	}
	return strings.Compare(a.Method, b.Method)
}

// specFiberParam matches a Fiber path parameter (":id", optional ":id?").
var specFiberParam = regexp.MustCompile(`:([A-Za-z0-9_]+)\??`)

// specOpenAPIPath turns a Fiber route path into an OpenAPI path template.
func specOpenAPIPath(fiberPath string) string {
	return specFiberParam.ReplaceAllString(fiberPath, "{$1}")
}

// specServed lists the app's routes, without Fiber's automatic HEAD routes
// and the USE middleware entries, sorted and without duplicates.
func specServed(app *fiber.App) []specRoute {
	var out []specRoute
	for _, r := range app.GetRoutes(true) {
		if r.Method == fiber.MethodHead || r.Method == "USE" {
			continue
		}
		out = append(out, specRoute{Method: r.Method, Path: specOpenAPIPath(r.Path)})
	}
	slices.SortFunc(out, compareSpecRoutes)
	return slices.Compact(out)
}

// specDiff returns the served routes the spec lacks and the spec's routes
// nothing serves.
func specDiff(served, spec []specRoute) (notInSpec, notServed []specRoute) {
	in := func(list []specRoute, r specRoute) bool { return slices.Contains(list, r) }
	for _, r := range served {
		if !in(spec, r) {
			notInSpec = append(notInSpec, r)
		}
	}
	for _, r := range spec {
		if !in(served, r) {
			notServed = append(notServed, r)
		}
	}
	return notInSpec, notServed
}

// specOpenAPI is the part of an OpenAPI 3.1 document these tests read.
type specOpenAPI struct {
	Version    string                          `yaml:"openapi"`
	Security   []map[string][]string           `yaml:"security"`
	Paths      map[string]map[string]yaml.Node `yaml:"paths"`
	Components struct {
		Parameters map[string]specParam `yaml:"parameters"`
	} `yaml:"components"`
}

type specParam struct {
	Ref      string `yaml:"$ref"`
	Name     string `yaml:"name"`
	In       string `yaml:"in"`
	Required bool   `yaml:"required"`
}

type specOperation struct {
	ID         string                 `yaml:"operationId"`
	Roles      []string               `yaml:"x-roles"`
	Security   *[]map[string][]string `yaml:"security"`
	Parameters []specParam            `yaml:"parameters"`
	Responses  map[string]yaml.Node   `yaml:"responses"`
}

// specOp is one operation of the spec with its path-level parameters merged.
type specOp struct {
	specRoute
	specOperation
	pathParams []string // names of the "in: path" parameters, resolved
}

var specMethods = map[string]bool{"get": true, "put": true, "post": true, "delete": true, "patch": true,
	"head": true, "options": true, "trace": true}

// mustSpecOpenAPI parses the spec and lists its operations sorted by route.
func mustSpecOpenAPI(tb testing.TB) (specOpenAPI, []specOp) {
	tb.Helper()
	raw, err := os.ReadFile(specOpenAPIFile)
	if err != nil {
		tb.Fatalf("read spec: %v", err)
	}
	var doc specOpenAPI
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		tb.Fatalf("parse %s: %v", specOpenAPIFile, err)
	}
	resolve := func(p specParam) specParam {
		if name, ok := strings.CutPrefix(p.Ref, "#/components/parameters/"); ok {
			rp, found := doc.Components.Parameters[name]
			if !found {
				tb.Fatalf("unresolved parameter %s", p.Ref)
			}
			return rp
		}
		return p
	}
	var ops []specOp
	for path, item := range doc.Paths {
		var shared []specParam
		if n, ok := item["parameters"]; ok {
			if err := n.Decode(&shared); err != nil {
				tb.Fatalf("%s parameters: %v", path, err)
			}
		}
		for key, n := range item {
			if !specMethods[key] {
				continue
			}
			var op specOperation
			if err := n.Decode(&op); err != nil {
				tb.Fatalf("%s %s: %v", key, path, err)
			}
			so := specOp{specRoute: specRoute{Method: strings.ToUpper(key), Path: path}, specOperation: op}
			for _, p := range append(slices.Clone(shared), op.Parameters...) {
				if p = resolve(p); p.In == "path" {
					so.pathParams = append(so.pathParams, p.Name)
				}
			}
			ops = append(ops, so)
		}
	}
	slices.SortFunc(ops, func(a, b specOp) int { return compareSpecRoutes(a.specRoute, b.specRoute) })
	return doc, ops
}

func specRoutesOf(ops []specOp) []specRoute {
	out := make([]specRoute, len(ops))
	for i, o := range ops {
		out[i] = o.specRoute
	}
	return out
}

func TestOpenAPIPath(t *testing.T) {
	tests := []struct {
		give string
		want string
	}{
		{give: "/healthz", want: "/healthz"},
		{give: "/v1/orders/:id", want: "/v1/orders/{id}"},
		{give: "/v1/orders/:id/cancel", want: "/v1/orders/{id}/cancel"},
		{give: "/v1/couriers/:id/device-credentials", want: "/v1/couriers/{id}/device-credentials"},
		{give: "/v1/track/:token", want: "/v1/track/{token}"},
		{give: "/v1/a/:x/b/:y?", want: "/v1/a/{x}/b/{y}"},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			if got := specOpenAPIPath(tt.give); got != tt.want {
				t.Fatalf("openAPIPath(%q) = %q, want %q", tt.give, got, tt.want)
			}
		})
	}
}

func TestDiffRoutes(t *testing.T) {
	get := func(p string) specRoute { return specRoute{Method: "GET", Path: p} }
	post := func(p string) specRoute { return specRoute{Method: "POST", Path: p} }
	tests := []struct {
		name          string
		served, spec  []specRoute
		wantNotInSpec []specRoute
		wantNotServed []specRoute
	}{
		{name: "equal", served: []specRoute{get("/a"), post("/a")}, spec: []specRoute{get("/a"), post("/a")}},
		{name: "route added without spec", served: []specRoute{get("/a"), get("/b")}, spec: []specRoute{get("/a")},
			wantNotInSpec: []specRoute{get("/b")}},
		{name: "spec without route", served: []specRoute{get("/a")}, spec: []specRoute{get("/a"), get("/b")},
			wantNotServed: []specRoute{get("/b")}},
		{name: "method differs", served: []specRoute{post("/a")}, spec: []specRoute{get("/a")},
			wantNotInSpec: []specRoute{post("/a")}, wantNotServed: []specRoute{get("/a")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gotNotInSpec, gotNotServed := specDiff(tt.served, tt.spec)
			if !slices.Equal(gotNotInSpec, tt.wantNotInSpec) || !slices.Equal(gotNotServed, tt.wantNotServed) {
				t.Fatalf("diff = %v, %v; want %v, %v", gotNotInSpec, gotNotServed, tt.wantNotInSpec, tt.wantNotServed)
			}
		})
	}
}

func TestServedRoutesMatchOpenAPI(t *testing.T) {
	b := mustBackend(t, nil)
	served := specServed(b.HTTP.App())
	_, ops := mustSpecOpenAPI(t)
	notInSpec, notServed := specDiff(served, specRoutesOf(ops))
	for _, r := range notInSpec {
		t.Errorf("served but missing from api/openapi.yaml: %s", r)
	}
	for _, r := range notServed {
		t.Errorf("in api/openapi.yaml but not served: %s", r)
	}
	if len(served) == 0 {
		t.Fatal("no routes served")
	}

	// The check sees a route registered without the spec (on an app of its
	// own: Fiber's router may not change while the backend serves).
	extra := fiber.New()
	extra.Patch("/v1/orders/:id/undocumented", func(c *fiber.Ctx) error { return c.SendStatus(fiber.StatusNoContent) })
	notInSpec, _ = specDiff(append(specServed(b.HTTP.App()), specServed(extra)...), specRoutesOf(ops))
	want := []specRoute{{Method: "PATCH", Path: "/v1/orders/{id}/undocumented"}}
	if !slices.Equal(notInSpec, want) {
		t.Errorf("after adding a route, missing from the spec: %v, want %v", notInSpec, want)
	}
}

func TestOpenAPIDeclaresRoles(t *testing.T) {
	doc, ops := mustSpecOpenAPI(t)
	if !strings.HasPrefix(doc.Version, "3.1") {
		t.Errorf("openapi %q, want 3.1.x", doc.Version)
	}
	if len(doc.Security) != 1 || doc.Security[0]["bearer"] == nil {
		t.Errorf("global security %v, want bearer", doc.Security)
	}
	valid := append(slices.Clone(specRoles), specPublic, specDevice)
	ids := map[string]specRoute{}
	for _, op := range ops {
		t.Run(op.String(), func(t *testing.T) {
			if op.ID == "" {
				t.Error("no operationId")
			} else if prev, dup := ids[op.ID]; dup {
				t.Errorf("operationId %s also used by %s", op.ID, prev)
			}
			ids[op.ID] = op.specRoute
			if len(op.Roles) == 0 {
				t.Fatal("no x-roles")
			}
			for _, r := range op.Roles {
				if !slices.Contains(valid, r) {
					t.Errorf("x-roles has %q, want among %v", r, valid)
				}
			}
			if len(slices.Compact(slices.Sorted(slices.Values(op.Roles)))) != len(op.Roles) {
				t.Errorf("x-roles %v repeats a role", op.Roles)
			}
			public := slices.Contains(op.Roles, specPublic)
			device := slices.Contains(op.Roles, specDevice)
			switch {
			case device && len(op.Roles) != 1:
				t.Errorf("x-roles %v: device stands alone", op.Roles)
			case device && (op.Security == nil || len(*op.Security) == 0 || (*op.Security)[0]["deviceBasic"] == nil):
				t.Error("device operation without `security: [{deviceBasic: []}, ...]`")
			case device && op.Responses["401"].Kind == 0:
				t.Error("device operation without a 401 response")
			case device:
			case public && len(op.Roles) != 1:
				t.Errorf("x-roles %v: public stands alone", op.Roles)
			case public && (op.Security == nil || len(*op.Security) != 0):
				t.Error("public operation without `security: []`")
			case !public && op.Security != nil:
				t.Errorf("protected operation overrides security: %v", *op.Security)
			case !public && op.Responses["401"].Kind == 0:
				t.Error("protected operation without a 401 response")
			}
			inPath := specTemplateParams(op.Path)
			if !slices.Equal(slices.Sorted(slices.Values(inPath)), slices.Sorted(slices.Values(op.pathParams))) {
				t.Errorf("path template has %v, declared path parameters %v", inPath, op.pathParams)
			}
		})
	}
}

var specTemplateParam = regexp.MustCompile(`\{([^}]+)\}`)

func specTemplateParams(p string) []string {
	var out []string
	for _, m := range specTemplateParam.FindAllStringSubmatch(p, -1) {
		out = append(out, m[1])
	}
	return out
}

// TestOpenAPIRolesEnforced calls every operation with every role's token (and
// none) and checks that x-roles is exactly what the server lets through: a
// role outside x-roles gets 403, a role inside never gets 401 or 403; no
// token gets 401 unless the operation is public. Requests carry no body and
// made-up ids, so they stop at validation and change nothing.
func TestOpenAPIRolesEnforced(t *testing.T) {
	b := mustBackend(t, nil)
	admin, _ := b.login(t, adminEmail, adminPass)
	tokens := map[string]string{
		"admin":      admin,
		"merchant":   b.mustUser(t, admin, "merchant").Token,
		"dispatcher": b.mustUser(t, admin, "dispatcher").Token,
		"courier":    b.mustUser(t, admin, "courier").Token,
	}
	_, ops := mustSpecOpenAPI(t)
	// Logging out revokes the caller's tokens: do it last.
	slices.SortStableFunc(ops, func(a, c specOp) int {
		return specBool(a.ID == "logout") - specBool(c.ID == "logout")
	})
	const specMadeUpID = "zz0000000000000000000000"
	for _, op := range ops {
		path := specTemplateParam.ReplaceAllString(op.Path, specMadeUpID)
		public := slices.Contains(op.Roles, specPublic)
		got := b.specStatus(t, op.Method, path, "")
		if slices.Contains(op.Roles, specDevice) {
			// Device credentials only: no token and every bearer token get 401.
			if got != 401 {
				t.Errorf("%s (device) without credentials = %d, want 401", op.specRoute, got)
			}
			for _, role := range specRoles {
				if got := b.specStatus(t, op.Method, path, tokens[role]); got != 401 {
					t.Errorf("%s (device) with a %s bearer token = %d, want 401", op.specRoute, role, got)
				}
			}
			continue
		}
		switch {
		case public && (got == 401 || got == 403):
			t.Errorf("%s (public) without a token = %d", op.specRoute, got)
		case !public && got != 401:
			t.Errorf("%s without a token = %d, want 401", op.specRoute, got)
		}
		if public {
			continue
		}
		for _, role := range specRoles {
			allowed := slices.Contains(op.Roles, role)
			if allowed && specStreams(op) {
				continue // an allowed call would hold a stream open; the forbidden roles are still checked
			}
			got := b.specStatus(t, op.Method, path, tokens[role])
			switch {
			case allowed && (got == 401 || got == 403):
				t.Errorf("%s as %s = %d, but x-roles %v allows it", op.specRoute, role, got, op.Roles)
			case !allowed && got != 403:
				t.Errorf("%s as %s = %d, want 403 (x-roles %v)", op.specRoute, role, got, op.Roles)
			}
		}
	}
}

func specBool(v bool) int {
	if v {
		return 1
	}
	return 0
}

// specStreams reports whether the operation answers an event stream.
func specStreams(op specOp) bool {
	ok := op.Responses["200"]
	var r struct {
		Content map[string]any `yaml:"content"`
	}
	if ok.Kind == 0 || ok.Decode(&r) != nil {
		return false
	}
	_, sse := r.Content["text/event-stream"]
	return sse
}

// specStatus makes a body-less request and returns the status; the response
// is checked against the spec like every other.
func (b *backend) specStatus(tb testing.TB, method, path, token string) int {
	tb.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, b.base+path, nil)
	if err != nil {
		tb.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := client.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	if !strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
		body, err := io.ReadAll(res.Body)
		if err != nil {
			tb.Fatalf("%s %s: read body: %v", method, path, err)
		}
		checkResponse(tb, res.Request, res.StatusCode, res.Header, body)
	}
	return res.StatusCode
}

// specAsyncAPI is the part of an AsyncAPI 3.0 document these tests read.
type specAsyncAPI struct {
	Version  string `yaml:"asyncapi"`
	Channels map[string]struct {
		Address    string               `yaml:"address"`
		Parameters map[string]any       `yaml:"parameters"`
		Messages   map[string]yaml.Node `yaml:"messages"`
	} `yaml:"channels"`
	Operations map[string]struct {
		Action  string `yaml:"action"`
		Channel struct {
			Ref string `yaml:"$ref"`
		} `yaml:"channel"`
		Bindings struct {
			MQTT struct {
				QoS    *int  `yaml:"qos"`
				Retain *bool `yaml:"retain"`
			} `yaml:"mqtt"`
		} `yaml:"bindings"`
	} `yaml:"operations"`
	Components struct {
		Messages map[string]struct {
			ContentType string `yaml:"contentType"`
			MaxBatch    int    `yaml:"x-max-batch"`
			MaxBytes    int    `yaml:"x-max-payload-bytes"`
		} `yaml:"messages"`
	} `yaml:"components"`
}

func mustSpecAsyncAPI(tb testing.TB) (specAsyncAPI, []byte) {
	tb.Helper()
	raw, err := os.ReadFile(specAsyncAPIFile)
	if err != nil {
		tb.Fatalf("read spec: %v", err)
	}
	var doc specAsyncAPI
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		tb.Fatalf("parse %s: %v", specAsyncAPIFile, err)
	}
	return doc, raw
}

// TestAsyncAPIMatchesTopics checks the MQTT spec against shared/topic and
// shared/wire: the eight channel addresses, who sends on each, QoS and
// retained flags, the position payload limits, and the golden vectors it
// points to.
func TestAsyncAPIMatchesTopics(t *testing.T) {
	doc, raw := mustSpecAsyncAPI(t)
	if !strings.HasPrefix(doc.Version, "3.0") {
		t.Fatalf("asyncapi %q, want 3.0.x", doc.Version)
	}
	type want struct {
		action string // from the backend's side
		retain []bool // one operation per retained flag, in this order
		qos    int
	}
	tests := []struct {
		give string
		want want
	}{
		{give: topic.Courier(topic.DefaultPrefix, "{courier}", topic.Pos), want: want{"receive", []bool{false}, 1}},
		{give: topic.Courier(topic.DefaultPrefix, "{courier}", topic.State), want: want{"receive", []bool{true}, 1}},
		// Offers, assignments, cancellations are not retained; the route plan is.
		{give: topic.Courier(topic.DefaultPrefix, "{courier}", topic.Tasks), want: want{"send", []bool{false, true}, 1}},
		{give: topic.Courier(topic.DefaultPrefix, "{courier}", topic.Config), want: want{"send", []bool{true}, 1}},
		// Storage acknowledgements: a lost one costs a re-send, so QoS 0.
		{give: topic.Courier(topic.DefaultPrefix, "{courier}", topic.Ack), want: want{"send", []bool{false}, 0}},
		{give: topic.OwnTracksTopic("{courier}", "{device}"), want: want{"receive", []bool{false}, 1}},
		// The compact forms of positions and acknowledgements.
		{give: topic.CompactCourier(topic.DefaultPrefix, "{courier}", topic.Pos), want: want{"receive", []bool{false}, 1}},
		{give: topic.CompactCourier(topic.DefaultPrefix, "{courier}", topic.Ack), want: want{"send", []bool{false}, 0}},
	}
	if len(doc.Channels) != len(tests) {
		t.Errorf("%d channels, want %d", len(doc.Channels), len(tests))
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			var id string
			for cid, ch := range doc.Channels {
				if ch.Address == tt.give {
					id = cid
				}
			}
			if id == "" {
				t.Fatal("no channel with this address")
			}
			ch := doc.Channels[id]
			for _, p := range specTemplateParams(ch.Address) {
				if _, ok := ch.Parameters[p]; !ok {
					t.Errorf("address parameter %q not declared", p)
				}
			}
			if len(ch.Messages) == 0 {
				t.Error("no messages")
			}
			var retain []bool
			for name, op := range doc.Operations {
				if op.Channel.Ref != "#/channels/"+id {
					continue
				}
				if op.Action != tt.want.action {
					t.Errorf("operation %s: action %q, want %q", name, op.Action, tt.want.action)
				}
				switch q := op.Bindings.MQTT.QoS; {
				case q == nil:
					t.Errorf("operation %s: no mqtt qos binding", name)
				case *q != tt.want.qos:
					t.Errorf("operation %s: mqtt qos %d, want %d", name, *q, tt.want.qos)
				}
				if r := op.Bindings.MQTT.Retain; r == nil {
					t.Errorf("operation %s: no mqtt retain binding", name)
				} else {
					retain = append(retain, *r)
				}
			}
			slices.SortFunc(retain, func(a, b bool) int { return specBool(a) - specBool(b) })
			if !slices.Equal(retain, tt.want.retain) {
				t.Errorf("retained flags of the channel's operations %v, want %v", retain, tt.want.retain)
			}
		})
	}

	pos, ok := doc.Components.Messages["positionBatch"]
	switch {
	case !ok:
		t.Error("no positionBatch message")
	case pos.ContentType != "application/octet-stream":
		t.Errorf("positionBatch contentType %q", pos.ContentType)
	case pos.MaxBatch != wire.MaxBatch || pos.MaxBytes != wire.MaxPosPayload:
		t.Errorf("positionBatch limits %d fixes, %d bytes; wire has %d, %d", pos.MaxBatch, pos.MaxBytes, wire.MaxBatch, wire.MaxPosPayload)
	}

	// Every golden vector the spec names exists, and it names them all.
	const golden = "shared/wire/golden/testdata/"
	entries, err := os.ReadDir(filepath.Join(specRepoRoot, golden))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !strings.Contains(string(raw), golden+e.Name()) {
			t.Errorf("asyncapi.yaml does not point to %s%s", golden, e.Name())
		}
	}
	for _, m := range regexp.MustCompile(regexp.QuoteMeta(golden)+`[A-Za-z0-9_.-]+`).FindAllString(string(raw), -1) {
		if _, err := os.Stat(filepath.Join(specRepoRoot, m)); err != nil {
			t.Errorf("asyncapi.yaml points to %s: %v", m, err)
		}
	}
}
