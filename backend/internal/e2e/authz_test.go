package e2e

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/tawsil/tawsil/backend/internal/config"
	"github.com/tawsil/tawsil/backend/internal/mongostore"
	"github.com/tawsil/tawsil/backend/internal/order"
	"github.com/tawsil/tawsil/shared/wire"
)

// The roles a token can carry, and "" for a request without one.
const (
	roleAdmin      = "admin"
	roleMerchant   = "merchant"
	roleDispatcher = "dispatcher"
	roleCourier    = "courier"
	roleNone       = ""
)

var matrixRoles = []string{roleAdmin, roleMerchant, roleDispatcher, roleCourier}

// Ownership rules a route applies on top of the role check.
const (
	ownNone     = ""
	ownMerchant = "merchant: other merchants' objects are 404"
	ownCourier  = "courier: other couriers' orders and tracks are 404"
	ownSelf     = "self: acts on the caller's own account only"
)

// authzRow classifies one registered route: who may call it and which
// ownership rule applies. Every route the server registers must have a row.
type authzRow struct {
	public bool     // no token needed
	device bool     // device credentials (HTTP Basic) instead of a token: every bearer token is 401
	roles  []string // roles allowed (a token of any other role gets 403)
	owner  string
	// body returns a minimal request body for the caller, chosen so that an
	// allowed caller gets past the auth layer without changing anything
	// that later rows depend on. nil: no body.
	body func(caller authzCaller) any
	// header is sent with every request of the row (name, value pairs).
	header []string
}

// authzCaller is who sends a request of the matrix.
type authzCaller struct {
	role string
	user user
}

const (
	dummyID    = "aaaaaaaaaaaaaaaaaaaaaaaa" // a well-formed id no object has
	dummyToken = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
)

func static(v any) func(authzCaller) any { return func(authzCaller) any { return v } }

// authzTable is the authorization matrix, keyed by "METHOD path" as Fiber
// registers it. HEAD rows are those of GET.
func authzTable() map[string]authzRow {
	ops := []string{roleDispatcher, roleAdmin}
	orderReaders := []string{roleMerchant, roleDispatcher, roleAdmin}
	return map[string]authzRow{
		"GET /healthz": {public: true},
		"GET /readyz":  {public: true},
		"GET /metrics": {public: true},
		// Public auth routes: a body of the wrong type proves no token is
		// asked for without spending login attempts.
		"POST /v1/auth/login":   {public: true, body: static(map[string]any{"email": 1})},
		"POST /v1/auth/refresh": {public: true, body: static(map[string]any{"refresh_token": 1})},
		"POST /v1/auth/logout":  {roles: matrixRoles, owner: ownSelf},
		// The right old password and a too-short new one: 400, nothing changes.
		"POST /v1/auth/password": {roles: matrixRoles, owner: ownSelf, body: func(c authzCaller) any {
			return map[string]any{"old_password": c.user.Password, "new_password": "short"}
		}},
		"POST /v1/users": {roles: []string{roleAdmin}, body: static(map[string]any{"email": "new@tawsil.test",
			"password": "long-enough-pw", "role": "root", "name": "Nobody"})},
		"GET /v1/users/:id":                          {roles: []string{roleAdmin}},
		"POST /v1/users/:id/disable":                 {roles: []string{roleAdmin}},
		"POST /v1/users/:id/enable":                  {roles: []string{roleAdmin}},
		"DELETE /v1/users/:id":                       {roles: []string{roleAdmin}},
		"POST /v1/couriers/import":                   {roles: []string{roleAdmin}, body: static(map[string]any{"couriers": []any{}})},
		"POST /v1/couriers/:id/device-credentials":   {roles: []string{roleAdmin}},
		"PUT /v1/couriers/:id/profile":               {roles: []string{roleAdmin}, body: static(map[string]any{})},
		"DELETE /v1/couriers/:id/device-credentials": {roles: []string{roleAdmin}},
		"GET /v1/couriers":                           {roles: ops},
		"GET /v1/couriers/:id":                       {roles: ops},
		"GET /v1/couriers/:id/track":                 {roles: []string{roleDispatcher, roleAdmin, roleCourier}, owner: ownCourier},
		"POST /v1/me/shift":                          {roles: []string{roleCourier}, owner: ownSelf, body: static(map[string]any{"on_duty": true})},
		"GET /v1/density":                            {roles: ops},
		"GET /v1/density/alerts":                     {roles: ops},
		"GET /v1/audit":                              {roles: []string{roleAdmin}},
		"POST /v1/quotes": {roles: []string{roleMerchant}, body: static(map[string]any{
			"pickup": map[string]any{"lat": store[0], "lng": store[1]}, "dropoff": map[string]any{"lat": custA[0], "lng": custA[1]},
			"parcel": map[string]any{"size": "S"}})},
		// Without an Idempotency-Key the booking is refused (400) after the
		// role check: nothing is created.
		"POST /v1/orders":                     {roles: []string{roleMerchant}, owner: ownMerchant, body: static(bookBody(custA, "Matrix"))},
		"GET /v1/orders":                      {roles: orderReaders, owner: ownMerchant},
		"GET /v1/orders/:id":                  {roles: matrixRoles, owner: ownMerchant + "; " + ownCourier},
		"GET /v1/orders/:id/events":           {roles: orderReaders, owner: ownMerchant},
		"POST /v1/orders/:id/cancel":          {roles: orderReaders, owner: ownMerchant},
		"POST /v1/orders/:id/assign":          {roles: ops, body: static(map[string]any{"courier_id": dummyID})},
		"POST /v1/orders/:id/unassign":        {roles: ops},
		"POST /v1/orders/:id/resolve":         {roles: ops, body: static(map[string]any{"action": "return_to_merchant"})},
		"POST /v1/orders/:id/handover-unlock": {roles: ops},
		"POST /v1/orders/:id/customer-reply":  {roles: orderReaders, owner: ownMerchant, body: static(map[string]any{"reachable": true})},
		"POST /v1/orders/:id/accept":          {roles: []string{roleCourier}, owner: ownCourier},
		"POST /v1/orders/:id/decline":         {roles: []string{roleCourier}, owner: ownCourier},
		"POST /v1/orders/:id/pickup":          {roles: []string{roleCourier}, owner: ownCourier},
		"POST /v1/orders/:id/deliver":         {roles: []string{roleCourier}, owner: ownCourier},
		"POST /v1/orders/:id/fail":            {roles: []string{roleCourier}, owner: ownCourier, body: static(map[string]any{"reason": "CUSTOMER_UNAVAILABLE"})},
		"POST /v1/orders/:id/returned":        {roles: []string{roleCourier, roleDispatcher, roleAdmin}, owner: ownCourier},
		"GET /v1/me/tasks":                    {roles: []string{roleCourier}, owner: ownSelf},
		"GET /v1/me/data":                     {roles: []string{roleCourier, roleMerchant}, owner: ownSelf},
		"GET /v1/track/:token":                {public: true},
		// The web faces: pages, assets and texts are public; the pages sign in with the API.
		"GET /":                             {public: true},
		"GET /console/":                     {public: true},
		"GET /courier/":                     {public: true},
		"GET /courier/sw.js":                {public: true},
		"GET /courier/manifest.webmanifest": {public: true},
		"GET /t/:token":                     {public: true},
		"GET /assets/:file":                 {public: true},
		"GET /ui/i18n/:lang":                {public: true},
		"GET /ui/config":                    {public: true},
		"GET /tiles/:name/:z/:x/:y":         {public: true},
		"GET /tiles/:file":                  {public: true},
		"POST /v1/ingest/owntracks":         {device: true},
		"GET /v1/ingest/osmand":             {device: true},
		"POST /v1/ingest/osmand":            {device: true},
		"GET /v1/dispatch/at-risk":          {roles: ops},
		"GET /v1/stream":                    {roles: ops},
		"POST /v1/webhooks":                 {roles: []string{roleMerchant}, owner: ownMerchant, body: static(map[string]any{"url": "ftp://nowhere", "events": []string{"order.booked"}})},
		"GET /v1/webhooks":                  {roles: []string{roleMerchant}, owner: ownMerchant},
		"DELETE /v1/webhooks/:id":           {roles: []string{roleMerchant}, owner: ownMerchant},
		"GET /v1/webhooks/:id/deliveries":   {roles: []string{roleMerchant}, owner: ownMerchant},
		"POST /v1/webhooks/:id/ping":        {roles: []string{roleMerchant}, owner: ownMerchant},
		"POST /v1/webhooks/:id/deliveries/:event/redeliver": {roles: []string{roleMerchant}, owner: ownMerchant},
		"GET /v1/kpis":           {roles: orderReaders, owner: ownMerchant},
		"GET /v1/eta/model":      {roles: ops},
		"POST /v1/rules/dry-run": {roles: ops, body: static(map[string]any{"reason": "CUSTOMER_UNAVAILABLE", "attempt": 1})},
		"POST /v1/rules/reload":  {roles: []string{roleAdmin}},
		// Informal addresses: the customer's pin (public, the token is the key) and the staff's.
		"POST /v1/track/:token/pin": {public: true, body: static(map[string]any{"lat": custA[0], "lng": custA[1]})},
		"POST /v1/orders/:id/pin":   {roles: orderReaders, owner: ownMerchant, body: static(map[string]any{"lat": custA[0], "lng": custA[1]})},
		// Cash ledger: the dummy courier or merchant id is 404 once past the role check.
		"GET /v1/me/cash":                        {roles: []string{roleCourier}, owner: ownSelf},
		"GET /v1/cash/balances":                  {roles: ops},
		"GET /v1/couriers/:id/cash":              {roles: ops},
		"POST /v1/couriers/:id/cash/hand-ins":    {roles: ops, body: static(map[string]any{"amount_mad": 0})},
		"POST /v1/couriers/:id/cash/corrections": {roles: []string{roleAdmin}, body: static(map[string]any{"amount_mad": 0})},
		"GET /v1/couriers/:id/cash/settlements":  {roles: ops},
		"POST /v1/couriers/:id/cash/settlements": {roles: ops},
		"PUT /v1/couriers/:id/cash/cap":          {roles: []string{roleAdmin}, body: static(map[string]any{"cap_mad": -1})},
		"GET /v1/merchants/:id/cod":              {roles: orderReaders, owner: ownMerchant},
		"POST /v1/merchants/:id/cod/settlements": {roles: ops, body: static(map[string]any{"day": "x"})},
	}
}

// probe sends one request (event streams are left at once).
func (b *backend) probe(tb testing.TB, method, path, token string, body any, headers ...string) resp {
	tb.Helper()
	return b.do(tb, method, path, token, body, headers...)
}

func concretePath(p string) string {
	p = strings.ReplaceAll(p, ":token", dummyToken)
	return strings.ReplaceAll(p, ":id", dummyID)
}

// TestAuthzMatrix walks every registered route with every role and without
// a token, then checks object ownership across tenants.
func TestAuthzMatrix(t *testing.T) {
	b := mustBackend(t, func(c *config.Config) { c.WebhookAllowPrivate = true })
	admin, _ := b.login(t, adminEmail, adminPass)
	merchantA := b.mustUser(t, admin, roleMerchant)
	merchantB := b.mustUser(t, admin, roleMerchant)
	dispatcher := b.mustUser(t, admin, roleDispatcher)
	courierA := b.mustCourierDevice(t, admin)
	courierB := b.mustUser(t, admin, roleCourier)
	courierA.at(t, store, time.Now())
	callers := map[string]authzCaller{
		roleAdmin:      {role: roleAdmin, user: user{Email: adminEmail, Password: adminPass, Token: admin}},
		roleMerchant:   {role: roleMerchant, user: merchantA},
		roleDispatcher: {role: roleDispatcher, user: dispatcher},
		roleCourier:    {role: roleCourier, user: courierB},
		roleNone:       {role: roleNone},
	}

	// Objects of two tenants: merchant A books two orders, merchant B one;
	// courier A holds all three.
	var ordersA []orderOut
	for i, drop := range [][2]float64{custA, custB} {
		o := b.book(t, merchantA, "authz-a-"+string(rune('0'+i)), bookBody(drop, "Amal"))
		courierA.waitTask(t, wire.TaskOffer)
		b.mustStatus(t, 200, "POST", "/v1/orders/"+o.ID+"/accept", courierA.Token, nil)
		ordersA = append(ordersA, o)
	}
	orderB := b.book(t, merchantB, "authz-b-0", bookBody(custC, "Badr"))
	courierA.waitTask(t, wire.TaskOffer)
	b.mustStatus(t, 200, "POST", "/v1/orders/"+orderB.ID+"/accept", courierA.Token, nil)
	oA := ordersA[0]

	t.Run("merchant isolation", func(t *testing.T) {
		for _, tt := range []struct {
			give   string
			method string
			path   string
			body   any
		}{
			{"get", "GET", "/v1/orders/" + oA.ID, nil},
			{"events", "GET", "/v1/orders/" + oA.ID + "/events", nil},
			{"cancel", "POST", "/v1/orders/" + oA.ID + "/cancel", map[string]any{"reason": "not mine"}},
		} {
			t.Run(tt.give, func(t *testing.T) {
				r := b.probe(t, tt.method, tt.path, merchantB.Token, tt.body)
				if r.status != 404 || r.header.Get("Content-Type") != "application/problem+json" {
					t.Fatalf("merchant B %s A's order: %d %s, want 404 problem", tt.give, r.status, r.body)
				}
			})
		}
		r := b.mustStatus(t, 200, "GET", "/v1/orders/"+oA.ID, merchantA.Token, nil)
		if got := r.m(t); got["status"] != "assigned" || got["customer_phone"] != "+212612345678" {
			t.Fatalf("A's order after B's attempts: %s", r.body)
		}
		// A merchant's list is its own, whatever merchant_id it asks for.
		for _, tt := range []struct {
			give  user
			query string
			want  []string
		}{
			{merchantA, "", []string{ordersA[0].ID, ordersA[1].ID}},
			{merchantA, "?merchant_id=" + merchantB.MerchantID, []string{ordersA[0].ID, ordersA[1].ID}},
			{merchantB, "", []string{orderB.ID}},
			{dispatcher, "", []string{ordersA[0].ID, ordersA[1].ID, orderB.ID}},
			{dispatcher, "?merchant_id=" + merchantB.MerchantID, []string{orderB.ID}},
		} {
			var list struct {
				Orders []struct {
					ID            string `json:"id"`
					CustomerPhone string `json:"customer_phone"`
				} `json:"orders"`
			}
			b.mustStatus(t, 200, "GET", "/v1/orders"+tt.query, tt.give.Token, nil).json(t, &list)
			var got []string
			for _, o := range list.Orders {
				got = append(got, o.ID)
				if strings.Contains(o.CustomerPhone, "612345678") {
					t.Errorf("list shows an unmasked phone: %q", o.CustomerPhone)
				}
			}
			slices.Sort(got)
			want := slices.Sorted(slices.Values(tt.want))
			if !slices.Equal(got, want) {
				t.Errorf("%s lists %v%s, want %v", tt.give.Email, got, tt.query, want)
			}
		}
		// A dispatcher reads any merchant's order, with the phone masked.
		r = b.mustStatus(t, 200, "GET", "/v1/orders/"+orderB.ID, dispatcher.Token, nil)
		if strings.Contains(string(r.body), "612345678") || strings.Contains(string(r.body), `"handover_code":`) {
			t.Fatalf("dispatcher view leaks customer data: %s", r.body)
		}
		// Merchant B's data export holds nothing of A's.
		r = b.mustStatus(t, 200, "GET", "/v1/me/data", merchantB.Token, nil)
		if strings.Contains(string(r.body), oA.ID) || !strings.Contains(string(r.body), orderB.ID) {
			t.Fatalf("merchant B export: %s", r.body)
		}
	})

	t.Run("webhooks", func(t *testing.T) {
		r := b.mustStatus(t, 201, "POST", "/v1/webhooks", merchantA.Token, map[string]any{"url": "http://127.0.0.1:9/hook", "events": []string{"order.delivered"}})
		id := r.m(t)["id"].(string)
		b.mustStatus(t, 404, "DELETE", "/v1/webhooks/"+id, merchantB.Token, nil)
		if body := string(b.mustStatus(t, 200, "GET", "/v1/webhooks", merchantB.Token, nil).body); strings.Contains(body, id) {
			t.Fatalf("merchant B sees A's webhook: %s", body)
		}
		if body := string(b.mustStatus(t, 200, "GET", "/v1/webhooks", merchantA.Token, nil).body); !strings.Contains(body, id) || strings.Contains(body, "whsec_") {
			t.Fatalf("merchant A's webhooks after B's delete (secret must not be listed): %s", body)
		}
		b.mustStatus(t, 204, "DELETE", "/v1/webhooks/"+id, merchantA.Token, nil)
	})

	t.Run("kpis", func(t *testing.T) {
		for _, tt := range []struct {
			give  user
			query string
			want  int
		}{
			{merchantA, "", 2},
			{merchantA, "?group=merchant", 2},
			{merchantB, "", 1},
			{dispatcher, "", 3},
		} {
			var k struct {
				KPIs []struct {
					Group  string `json:"group"`
					Orders int    `json:"orders"`
				} `json:"kpis"`
			}
			b.mustStatus(t, 200, "GET", "/v1/kpis"+tt.query, tt.give.Token, nil).json(t, &k)
			sum := 0
			for _, g := range k.KPIs {
				sum += g.Orders
			}
			if len(k.KPIs) != 1 || sum != tt.want {
				t.Errorf("%s kpis%s: %+v, want one group of %d orders", tt.give.Email, tt.query, k.KPIs, tt.want)
			}
		}
		var k struct {
			KPIs []struct {
				Group  string `json:"group"`
				Orders int    `json:"orders"`
			} `json:"kpis"`
		}
		b.mustStatus(t, 200, "GET", "/v1/kpis?group=merchant", dispatcher.Token, nil).json(t, &k)
		byGroup := map[string]int{}
		for _, g := range k.KPIs {
			byGroup[g.Group] = g.Orders
		}
		if len(byGroup) != 2 || byGroup[merchantA.MerchantID] != 2 || byGroup[merchantB.MerchantID] != 1 {
			t.Errorf("dispatcher kpis by merchant: %+v", k.KPIs)
		}
	})

	t.Run("courier isolation", func(t *testing.T) {
		for _, tt := range []struct {
			give string
			body any
		}{
			{"accept", nil}, {"decline", nil}, {"pickup", nil},
			{"deliver", map[string]any{"handover_code": oA.HandoverCode}},
			{"fail", map[string]any{"reason": "CUSTOMER_UNAVAILABLE"}},
			{"returned", nil},
		} {
			t.Run(tt.give, func(t *testing.T) {
				b.mustStatus(t, 404, "POST", "/v1/orders/"+oA.ID+"/"+tt.give, courierB.Token, tt.body)
			})
		}
		b.mustStatus(t, 404, "GET", "/v1/orders/"+oA.ID, courierB.Token, nil)
		b.mustStatus(t, 404, "GET", "/v1/couriers/"+courierA.CourierID+"/track", courierB.Token, nil)
		b.mustStatus(t, 403, "GET", "/v1/couriers/"+courierA.CourierID+"/track", merchantA.Token, nil)
		if body := string(b.mustStatus(t, 200, "GET", "/v1/me/tasks", courierB.Token, nil).body); strings.Contains(body, oA.ID) {
			t.Fatalf("courier B's tasks show A's order: %s", body)
		}
		// The owner still can, and the order did not move.
		b.mustStatus(t, 200, "GET", "/v1/orders/"+oA.ID, courierA.Token, nil)
		r := b.mustStatus(t, 200, "GET", "/v1/couriers/"+courierA.CourierID+"/track", courierA.Token, nil)
		if !strings.Contains(string(r.body), `"seq"`) {
			t.Fatalf("courier A's own track is empty: %s", r.body)
		}
		if st := b.mustStatus(t, 200, "GET", "/v1/orders/"+oA.ID, merchantA.Token, nil).m(t)["status"]; st != "assigned" {
			t.Fatalf("A's order is %v after courier B's attempts", st)
		}
	})

	t.Run("matrix", func(t *testing.T) {
		table := authzTable()
		routes := b.HTTP.App().GetRoutes(true)
		// Logout revokes the caller's tokens: run it last.
		isLogout := func(r fiber.Route) bool { return r.Path == "/v1/auth/logout" }
		slices.SortStableFunc(routes, func(x, y fiber.Route) int {
			switch {
			case isLogout(x) == isLogout(y):
				return 0
			case isLogout(x):
				return 1
			}
			return -1
		})
		seen := map[string]bool{}
		for _, rt := range routes {
			method := rt.Method
			if method == "HEAD" {
				method = "GET"
			}
			key := method + " " + rt.Path
			row, ok := table[key]
			if !ok {
				t.Errorf("route %s %s has no row in the authorization table: classify it", rt.Method, rt.Path)
				continue
			}
			seen[key] = true
			path := concretePath(rt.Path)
			for _, role := range append([]string{roleNone}, matrixRoles...) {
				c := callers[role]
				var body any
				if row.body != nil && rt.Method != "HEAD" {
					body = row.body(c)
				}
				r := b.probe(t, rt.Method, path, c.user.Token, body, row.header...)
				name := rt.Method + " " + rt.Path + " as " + cmpOr(role, "anonymous")
				switch {
				case r.status >= 500:
					t.Errorf("%s: %d %s", name, r.status, r.body)
				case row.device:
					if r.status != 401 || !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Basic") {
						t.Errorf("%s (device): %d (WWW-Authenticate %q) %s, want 401 Basic", name, r.status, r.header.Get("WWW-Authenticate"), r.body)
					}
				case row.public:
					if r.status == 401 || r.status == 403 {
						t.Errorf("%s (public): %d %s", name, r.status, r.body)
					}
				case role == roleNone:
					if r.status != 401 || !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
						t.Errorf("%s: %d (WWW-Authenticate %q) %s, want 401", name, r.status, r.header.Get("WWW-Authenticate"), r.body)
					}
				case !slices.Contains(row.roles, role):
					if r.status != 403 {
						t.Errorf("%s: %d %s, want 403", name, r.status, r.body)
					}
				default:
					if r.status == 401 || r.status == 403 {
						t.Errorf("%s (allowed): %d %s", name, r.status, r.body)
					}
				}
				if r.status >= 400 && rt.Method != "HEAD" && r.header.Get("Content-Type") != "application/problem+json" {
					t.Errorf("%s: error %d without problem+json: %q", name, r.status, r.header.Get("Content-Type"))
				}
			}
		}
		for key := range table {
			if !seen[key] {
				t.Errorf("table row %q matches no registered route: remove it", key)
			}
		}
		// The matrix changed nothing: still three orders, A's still assigned,
		// no new user.
		os, err := b.Store.Orders(t.Context(), mongostore.OrderFilter{Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		if len(os) != 3 {
			t.Fatalf("the matrix changed the order count: %d", len(os))
		}
		for _, o := range os {
			if o.Status != order.StatusAssigned {
				t.Errorf("order %s is %s after the matrix", o.ID, o.Status)
			}
		}
		if n, err := b.Store.CountUsers(t.Context()); err != nil || n != 6 {
			t.Errorf("users after the matrix: %d, %v; want 6", n, err)
		}
		// Logout ran last for every role: their tokens are dead now.
		for _, role := range matrixRoles {
			if r := b.probe(t, "GET", "/v1/orders/"+oA.ID, callers[role].user.Token, nil); r.status != 401 {
				t.Errorf("%s token after logout: %d", role, r.status)
			}
		}
	})
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
