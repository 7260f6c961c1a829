package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"

	"github.com/tawsil/tawsil/backend/internal/account"
	"github.com/tawsil/tawsil/backend/internal/auth"
	"github.com/tawsil/tawsil/backend/internal/delivery"
	"github.com/tawsil/tawsil/backend/internal/eta"
	"github.com/tawsil/tawsil/backend/internal/failure"
	"github.com/tawsil/tawsil/backend/internal/mongostore"
	"github.com/tawsil/tawsil/backend/internal/order"
	"github.com/tawsil/tawsil/backend/internal/textsafe"
)

// Orders is what the order routes need.
type Orders struct {
	Svc       *delivery.Service
	Webhooks  *delivery.Webhooks
	Store     *mongostore.Store
	Hub       *delivery.Hub
	ETA       *eta.Model
	Rules     *failure.Engine
	RulesFile string
	Costs     delivery.Costs
}

// MountOrders registers quotes, orders, the courier flow, dispatch views,
// webhooks, KPIs, the ETA model, rules and public tracking.
func (s *Server) MountOrders(o Orders) {
	s.addMapping(order.ErrNotFound, 404, "not-found")
	s.addMapping(order.ErrInvalidTransition, 409, "invalid-transition")
	s.addMapping(order.ErrConflict, 409, "conflict")
	s.addMapping(order.ErrForbidden, 403, "forbidden")
	s.addMapping(order.ErrInvalidAction, 400, "invalid-action")
	s.addMapping(order.ErrInvalidOrder, 400, "invalid-order")
	s.addMapping(order.ErrHandoverCode, 422, "handover-code")
	s.addMapping(delivery.ErrHandoverLocked, 423, "handover-locked")
	s.addMapping(delivery.ErrOutsideArea, 422, "outside-service-area")
	s.addMapping(delivery.ErrInfeasible, 409, "infeasible")
	s.addMapping(delivery.ErrIdemReuse, 422, "idempotency-key-reused")
	s.addMapping(delivery.ErrTooFar, 409, "not-at-place")
	s.addMapping(delivery.ErrNoPosition, 409, "no-position")
	s.addMapping(delivery.ErrNoCourier, 409, "courier-unavailable")
	s.addMapping(delivery.ErrInput, 400, "invalid")
	s.addMapping(delivery.ErrPinClosed, 409, "pin-closed")
	s.addMapping(delivery.ErrWebhook, 400, "invalid-webhook")
	s.addMapping(failure.ErrUnknownReason, 400, "unknown-reason")

	v1 := s.V1()
	merchant := s.need(auth.RoleMerchant)
	ops := s.need(auth.RoleDispatcher, auth.RoleAdmin)
	// Courier actions honour Idempotency-Key: the courier app replays actions
	// taken offline, and a replay whose first answer was lost gets it again.
	courier := s.need(auth.RoleCourier)
	v1.Post("/quotes", s.authn, merchant, o.quote)
	v1.Post("/orders", s.authn, merchant, o.book)
	v1.Get("/orders", s.authn, s.need(auth.RoleMerchant, auth.RoleDispatcher, auth.RoleAdmin), o.list)
	v1.Get("/orders/:id", s.authn, o.get)
	v1.Get("/orders/:id/events", s.authn, s.need(auth.RoleMerchant, auth.RoleDispatcher, auth.RoleAdmin), o.events)
	v1.Post("/orders/:id/cancel", s.authn, s.need(auth.RoleMerchant, auth.RoleDispatcher, auth.RoleAdmin), o.cancel)
	v1.Post("/orders/:id/assign", s.authn, ops, o.assign)
	v1.Post("/orders/:id/unassign", s.authn, ops, o.unassign)
	v1.Post("/orders/:id/resolve", s.authn, ops, o.resolve)
	v1.Post("/orders/:id/handover-unlock", s.authn, ops, func(c *fiber.Ctx) error { return s.unlockHandover(c, o) })
	v1.Post("/orders/:id/customer-reply", s.authn, s.need(auth.RoleMerchant, auth.RoleDispatcher, auth.RoleAdmin), o.customerReply)
	v1.Post("/orders/:id/accept", s.authn, courier, s.idempotent, o.courierAct("accept"))
	v1.Post("/orders/:id/decline", s.authn, courier, s.idempotent, o.courierAct("decline"))
	v1.Post("/orders/:id/pickup", s.authn, courier, s.idempotent, o.courierAct("pickup"))
	v1.Post("/orders/:id/deliver", s.authn, courier, s.idempotent, o.courierAct("deliver"))
	v1.Post("/orders/:id/fail", s.authn, courier, s.idempotent, o.fail)
	v1.Post("/orders/:id/returned", s.authn, s.need(auth.RoleCourier, auth.RoleDispatcher, auth.RoleAdmin), o.courierAct("returned"))
	v1.Get("/me/tasks", s.authn, courier, o.tasks)
	v1.Get("/me/data", s.authn, s.need(auth.RoleCourier, auth.RoleMerchant), func(c *fiber.Ctx) error { return s.myData(c, o) })
	v1.Get("/track/:token", s.limit(s.opts.PublicRate), o.track)
	v1.Post("/track/:token/pin", s.limit(s.opts.PublicRate), o.trackPin)
	v1.Post("/orders/:id/pin", s.authn, s.need(auth.RoleMerchant, auth.RoleDispatcher, auth.RoleAdmin), func(c *fiber.Ctx) error { return s.orderPin(c, o) })
	v1.Get("/dispatch/at-risk", s.authn, ops, func(c *fiber.Ctx) error { return c.JSON(fiber.Map{"orders": o.Svc.AtRisk()}) })
	v1.Get("/stream", s.authn, ops, s.stream(o))
	v1.Post("/webhooks", s.authn, merchant, s.idempotent, o.addWebhook)
	v1.Get("/webhooks", s.authn, merchant, o.listWebhooks)
	v1.Delete("/webhooks/:id", s.authn, merchant, o.deleteWebhook)
	v1.Get("/webhooks/:id/deliveries", s.authn, merchant, o.webhookDeliveries)
	v1.Post("/webhooks/:id/ping", s.authn, merchant, s.limit(o.pingRate()), o.pingWebhook)
	v1.Post("/webhooks/:id/deliveries/:event/redeliver", s.authn, merchant, s.limit(o.pingRate()), o.redeliverWebhook)
	v1.Get("/kpis", s.authn, s.need(auth.RoleMerchant, auth.RoleDispatcher, auth.RoleAdmin), o.kpis)
	v1.Get("/eta/model", s.authn, ops, func(c *fiber.Ctx) error { return c.JSON(o.ETA.Snapshot()) })
	v1.Post("/rules/dry-run", s.authn, ops, o.dryRun)
	v1.Post("/rules/reload", s.authn, s.need(auth.RoleAdmin), o.reloadRules)
}

func actor(c *fiber.Ctx) order.Actor {
	p := principal(c)
	id := p.UserID
	switch p.Role {
	case auth.RoleCourier:
		id = p.CourierID
	case auth.RoleMerchant:
		id = p.MerchantID
	}
	return order.Actor{Role: order.Role(p.Role), ID: id}
}

type placeJSON struct {
	Lat         *float64 `json:"lat"`
	Lng         *float64 `json:"lng"`
	Address     string   `json:"address"`
	Landmark    string   `json:"landmark"`
	Approximate bool     `json:"approximate"`
}

func (p placeJSON) place(name string) (order.Place, error) {
	if p.Lat == nil || p.Lng == nil {
		return order.Place{}, badRequest(name + ".lat and " + name + ".lng are required")
	}
	if p.Approximate || p.Landmark != "" {
		return order.Place{}, badRequest(name + ".approximate and " + name + ".landmark are for a booking's drop-off only")
	}
	return order.Place{Lat: *p.Lat, Lng: *p.Lng, Address: textsafe.Name(p.Address)}, nil
}

// informal reads a booking's drop-off that may be an informal address: a
// description (address, landmark) without coordinates, or approximate ones.
// pin tells whether the customer must confirm the point.
func (p placeJSON) informal() (pl order.Place, pin, located bool, err error) {
	pl = order.Place{Address: textsafe.Name(p.Address), Landmark: textsafe.Name(p.Landmark)}
	if utf8.RuneCountInString(pl.Landmark) > 300 {
		return order.Place{}, false, false, badRequest("dropoff.landmark longer than 300 characters")
	}
	if (p.Lat == nil) != (p.Lng == nil) {
		return order.Place{}, false, false, badRequest("dropoff.lat and dropoff.lng go together")
	}
	if p.Lat == nil {
		if pl.Address == "" && pl.Landmark == "" {
			return order.Place{}, false, false, badRequest("dropoff needs lat and lng, or an address or landmark the customer's pin will locate")
		}
		return pl, true, false, nil
	}
	pl.Lat, pl.Lng = *p.Lat, *p.Lng
	return pl, p.Approximate, true, nil
}

type quoteJSON struct {
	Pickup  placeJSON `json:"pickup"`
	Dropoff placeJSON `json:"dropoff"`
	Parcel  struct {
		Size string `json:"size"`
	} `json:"parcel"`
	CODAmountMAD float64 `json:"cod_amount_mad"`
	AllowLater   bool    `json:"allow_later"`
	ReadyInMin   int     `json:"ready_in_min"`
}

func (q quoteJSON) request() (delivery.QuoteRequest, error) {
	pu, err := q.Pickup.place("pickup")
	if err != nil {
		return delivery.QuoteRequest{}, err
	}
	do, err := q.Dropoff.place("dropoff")
	if err != nil {
		return delivery.QuoteRequest{}, err
	}
	readyIn, err := delivery.ReadyIn(q.ReadyInMin)
	if err != nil {
		return delivery.QuoteRequest{}, err
	}
	return delivery.QuoteRequest{Pickup: pu, Dropoff: do, Size: order.Size(q.Parcel.Size), CODAmount: q.CODAmountMAD, AllowLater: q.AllowLater,
		ReadyIn: readyIn}, nil
}

func (o Orders) quote(c *fiber.Ctx) error {
	var req quoteJSON
	if err := decode(c, &req); err != nil {
		return err
	}
	qr, err := req.request()
	if err != nil {
		return err
	}
	q, err := o.Svc.Quote(c.UserContext(), qr)
	if err != nil {
		return err
	}
	return c.JSON(q)
}

type bookJSON struct {
	quoteJSON
	Customer struct {
		Name  string `json:"name"`
		Phone string `json:"phone"`
	} `json:"customer"`
	Notes            string `json:"notes"`
	ConfirmWithinMin int    `json:"confirm_within_min"`
}

func (o Orders) book(c *fiber.Ctx) error {
	key := c.Get("Idempotency-Key")
	if key == "" || len(key) > 128 || !utf8.ValidString(key) || textsafe.Identifier(key) != nil {
		return badRequest("the Idempotency-Key header is required (1 to 128 characters)")
	}
	var req bookJSON
	if err := decode(c, &req); err != nil {
		return err
	}
	pu, err := req.Pickup.place("pickup")
	if err != nil {
		return err
	}
	do, pin, located, err := req.Dropoff.informal()
	if err != nil {
		return err
	}
	within, err := delivery.PinWindow(req.ConfirmWithinMin)
	if err != nil {
		return err
	}
	readyIn, err := delivery.ReadyIn(req.ReadyInMin)
	if err != nil {
		return err
	}
	qr := delivery.QuoteRequest{Pickup: pu, Dropoff: do, Size: order.Size(req.Parcel.Size), CODAmount: req.CODAmountMAD, AllowLater: req.AllowLater,
		ReadyIn: readyIn}
	p := principal(c)
	so, created, err := o.Svc.Book(c.UserContext(), p.MerchantID, key, c.Body(), delivery.BookRequest{QuoteRequest: qr,
		CustomerName: req.Customer.Name, CustomerPhone: req.Customer.Phone, Notes: req.Notes,
		Pin: pin, Located: located, ConfirmWithin: within})
	if err != nil {
		return err
	}
	status := fiber.StatusCreated
	if !created {
		status = fiber.StatusOK
		c.Set("Idempotent-Replayed", "true")
	}
	return c.Status(status).JSON(orderView(so, viewOwner))
}

type view int

const (
	viewList  view = iota // phone masked
	viewOwner             // the merchant's own order: full phone, handover code
	viewOps               // dispatcher/admin single read: masked phone
)

type orderJSON struct {
	*order.Order
	CustomerPhone string `json:"customer_phone"`
	TrackingToken string `json:"tracking_token,omitempty"`
	HandoverCode  string `json:"handover_code,omitempty"`
	RelayID       string `json:"relay_id,omitempty"`
}

func orderView(so *mongostore.StoredOrder, v view) orderJSON {
	out := orderJSON{Order: so.Order, CustomerPhone: order.MaskPhone(so.CustomerPhone), RelayID: so.RelayID}
	if v == viewOwner {
		out.CustomerPhone, out.TrackingToken, out.HandoverCode = so.CustomerPhone, so.TrackingToken, so.HandoverCode
	}
	if so.Redacted {
		out.CustomerPhone = ""
	}
	return out
}

// owned loads an order and hides it (404) from merchants and couriers it
// does not belong to.
func (o Orders) owned(c *fiber.Ctx) (*mongostore.StoredOrder, error) {
	id := c.Params("id")
	if !validID(id) {
		return nil, notFound("order")
	}
	so, err := o.Svc.Order(c.UserContext(), id)
	if err != nil {
		return nil, err
	}
	p := principal(c)
	switch p.Role {
	case auth.RoleMerchant:
		if so.MerchantID != p.MerchantID {
			return nil, notFound("order")
		}
	case auth.RoleCourier:
		if so.CourierID != p.CourierID && so.OfferedTo != p.CourierID {
			// The cached copy may be behind another replica's offer or assignment.
			if so, err = o.Svc.FreshOrder(c.UserContext(), id); err != nil {
				return nil, err
			}
			if so.CourierID != p.CourierID && so.OfferedTo != p.CourierID {
				return nil, notFound("order")
			}
		}
	}
	return so, nil
}

func (o Orders) get(c *fiber.Ctx) error {
	so, err := o.owned(c)
	if err != nil {
		return err
	}
	switch principal(c).Role {
	case auth.RoleMerchant:
		return c.JSON(orderView(so, viewOwner))
	case auth.RoleCourier:
		tasks, _, _ := o.Svc.Tasks(principal(c).CourierID)
		for _, t := range tasks {
			if t.OrderID == so.ID {
				return c.JSON(t)
			}
		}
		return notFound("order")
	}
	return c.JSON(orderView(so, viewOps))
}

func (o Orders) events(c *fiber.Ctx) error {
	so, err := o.owned(c)
	if err != nil {
		return err
	}
	evs, err := o.Svc.Events(c.UserContext(), so.ID)
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"events": evs})
}

func (o Orders) list(c *fiber.Ctx) error {
	limit, err := queryInt(c, "limit", 50, 1, 200)
	if err != nil {
		return err
	}
	f := mongostore.OrderFilter{Limit: limit, After: c.Query("after")}
	if f.After != "" && !validID(f.After) {
		return badRequest("after must be an order id from a previous page")
	}
	if p := principal(c); p.Role == auth.RoleMerchant {
		f.MerchantID = p.MerchantID
	} else if m := c.Query("merchant_id"); m != "" {
		if !validID(m) {
			return badRequest("merchant_id is not an id")
		}
		f.MerchantID = m
	}
	if st := c.Query("status"); st != "" {
		for _, part := range strings.Split(st, ",") {
			s := order.Status(part)
			if !isStatus(s) {
				return badRequest(fmt.Sprintf("unknown status %q", part))
			}
			f.Statuses = append(f.Statuses, s)
		}
	}
	if f.From, err = queryTime(c, "from"); err != nil {
		return err
	}
	if f.To, err = queryTime(c, "to"); err != nil {
		return err
	}
	os, err := o.Svc.Orders(c.UserContext(), f)
	if err != nil {
		return err
	}
	out := make([]orderJSON, len(os))
	for i := range os {
		out[i] = orderView(&os[i], viewList)
	}
	next := ""
	if len(os) == limit {
		next = os[len(os)-1].ID
	}
	return c.JSON(fiber.Map{"orders": out, "next": next})
}

func isStatus(s order.Status) bool {
	for _, st := range order.Statuses() {
		if st == s {
			return true
		}
	}
	return false
}

func queryTime(c *fiber.Ctx, name string) (time.Time, error) {
	v := c.Query(name)
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, badRequest(name + " must be an RFC 3339 time")
	}
	return t, nil
}

type reasonJSON struct {
	Reason string `json:"reason"`
}

func optionalBody(c *fiber.Ctx, dst any) error {
	if len(c.Body()) == 0 {
		return nil
	}
	return decode(c, dst)
}

func (o Orders) cancel(c *fiber.Ctx) error {
	if _, err := o.owned(c); err != nil {
		return err
	}
	var req reasonJSON
	if err := optionalBody(c, &req); err != nil {
		return err
	}
	if utf8.RuneCountInString(req.Reason) > 300 {
		return badRequest("reason longer than 300 characters")
	}
	so, err := o.Svc.Cancel(c.UserContext(), actor(c), c.Params("id"), req.Reason)
	if err != nil {
		return err
	}
	return c.JSON(orderView(so, viewList))
}

func (o Orders) assign(c *fiber.Ctx) error {
	var req struct {
		CourierID string `json:"courier_id"`
	}
	if err := decode(c, &req); err != nil {
		return err
	}
	if !validID(req.CourierID) {
		return badRequest("courier_id is required")
	}
	if _, err := o.owned(c); err != nil {
		return err
	}
	so, err := o.Svc.Assign(c.UserContext(), actor(c), c.Params("id"), req.CourierID)
	if err != nil {
		return err
	}
	return c.JSON(orderView(so, viewOps))
}

func (o Orders) unassign(c *fiber.Ctx) error {
	if _, err := o.owned(c); err != nil {
		return err
	}
	var req reasonJSON
	if err := optionalBody(c, &req); err != nil {
		return err
	}
	so, err := o.Svc.Unassign(c.UserContext(), actor(c), c.Params("id"), req.Reason)
	if err != nil {
		return err
	}
	return c.JSON(orderView(so, viewOps))
}

func (o Orders) resolve(c *fiber.Ctx) error {
	var req struct {
		Action string `json:"action"`
	}
	if err := decode(c, &req); err != nil {
		return err
	}
	if _, err := o.owned(c); err != nil {
		return err
	}
	so, err := o.Svc.Resolve(c.UserContext(), actor(c), c.Params("id"), req.Action)
	if err != nil {
		return err
	}
	return c.JSON(orderView(so, viewOps))
}

// unlockHandover lets couriers locked out of an order by wrong handover
// codes try again (dispatchers, admins); audited.
func (s *Server) unlockHandover(c *fiber.Ctx, o Orders) error {
	if _, err := o.owned(c); err != nil {
		return err
	}
	so, n, err := o.Svc.UnlockHandover(c.UserContext(), actor(c), c.Params("id"))
	if err != nil {
		return err
	}
	s.audit(c, string(delivery.KindHandoverUnlocked), "order:"+so.ID, "")
	return c.JSON(fiber.Map{"order_id": so.ID, "status": so.Status, "unlocked_couriers": n})
}

func (o Orders) customerReply(c *fiber.Ctx) error {
	var req struct {
		Reachable *bool `json:"reachable"`
	}
	if err := decode(c, &req); err != nil {
		return err
	}
	if req.Reachable == nil {
		return badRequest("reachable (boolean) is required")
	}
	if _, err := o.owned(c); err != nil {
		return err
	}
	so, err := o.Svc.CustomerReply(c.UserContext(), c.Params("id"), *req.Reachable)
	if err != nil {
		return err
	}
	return c.JSON(orderView(so, viewList))
}

type deliverJSON struct {
	HandoverCode string  `json:"handover_code"`
	ProofRef     string  `json:"proof_ref"`
	CashMAD      float64 `json:"cash_collected_mad"`
	ChangeMAD    float64 `json:"change_given_mad"`
}

func (o Orders) courierAct(what string) fiber.Handler {
	return func(c *fiber.Ctx) error {
		if _, err := o.owned(c); err != nil {
			return err
		}
		ctx, a, id := c.UserContext(), actor(c), c.Params("id")
		var so *mongostore.StoredOrder
		var err error
		switch what {
		case "accept":
			so, err = o.Svc.Accept(ctx, a, id)
		case "decline":
			var req reasonJSON
			if err := optionalBody(c, &req); err != nil {
				return err
			}
			so, err = o.Svc.Decline(ctx, a, id, req.Reason)
		case "pickup":
			so, err = o.Svc.Pickup(ctx, a, id)
		case "deliver":
			var req deliverJSON
			if err := optionalBody(c, &req); err != nil {
				return err
			}
			so, err = o.Svc.Deliver(ctx, a, id, req.HandoverCode, req.ProofRef, req.CashMAD, req.ChangeMAD)
			var te *delivery.ThrottledError
			if errors.As(err, &te) {
				return &apiError{status: 429, slug: "rate-limited", detail: "too many wrong handover codes; try again later",
					retryAfter: max(1, int(te.Wait.Seconds()+0.999))}
			}
		case "returned":
			so, err = o.Svc.Returned(ctx, a, id)
		}
		if err != nil {
			return err
		}
		return c.JSON(fiber.Map{"order_id": so.ID, "status": so.Status, "version": so.Version})
	}
}

type failJSON struct {
	Reason   string `json:"reason"`
	Note     string `json:"note"`
	Evidence struct {
		PhotoRef     string `json:"photo_ref"`
		CallAttempts int    `json:"call_attempts"`
	} `json:"evidence"`
}

func (o Orders) fail(c *fiber.Ctx) error {
	var req failJSON
	if err := decode(c, &req); err != nil {
		return err
	}
	if _, err := failure.ParseReason(req.Reason); err != nil {
		return err
	}
	if _, err := o.owned(c); err != nil {
		return err
	}
	res, err := o.Svc.Fail(c.UserContext(), actor(c), c.Params("id"), delivery.FailRequest{Reason: req.Reason, Note: req.Note,
		PhotoRef: req.Evidence.PhotoRef, CallAttempts: req.Evidence.CallAttempts})
	if err != nil {
		return err
	}
	return c.JSON(res)
}

func (o Orders) tasks(c *fiber.Ctx) error {
	tasks, version, stops := o.Svc.Tasks(principal(c).CourierID)
	return c.JSON(fiber.Map{"tasks": tasks, "route": fiber.Map{"version": version, "stops": stops}})
}

func (o Orders) track(c *fiber.Ctx) error {
	tok := c.Params("token")
	if len(tok) < 16 || len(tok) > 64 || !validID(tok) {
		return notFound("tracking link")
	}
	t, err := o.Svc.Track(c.UserContext(), tok)
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.JSON(t)
}

type pinJSON struct {
	Lat *float64 `json:"lat"`
	Lng *float64 `json:"lng"`
}

func (p pinJSON) point() (float64, float64, error) {
	if p.Lat == nil || p.Lng == nil {
		return 0, 0, badRequest("lat and lng are required")
	}
	return *p.Lat, *p.Lng, nil
}

// trackPin: the customer drops or confirms the drop-off point from the
// tracking page.
func (o Orders) trackPin(c *fiber.Ctx) error {
	tok := c.Params("token")
	if len(tok) < 16 || len(tok) > 64 || !validID(tok) {
		return notFound("tracking link")
	}
	var req pinJSON
	if err := decode(c, &req); err != nil {
		return err
	}
	lat, lng, err := req.point()
	if err != nil {
		return err
	}
	t, err := o.Svc.TrackPin(c.UserContext(), tok, lat, lng)
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.JSON(t)
}

// orderPin: the merchant or a dispatcher sets the pin (after calling the
// customer); audited.
func (s *Server) orderPin(c *fiber.Ctx, o Orders) error {
	so, err := o.owned(c)
	if err != nil {
		return err
	}
	var req pinJSON
	if err := decode(c, &req); err != nil {
		return err
	}
	lat, lng, err := req.point()
	if err != nil {
		return err
	}
	p := principal(c)
	actor := order.Actor{Role: order.Role(p.Role), ID: p.UserID}
	if p.Role == auth.RoleMerchant {
		actor.ID = p.MerchantID
	}
	next, err := o.Svc.ConfirmPin(c.UserContext(), actor, so.ID, lat, lng)
	if err != nil {
		return err
	}
	s.audit(c, "set_dropoff_pin", "order:"+so.ID, "")
	v := viewOps
	if p.Role == auth.RoleMerchant {
		v = viewOwner
	}
	return c.JSON(orderView(next, v))
}

// stream is the dispatcher event stream (Server-Sent Events). It ends after
// a minute (EventSource clients reconnect by themselves), at once when its
// user logs out, changes password or is disabled or erased on this replica,
// and within streamRecheck when that happened on another one. A user may
// hold MaxStreamsPerUser streams at once.
func (s *Server) stream(o Orders) fiber.Handler {
	return func(c *fiber.Ctx) error {
		p := principal(c)
		token, _ := strings.CutPrefix(c.Get(fiber.HeaderAuthorization), "Bearer ")
		sub, err := o.Hub.Subscribe(p.UserID)
		if errors.Is(err, delivery.ErrTooManyStreams) {
			return &apiError{status: 429, slug: "rate-limited", retryAfter: 60,
				detail: fmt.Sprintf("at most %d event streams per user are open at once", delivery.MaxStreamsPerUser)}
		}
		if err != nil {
			return err
		}
		c.Set(fiber.HeaderContentType, "text/event-stream")
		c.Set(fiber.HeaderCacheControl, "no-store")
		c.Set("X-Accel-Buffering", "no")
		c.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
			defer o.Hub.Unsubscribe(sub)
			end := time.After(60 * time.Second)
			ping := time.NewTicker(15 * time.Second)
			defer ping.Stop()
			recheck := time.NewTicker(streamRecheck)
			defer recheck.Stop()
			fmt.Fprintf(w, "retry: 2000\n: connected\n\n")
			if w.Flush() != nil {
				return
			}
			for {
				select {
				case ev := <-sub.C:
					fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", ev.ID, ev.Type, ev.Data)
				case <-ping.C:
					fmt.Fprintf(w, ": ping\n\n")
				case <-recheck.C:
					ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
					_, err := s.accounts.Authenticate(ctx, token)
					cancel()
					if errors.Is(err, account.ErrTokenRevoked) || errors.Is(err, auth.ErrExpiredToken) || errors.Is(err, auth.ErrInvalidToken) {
						return
					}
					continue
				case <-sub.Ended():
					return
				case <-end:
					return
				case <-o.Hub.Closed():
					return
				}
				if w.Flush() != nil {
					return
				}
			}
		})
		return nil
	}
}

// streamRecheck is how often an open stream checks that its token is still
// valid (revocations made on another replica).
const streamRecheck = 5 * time.Second

func (o Orders) addWebhook(c *fiber.Ctx) error {
	var req struct {
		URL    string   `json:"url"`
		Events []string `json:"events"`
	}
	if err := decode(c, &req); err != nil {
		return err
	}
	h, err := o.Webhooks.Register(c.UserContext(), principal(c).MerchantID, req.URL, req.Events)
	if err != nil {
		return err
	}
	out := fiber.Map{"id": h.ID, "url": h.URL, "events": h.Events, "created_at": h.CreatedAt,
		"signature": "Tawsil-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, t + \".\" + body)>"}
	replay, err := json.Marshal(out)
	if err != nil {
		return err
	}
	c.Locals(idemReplayBody, replay) // a replay under the Idempotency-Key does not show the secret again
	out["secret"] = h.Secret
	return c.Status(fiber.StatusCreated).JSON(out)
}

func (o Orders) listWebhooks(c *fiber.Ctx) error {
	hs, err := o.Store.Webhooks(c.UserContext(), principal(c).MerchantID)
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"webhooks": hs})
}

// pingRate bounds test pings and redeliveries per client address and minute.
func (o Orders) pingRate() int { return 30 }

type webhookDeliveryJSON struct {
	ID          string                      `json:"id"`
	Event       string                      `json:"event"`
	CreatedAt   time.Time                   `json:"created_at"`
	Status      string                      `json:"status"` // pending, delivered, retrying, given_up
	Attempts    int                         `json:"attempts"`
	NextRetryAt *time.Time                  `json:"next_retry_at,omitempty"`
	DeliveredAt *time.Time                  `json:"delivered_at,omitempty"`
	LastError   string                      `json:"last_error,omitempty"`
	Log         []mongostore.WebhookAttempt `json:"log"`
}

func (o Orders) webhookDeliveries(c *fiber.Ctx) error {
	id := c.Params("id")
	if !validID(id) {
		return notFound("webhook")
	}
	limit, err := queryInt(c, "limit", 50, 1, 200)
	if err != nil {
		return err
	}
	ds, err := o.Webhooks.Deliveries(c.UserContext(), principal(c).MerchantID, id, limit)
	if err != nil {
		return err
	}
	out := make([]webhookDeliveryJSON, 0, len(ds))
	for _, d := range ds {
		j := webhookDeliveryJSON{ID: d.ID, Event: d.Event, CreatedAt: d.CreatedAt, Attempts: d.Attempts, DeliveredAt: d.DeliveredAt,
			LastError: d.LastError, Log: d.Log}
		if j.Log == nil {
			j.Log = []mongostore.WebhookAttempt{}
		}
		switch {
		case d.DeliveredAt != nil:
			j.Status = "delivered"
		case d.GaveUp:
			j.Status = "given_up"
		case d.Attempts == 0:
			j.Status = "pending"
			next := d.NextAt
			j.NextRetryAt = &next
		default:
			j.Status = "retrying"
			next := d.NextAt
			j.NextRetryAt = &next
		}
		out = append(out, j)
	}
	return c.JSON(fiber.Map{"deliveries": out})
}

func (o Orders) pingWebhook(c *fiber.Ctx) error {
	id := c.Params("id")
	if !validID(id) {
		return notFound("webhook")
	}
	ev, err := o.Webhooks.Ping(c.UserContext(), principal(c).MerchantID, id)
	if err != nil {
		return err
	}
	return c.Status(fiber.StatusAccepted).JSON(fiber.Map{"event_id": ev})
}

func (o Orders) redeliverWebhook(c *fiber.Ctx) error {
	id, ev := c.Params("id"), c.Params("event")
	if !validID(id) || !validID(ev) {
		return notFound("webhook event")
	}
	if err := o.Webhooks.Redeliver(c.UserContext(), principal(c).MerchantID, id, ev); err != nil {
		return err
	}
	return c.Status(fiber.StatusAccepted).JSON(fiber.Map{"event_id": ev})
}

func (o Orders) deleteWebhook(c *fiber.Ctx) error {
	id := c.Params("id")
	if !validID(id) {
		return notFound("webhook")
	}
	if err := o.Store.DeleteWebhook(c.UserContext(), principal(c).MerchantID, id); err != nil {
		return err
	}
	return c.SendStatus(fiber.StatusNoContent)
}

func (o Orders) kpis(c *fiber.Ctx) error {
	now := time.Now().UTC()
	from, err := queryTime(c, "from")
	if err != nil {
		return err
	}
	to, err := queryTime(c, "to")
	if err != nil {
		return err
	}
	if from.IsZero() {
		from = now.Add(-24 * time.Hour)
	}
	if to.IsZero() {
		to = now // the window ends now, not in the future
	}
	if !to.After(from) || to.Sub(from) > 92*24*time.Hour {
		return badRequest("from must be before to, at most 92 days apart")
	}
	group := c.Query("group")
	if group != "" && group != "merchant" && group != "cell" {
		return badRequest("group must be merchant or cell")
	}
	merchantID := ""
	if p := principal(c); p.Role == auth.RoleMerchant {
		merchantID = p.MerchantID
		if group == "merchant" {
			group = ""
		}
	}
	ks, err := o.Svc.KPIs(c.UserContext(), from, to, group, merchantID, o.Costs)
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"from": from, "to": to, "group": group, "kpis": ks})
}

type dryRunJSON struct {
	Reason         string  `json:"reason"`
	Attempt        int     `json:"attempt"`
	MinutesLeft    float64 `json:"minutes_left"`
	MerchantPolicy string  `json:"merchant_policy"`
	COD            bool    `json:"cod"`
	ParcelSize     string  `json:"parcel_size"`
	Verified       *bool   `json:"verified"`
}

func (o Orders) dryRun(c *fiber.Ctx) error {
	var req dryRunJSON
	if err := decode(c, &req); err != nil {
		return err
	}
	reason, err := failure.ParseReason(req.Reason)
	if err != nil {
		return err
	}
	if req.Attempt < 1 || req.Attempt > 20 {
		return badRequest("attempt must be 1 to 20")
	}
	verified := true
	if req.Verified != nil {
		verified = *req.Verified
	}
	d := o.Svc.DryRun(failure.Situation{Reason: reason, Attempt: req.Attempt, MinutesLeft: req.MinutesLeft,
		MerchantPolicy: req.MerchantPolicy, COD: req.COD, ParcelSize: req.ParcelSize, Verified: verified})
	return c.JSON(fiber.Map{"action": d.Action, "rule": d.Rule, "params": d.Params, "overridden": d.Overridden, "explain": d.Explain})
}

func (o Orders) reloadRules(c *fiber.Ctx) error {
	if o.RulesFile == "" {
		return conflict("no rules file configured (TAWSIL_RULES_FILE): the built-in rules are in force")
	}
	if err := o.Rules.Reload(o.RulesFile); err != nil {
		return badRequest("rules not reloaded, the previous rules stay in force: " + err.Error())
	}
	return c.JSON(fiber.Map{"status": "reloaded", "rules": len(o.Rules.Rules().Rules)})
}

// myData exports everything Tawsil holds about the calling courier or
// merchant (Loi 09-08 right of access).
func (s *Server) myData(c *fiber.Ctx, o Orders) error {
	ctx, p := c.UserContext(), principal(c)
	u, err := s.accounts.User(ctx, p.UserID)
	if err != nil {
		return err
	}
	out := fiber.Map{"user": userJSON(u), "exported_at": time.Now().UTC()}
	switch p.Role {
	case auth.RoleCourier:
		cr, err := s.accounts.Courier(ctx, p.CourierID)
		if err != nil {
			return err
		}
		out["courier"] = fiber.Map{"id": cr.ID, "name": cr.Name, "vehicle": cr.Vehicle, "capacity": cr.Capacity, "on_shift": cr.OnShift}
		ps, err := o.Store.Track(ctx, p.CourierID, time.Now().Add(-366*24*time.Hour), time.Now().Add(time.Hour), 100_000)
		if err != nil {
			return err
		}
		out["positions"] = ps
		os, err := o.Store.Orders(ctx, mongostore.OrderFilter{CourierID: p.CourierID, Limit: 10_000})
		if err != nil {
			return err
		}
		ids := make([]fiber.Map, len(os))
		for i, so := range os {
			ids[i] = fiber.Map{"order_id": so.ID, "status": so.Status, "booked_at": so.BookedAt, "delivered_at": so.Milestones.DeliveredAt}
		}
		out["orders"] = ids
		// The courier's cash ledger (personal data under Loi 09-08 too).
		cash, err := o.Store.CourierCash(ctx, p.CourierID, time.Time{})
		if err != nil {
			return err
		}
		entries := make([]fiber.Map, len(cash))
		for i, e := range cash {
			entries[i] = entryJSON(e)
		}
		out["cash_ledger"] = entries
	case auth.RoleMerchant:
		m, err := s.accounts.Merchant(ctx, p.MerchantID)
		if err != nil {
			return err
		}
		out["merchant"] = fiber.Map{"id": m.ID, "name": m.Name, "policy": m.Policy}
		os, err := o.Store.Orders(ctx, mongostore.OrderFilter{MerchantID: p.MerchantID, Limit: 10_000})
		if err != nil {
			return err
		}
		list := make([]orderJSON, len(os))
		for i := range os {
			list[i] = orderView(&os[i], viewOwner)
		}
		out["orders"] = list
		hs, err := o.Store.Webhooks(ctx, p.MerchantID)
		if err != nil {
			return err
		}
		out["webhooks"] = hs
	}
	c.Set(fiber.HeaderContentDisposition, `attachment; filename="tawsil-my-data.json"`)
	return c.JSON(out)
}
