package e2e

import (
	"context"
	"errors"

	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
)

// Every response the e2e tests receive is checked against api/openapi.yaml:
// status documented for the operation, headers and body matching the
// schema. A mismatch fails the test that made the request.

var (
	specRouterOnce sync.Once
	specRouter     routers.Router
	specRouterErr  error
)

func mustSpecRouter(tb testing.TB) routers.Router {
	tb.Helper()
	specRouterOnce.Do(func() {
		// The web routes answer pages and scripts: their bodies are checked
		// as strings (the schema says type string), manifests as JSON.
		for _, ct := range []string{"text/html", "text/javascript", "text/css", "text/plain"} {
			openapi3filter.RegisterBodyDecoder(ct, openapi3filter.PlainBodyDecoder)
		}
		openapi3filter.RegisterBodyDecoder("application/manifest+json", openapi3filter.JSONBodyDecoder)
		loader := openapi3.NewLoader()
		doc, err := loader.LoadFromFile(specOpenAPIFile)
		if err != nil {
			specRouterErr = err
			return
		}
		doc.Servers = nil // routes match on the path: the test server's port is its own
		specRouter, specRouterErr = legacy.NewRouter(doc)
	})
	if specRouterErr != nil {
		tb.Fatalf("load %s: %v", specOpenAPIFile, specRouterErr)
	}
	return specRouter
}

// checkResponse validates one response against the operation the request
// matches. Requests outside the spec (unknown routes, methods) and HEAD
// requests are not checked; event streams are checked up to their headers.
func checkResponse(tb testing.TB, req *http.Request, status int, header http.Header, body []byte) {
	tb.Helper()
	if req.Method == http.MethodHead || req.Method == http.MethodOptions {
		return
	}
	route, params, err := mustSpecRouter(tb).FindRoute(req)
	if err != nil {
		return // not an operation of the spec: the route tests cover those
	}
	if strings.HasPrefix(header.Get("Content-Type"), "text/event-stream") {
		return
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}},
		Status: status,
		Header: header,
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true,
			AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
	}
	in.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		var me openapi3.MultiError
		msg := err.Error()
		if errors.As(err, &me) {
			msg = me.Error()
		}
		tb.Errorf("%s %s → %d does not match api/openapi.yaml (%s %s): %s\nbody: %.3000s",
			req.Method, req.URL.RequestURI(), status, route.Method, route.Path, msg, body)
	}
}
