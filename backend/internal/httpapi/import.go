package httpapi

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/tawsil/tawsil/backend/internal/account"
)

// importCouriers: an admin onboards couriers in bulk (JSON or CSV) and gets
// their device credentials back, once. Rate-limited and audited.
func (s *Server) importCouriers(c *fiber.Ctx) error {
	if s.Bulk == nil {
		return fiber.ErrNotImplemented
	}
	var rows []account.ImportRow
	ct := strings.ToLower(strings.TrimSpace(strings.SplitN(string(c.Request().Header.ContentType()), ";", 2)[0]))
	if ct == "text/csv" {
		var err error
		if rows, err = csvRows(c.Body()); err != nil {
			return badRequest("invalid CSV: " + err.Error())
		}
	} else {
		var req struct {
			Couriers []struct {
				Name     string `json:"name"`
				Phone    string `json:"phone"`
				Email    string `json:"email"`
				Vehicle  string `json:"vehicle"`
				Capacity int    `json:"capacity"`
			} `json:"couriers"`
		}
		if err := decode(c, &req); err != nil {
			return err
		}
		for _, r := range req.Couriers {
			rows = append(rows, account.ImportRow{Name: r.Name, Phone: r.Phone, Email: r.Email, Vehicle: r.Vehicle, Capacity: r.Capacity})
		}
	}
	res, err := s.accounts.ImportCouriers(c.UserContext(), s.Bulk, rows)
	if err != nil {
		return err
	}
	counts := map[string]int{}
	for _, r := range res {
		counts[r.Status]++
		if r.Status == account.ImportCreated && s.OnCourierCreated != nil {
			s.OnCourierCreated(account.Courier{ID: r.CourierID, UserID: r.UserID, Name: rows[r.Row-1].Name, Vehicle: rows[r.Row-1].Vehicle, Capacity: rows[r.Row-1].Capacity})
		}
	}
	s.audit(c, "import_couriers", "couriers", fmt.Sprintf("created=%d existing=%d invalid=%d", counts[account.ImportCreated], counts[account.ImportExisting], counts[account.ImportInvalid]))
	c.Set(fiber.HeaderCacheControl, "no-store") // device secrets
	return c.JSON(fiber.Map{"created": counts[account.ImportCreated], "existing": counts[account.ImportExisting],
		"invalid": counts[account.ImportInvalid], "results": res})
}

// csvRows reads a header line naming the columns (name, phone, email;
// optional vehicle, capacity) and one courier a line.
func csvRows(body []byte) ([]account.ImportRow, error) {
	r := csv.NewReader(strings.NewReader(string(body)))
	r.FieldsPerRecord = -1
	header, err := r.Read()
	if err != nil {
		return nil, errors.New("no header line")
	}
	col := map[string]int{}
	for i, h := range header {
		col[strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))] = i
	}
	for _, need := range []string{"name", "email"} {
		if _, ok := col[need]; !ok {
			return nil, fmt.Errorf("the header has no %s column", need)
		}
	}
	get := func(rec []string, name string) string {
		if i, ok := col[name]; ok && i < len(rec) {
			return strings.TrimSpace(rec[i])
		}
		return ""
	}
	var rows []account.ImportRow
	for {
		rec, err := r.Read()
		if err == io.EOF {
			return rows, nil
		}
		if err != nil {
			return nil, err
		}
		if len(rows) >= account.MaxImport {
			return nil, fmt.Errorf("more than %d couriers", account.MaxImport)
		}
		row := account.ImportRow{Name: get(rec, "name"), Phone: get(rec, "phone"), Email: get(rec, "email"), Vehicle: get(rec, "vehicle")}
		if v := get(rec, "capacity"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				return nil, fmt.Errorf("line %d: capacity %q", len(rows)+2, v)
			}
			row.Capacity = n
		}
		rows = append(rows, row)
	}
}
