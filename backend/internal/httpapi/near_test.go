package httpapi

import (
	"encoding/json"
	"net/http/httptest"
	"testing"

	"github.com/tawsil/tawsil/backend/internal/livemap"
)

// TestNearStatusFilter: near= answers only couriers of the status asked
// for (the filter's status lists are shared between requests), and all
// statuses without one.
func TestNearStatusFilter(t *testing.T) {
	fx := newNearFixture(t, 300)
	busy := map[string]bool{}
	for _, id := range []string{"bench-courier-000003", "bench-courier-000042", "bench-courier-000299"} {
		if err := fx.idx.SetStatus(id, livemap.StatusBusy, 1); err != nil {
			t.Fatal(err)
		}
		busy[id] = true
	}
	get := func(query string) []courierJSON {
		t.Helper()
		req := httptest.NewRequest("GET", "/v1/couriers?near=33.55,-7.6&limit=500&radius_m=100000"+query, nil)
		req.Header.Set("Authorization", "Bearer "+fx.token)
		res, err := fx.s.App().Test(req, -1)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var out struct{ Couriers []courierJSON }
		if res.StatusCode != 200 || json.NewDecoder(res.Body).Decode(&out) != nil {
			t.Fatalf("%s: status %d", query, res.StatusCode)
		}
		return out.Couriers
	}
	// Twice each, and interleaved: a shared list must not carry one
	// request's status into the next.
	for range 2 {
		if got := get("&status=busy"); len(got) != len(busy) {
			t.Fatalf("status=busy: %d couriers, want %d", len(got), len(busy))
		} else {
			for _, c := range got {
				if !busy[c.ID] || c.Status != "busy" {
					t.Fatalf("status=busy answered %s (%s)", c.ID, c.Status)
				}
			}
		}
		got := get("&status=available")
		if len(got) != 300-len(busy) {
			t.Fatalf("status=available: %d couriers, want %d", len(got), 300-len(busy))
		}
		for _, c := range got {
			if busy[c.ID] || c.Status != "available" {
				t.Fatalf("status=available answered %s (%s)", c.ID, c.Status)
			}
		}
		if got := get(""); len(got) != 300 {
			t.Fatalf("no status: %d couriers, want 300", len(got))
		}
	}
}

// TestNearPrincipalPerRequest: the role check sees each request's own
// principal (kept in the access log's record of the request), whatever
// the requests before it on the same server were.
func TestNearPrincipalPerRequest(t *testing.T) {
	fx := newNearFixture(t, 50)
	for i, tc := range []struct {
		token string
		want  int
	}{{fx.token, 200}, {fx.courierToken, 403}, {"", 401}, {fx.token, 200}, {"", 401}, {fx.courierToken, 403}, {fx.token, 200}} {
		req := httptest.NewRequest("GET", "/v1/couriers?near=33.55,-7.6&limit=5", nil)
		if tc.token != "" {
			req.Header.Set("Authorization", "Bearer "+tc.token)
		}
		res, err := fx.s.App().Test(req, -1)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != tc.want {
			t.Fatalf("request %d: status %d, want %d", i, res.StatusCode, tc.want)
		}
	}
}
