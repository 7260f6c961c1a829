package httpapi

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tawsil/tawsil/backend/internal/mongostore"
)

// runningIdem is an idempotency store whose every key is claimed by a
// request still running: same body, no answer kept yet.
type runningIdem struct{}

func (runningIdem) ClaimIdempotencyKey(_ context.Context, k mongostore.IdemKey) (mongostore.IdemKey, bool, error) {
	return k, true, nil
}
func (runningIdem) IdemResponse(context.Context, string, string) (*mongostore.StoredResponse, error) {
	return nil, nil
}
func (runningIdem) SaveIdemResponse(context.Context, string, string, mongostore.StoredResponse) error {
	return nil
}
func (runningIdem) ReleaseIdemKey(context.Context, string, string) error { return nil }

// TestIdempotencyKeyInProgress: a key whose first request is still running
// is answered 409 with its own problem type and Retry-After, whatever the
// language, so that a client retries on the type, not on the words of the
// detail (the courier app matched the English detail and, in French or
// Arabic, dropped an offline action as refused: a CI run's browser test
// caught it, with the French detail on the courier's screen).
func TestIdempotencyKeyInProgress(t *testing.T) {
	s := &Server{Idem: runningIdem{}, log: slog.New(slog.DiscardHandler)}
	app := testApp(t, s.idempotent)
	for _, lang := range []string{"en", "fr", "ar"} {
		req := httptest.NewRequest("POST", "/t", strings.NewReader(`{}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", "k-1")
		req.Header.Set("Accept-Language", lang)
		res, err := app.Test(req, -1)
		if err != nil {
			t.Fatal(err)
		}
		var p struct{ Type string }
		err = json.NewDecoder(res.Body).Decode(&p)
		res.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if res.StatusCode != 409 || p.Type != "https://tawsil.ma/problems/idempotency-key-in-progress" || res.Header.Get("Retry-After") != "1" {
			t.Errorf("%s: %d %q Retry-After %q, want 409 .../idempotency-key-in-progress, Retry-After 1", lang, res.StatusCode, p.Type, res.Header.Get("Retry-After"))
		}
	}
}
