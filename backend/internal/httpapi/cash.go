package httpapi

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/tawsil/tawsil/backend/internal/account"
	"github.com/tawsil/tawsil/backend/internal/auth"
	"github.com/tawsil/tawsil/backend/internal/cash"
	"github.com/tawsil/tawsil/backend/internal/ledger"
	"github.com/tawsil/tawsil/backend/internal/mongostore"
)

// Cash is what the cash routes need.
type Cash struct {
	Book *ledger.Book
	Loc  *time.Location // merchants' days
}

// MountCash registers the courier cash ledger, settlements, caps and the
// merchants' cash-on-delivery reconciliation.
func (s *Server) MountCash(k Cash) {
	s.addMapping(cash.ErrInvalid, 400, "invalid-cash")
	s.addMapping(cash.ErrConflict, 409, "conflict")
	s.addMapping(ledger.ErrSettled, 409, "already-settled")
	if k.Loc == nil {
		k.Loc = time.UTC
	}
	v1 := s.V1()
	ops := s.need(auth.RoleDispatcher, auth.RoleAdmin)
	admin := s.need(auth.RoleAdmin)
	v1.Get("/me/cash", s.authn, s.need(auth.RoleCourier), func(c *fiber.Ctx) error { return k.statement(c, principal(c).CourierID) })
	v1.Get("/cash/balances", s.authn, ops, func(c *fiber.Ctx) error {
		bs := k.Book.Balances()
		out := make([]fiber.Map, len(bs))
		for i, b := range bs {
			out[i] = fiber.Map{"courier_id": b.CourierID, "in_hand_mad": b.InHand.MAD(), "cap_mad": capJSON(b.Cap), "over_cap": b.OverCap}
		}
		return c.JSON(fiber.Map{"balances": out})
	})
	v1.Get("/couriers/:id/cash", s.authn, ops, s.courierExists, s.withAudit("read_cash", func(c *fiber.Ctx) error { return k.statement(c, c.Params("id")) }))
	v1.Post("/couriers/:id/cash/hand-ins", s.authn, ops, s.courierExists, s.idempotent, func(c *fiber.Ctx) error { return s.handIn(c, k) })
	v1.Post("/couriers/:id/cash/corrections", s.authn, admin, s.courierExists, s.idempotent, func(c *fiber.Ctx) error { return s.correct(c, k) })
	v1.Get("/couriers/:id/cash/settlements", s.authn, ops, s.courierExists, func(c *fiber.Ctx) error {
		ss, err := k.Book.Settlements(c.UserContext(), c.Params("id"))
		if err != nil {
			return err
		}
		out := make([]fiber.Map, len(ss))
		for i, st := range ss {
			out[i] = settlementJSON(st)
		}
		return c.JSON(fiber.Map{"settlements": out})
	})
	v1.Post("/couriers/:id/cash/settlements", s.authn, ops, s.courierExists, func(c *fiber.Ctx) error {
		st, err := k.Book.Settle(c.UserContext(), c.Params("id"), principal(c).UserID)
		if err != nil {
			return err
		}
		s.audit(c, "confirm_cash_settlement", "courier:"+c.Params("id"), fmt.Sprintf("n=%d difference=%s", st.N, st.Difference))
		return c.Status(fiber.StatusCreated).JSON(settlementJSON(st))
	})
	v1.Put("/couriers/:id/cash/cap", s.authn, admin, s.courierExists, func(c *fiber.Ctx) error {
		var req struct {
			CapMAD *float64 `json:"cap_mad"`
		}
		if err := decode(c, &req); err != nil {
			return err
		}
		limit := cash.Centimes(-1) // back to the default
		if req.CapMAD != nil {
			v, err := cash.FromMAD(*req.CapMAD)
			if err != nil || v < 0 {
				return badRequest("cap_mad must be a non-negative amount with at most two decimals, or null for the default")
			}
			limit = v
		}
		if err := k.Book.SetCap(c.UserContext(), c.Params("id"), limit, principal(c).UserID); err != nil {
			return err
		}
		s.audit(c, "set_cash_cap", "courier:"+c.Params("id"), fmt.Sprint(limit))
		return k.statement(c, c.Params("id"))
	})
	v1.Get("/merchants/:id/cod", s.authn, s.need(auth.RoleMerchant, auth.RoleDispatcher, auth.RoleAdmin), func(c *fiber.Ctx) error { return k.merchantDays(c) })
	v1.Post("/merchants/:id/cod/settlements", s.authn, ops, func(c *fiber.Ctx) error { return s.payout(c, k) })
}

// courierExists answers 404 for an unknown courier id.
func (s *Server) courierExists(c *fiber.Ctx) error {
	if _, err := s.accounts.Courier(c.UserContext(), c.Params("id")); err != nil {
		if errors.Is(err, account.ErrNotFound) {
			return notFound("courier " + c.Params("id"))
		}
		return err
	}
	return c.Next()
}

func capJSON(c cash.Centimes) any {
	if c <= 0 {
		return nil
	}
	return c.MAD()
}

func entryJSON(e cash.Entry) fiber.Map {
	m := fiber.Map{"id": e.ID, "kind": e.Kind, "amount_mad": e.Amount.MAD(), "at": e.At}
	for k, v := range map[string]string{"order_id": e.OrderID, "merchant_id": e.MerchantID, "received_by": e.By, "hub": e.Hub, "reason": e.Reason} {
		if v != "" {
			m[k] = v
		}
	}
	if e.Kind == cash.Correction {
		m["by"] = e.By
		delete(m, "received_by")
	}
	if e.Notes > 0 {
		m["notes_count"] = e.Notes
	}
	if e.Place != nil {
		m["place"] = fiber.Map{"lat": e.Place.Lat, "lng": e.Place.Lng}
	}
	return m
}

func openJSON(s cash.Settlement) fiber.Map {
	m := fiber.Map{"courier_id": s.CourierID, "to": s.To, "opening_mad": s.Opening.MAD(), "collected_mad": s.Collected.MAD(),
		"change_given_mad": s.Change.MAD(), "handed_in_mad": s.HandedIn.MAD(), "corrections_mad": s.Corrections.MAD(),
		"deliveries": s.Deliveries, "difference_mad": s.Difference.MAD()}
	if !s.From.IsZero() {
		m["from"] = s.From
	}
	return m
}

func settlementJSON(st mongostore.StoredSettlement) fiber.Map {
	m := openJSON(st.Settlement)
	m["id"], m["n"], m["confirmed_by"] = st.ID, st.N, st.ConfirmedBy
	return m
}

func (k Cash) statement(c *fiber.Ctx, courierID string) error {
	st, err := k.Book.Statement(c.UserContext(), courierID)
	if err != nil {
		return err
	}
	entries := make([]fiber.Map, len(st.Entries))
	for i, e := range st.Entries {
		entries[i] = entryJSON(e)
	}
	return c.JSON(fiber.Map{"courier_id": courierID, "in_hand_mad": st.InHand.MAD(), "cap_mad": capJSON(st.Cap),
		"over_cap": st.OverCap, "open_settlement": openJSON(st.Open), "entries": entries})
}

// entryKey is the ledger key of a created entry: the request's
// Idempotency-Key when it has one (a retry records nothing new), else unique.
func entryKey(c *fiber.Ctx) string {
	if k := c.Get("Idempotency-Key"); k != "" {
		return principal(c).UserID + ":" + k
	}
	return auth.RandomToken(12)
}

func (s *Server) handIn(c *fiber.Ctx, k Cash) error {
	var req struct {
		AmountMAD  float64 `json:"amount_mad"`
		Hub        string  `json:"hub"`
		NotesCount int     `json:"notes_count"`
	}
	if err := decode(c, &req); err != nil {
		return err
	}
	amount, err := cash.FromMAD(req.AmountMAD)
	if err != nil || amount <= 0 {
		return badRequest("amount_mad must be a positive amount with at most two decimals")
	}
	hub := strings.TrimSpace(req.Hub)
	if len(hub) > 100 {
		return badRequest("hub must be at most 100 characters")
	}
	e, _, err := k.Book.HandIn(c.UserContext(), c.Params("id"), amount, principal(c).UserID, hub, req.NotesCount, c.Params("id")+":"+entryKey(c))
	if err != nil {
		return err
	}
	s.audit(c, "cash_hand_in", "courier:"+c.Params("id"), amount.String())
	return c.Status(fiber.StatusCreated).JSON(entryJSON(e))
}

func (s *Server) correct(c *fiber.Ctx, k Cash) error {
	var req struct {
		AmountMAD float64 `json:"amount_mad"`
		Reason    string  `json:"reason"`
	}
	if err := decode(c, &req); err != nil {
		return err
	}
	amount, err := cash.FromMAD(req.AmountMAD)
	if err != nil || amount == 0 {
		return badRequest("amount_mad must be a non-zero signed amount with at most two decimals")
	}
	reason := strings.TrimSpace(req.Reason)
	if reason == "" || len(reason) > 500 {
		return badRequest("reason is required (at most 500 characters)")
	}
	e, _, err := k.Book.Correct(c.UserContext(), c.Params("id"), amount, principal(c).UserID, reason, c.Params("id")+":"+entryKey(c))
	if err != nil {
		return err
	}
	s.audit(c, "cash_correction", "courier:"+c.Params("id"), amount.String()+" "+reason)
	return c.Status(fiber.StatusCreated).JSON(entryJSON(e))
}

// merchantDays answers the merchant's cash-on-delivery days as JSON, or as
// CSV with format=csv (or Accept: text/csv).
func (k Cash) merchantDays(c *fiber.Ctx) error {
	p := principal(c)
	id := c.Params("id")
	if p.Role == auth.RoleMerchant && p.MerchantID != id {
		return notFound("merchant " + id)
	}
	today := time.Now().In(k.Loc).Format(time.DateOnly)
	from, to := c.Query("from", today), c.Query("to", c.Query("from", today))
	days, err := k.Book.MerchantDays(c.UserContext(), id, from, to)
	if err != nil {
		return err
	}
	if c.Query("format") == "csv" || (c.Query("format") == "" && strings.Contains(c.Get(fiber.HeaderAccept), "text/csv")) {
		c.Set(fiber.HeaderContentType, "text/csv; charset=utf-8")
		c.Set(fiber.HeaderContentDisposition, fmt.Sprintf(`attachment; filename="cod-%s-%s-%s.csv"`, id, from, to))
		return c.SendString(cash.CSV(days))
	}
	if f := c.Query("format"); f != "" && f != "json" {
		return badRequest("format must be json or csv")
	}
	out := make([]fiber.Map, len(days))
	for i, d := range days {
		out[i] = dayJSON(d)
	}
	return c.JSON(fiber.Map{"merchant_id": id, "from": from, "to": to, "days": out})
}

func dayJSON(d cash.MerchantDay) fiber.Map {
	return fiber.Map{"day": d.Day, "orders": d.Orders, "collected_mad": d.Collected.MAD(), "paid_out_mad": d.PaidOut.MAD(),
		"outstanding_mad": d.Outstanding.MAD(), "settled": d.Settled}
}

func (s *Server) payout(c *fiber.Ctx, k Cash) error {
	id := c.Params("id")
	if _, err := s.accounts.Merchant(c.UserContext(), id); err != nil {
		if errors.Is(err, account.ErrNotFound) {
			return notFound("merchant " + id)
		}
		return err
	}
	var req struct {
		Day       string  `json:"day"`
		AmountMAD float64 `json:"amount_mad"`
		Reference string  `json:"reference"`
	}
	if err := decode(c, &req); err != nil {
		return err
	}
	amount, err := cash.FromMAD(req.AmountMAD)
	if err != nil || amount < 0 {
		return badRequest("amount_mad must be a non-negative amount with at most two decimals")
	}
	if _, err := time.Parse(time.DateOnly, req.Day); err != nil {
		return badRequest("day must be YYYY-MM-DD")
	}
	if len(req.Reference) > 200 {
		return badRequest("reference must be at most 200 characters")
	}
	d, err := k.Book.Payout(c.UserContext(), id, req.Day, amount, principal(c).UserID, strings.TrimSpace(req.Reference))
	if err != nil {
		return err
	}
	s.audit(c, "cod_settlement", "merchant:"+id, req.Day+" "+amount.String())
	return c.Status(fiber.StatusCreated).JSON(dayJSON(d))
}
