package httpapi

import (
	"cmp"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/utils"

	"github.com/tawsil/tawsil/backend/internal/auth"
	"github.com/tawsil/tawsil/backend/internal/density"
	"github.com/tawsil/tawsil/backend/internal/livemap"
	"github.com/tawsil/tawsil/backend/internal/mongostore"
	"github.com/tawsil/tawsil/backend/internal/order"
)

// Tracking is what the tracking routes need.
type Tracking struct {
	Index      *livemap.Index
	Density    *density.Map
	Store      *mongostore.Store
	AlertRatio float64
	// SetShift persists a shift change (and updates the live index).
	SetShift func(c *fiber.Ctx, courierID string, on bool) error
	// Name is a courier's display name ("" if unknown).
	Name func(courierID string) string
	// Names, if set, is Name for many couriers at once: names[i] for
	// ids[i] (the near= answer: one lock, lookups whose memory misses
	// overlap).
	Names func(ids, names []string)
	// Phone is a courier's phone ("" if none); lists show it masked.
	Phone func(courierID string) string
}

// MountTracking registers couriers, tracks, shifts, density and audit routes.
func (s *Server) MountTracking(t Tracking) {
	if t.AlertRatio == 0 {
		t.AlertRatio = 2
	}
	v1 := s.V1()
	ops := s.need(auth.RoleDispatcher, auth.RoleAdmin)
	v1.Get("/couriers", s.authn, ops, t.listCouriers)
	v1.Get("/couriers/:id", s.authn, ops, s.withAudit("read_courier", t.getCourier))
	v1.Get("/couriers/:id/track", s.authn, s.need(auth.RoleDispatcher, auth.RoleAdmin, auth.RoleCourier), s.withAudit("read_track", t.track))
	v1.Post("/me/shift", s.authn, s.need(auth.RoleCourier), t.shift)
	v1.Get("/density", s.authn, ops, t.density)
	v1.Get("/density/alerts", s.authn, ops, t.alerts)
	v1.Get("/audit", s.authn, s.need(auth.RoleAdmin), func(c *fiber.Ctx) error { return s.auditList(c, t.Store) })
}

// withAudit logs reads of a courier's position data by someone else.
func (s *Server) withAudit(action string, h fiber.Handler) fiber.Handler {
	return func(c *fiber.Ctx) error {
		err := h(c)
		p := principal(c)
		if err == nil && c.Response().StatusCode() < 300 && p.CourierID != c.Params("id") {
			s.audit(c, action, "courier:"+c.Params("id"), c.Request().URI().QueryArgs().String())
		}
		return err
	}
}

type courierJSON struct {
	ID        string   `json:"id"`
	Name      string   `json:"name,omitempty"`
	Phone     string   `json:"phone,omitempty"` // masked
	Lat       *float64 `json:"lat,omitempty"`
	Lng       *float64 `json:"lng,omitempty"`
	DistanceM *float64 `json:"distance_m,omitempty"`
	Cell      string   `json:"cell,omitempty"`
	Status    string   `json:"status"`
	Online    bool     `json:"online"`
	OnShift   bool     `json:"on_shift"`
	Load      int      `json:"load"`
	Capacity  int      `json:"capacity"`
	Vehicle   string   `json:"vehicle,omitempty"`
	Battery   *int     `json:"battery,omitempty"`
	UpdatedAt string   `json:"updated_at,omitempty"`
}

func courierOut(c livemap.Courier, dist float64, withDist bool) courierJSON {
	out := courierJSON{ID: c.ID, Status: c.Status.String(), Online: c.Online, OnShift: c.OnShift, Load: c.Load,
		Capacity: c.Capacity, Vehicle: c.Vehicle}
	if c.HasFix {
		lat, lng := c.Fix.Lat, c.Fix.Lng
		out.Lat, out.Lng = &lat, &lng
		out.Cell = c.Cell9.String()
		out.UpdatedAt = c.Fix.Time.UTC().Format(time.RFC3339)
		if c.Fix.Battery >= 0 {
			b := c.Fix.Battery
			out.Battery = &b
		}
	}
	if withDist {
		d := math.Round(dist*10) / 10
		out.DistanceM = &d
	}
	return out
}

func parseLatLng(s string) (lat, lng float64, ok bool) {
	a, b, found := strings.Cut(s, ",")
	if !found {
		return 0, 0, false
	}
	lat, err1 := parseDegrees(a)
	lng, err2 := parseDegrees(b)
	if err1 != nil || err2 != nil || math.IsNaN(lat) || math.IsNaN(lng) || lat < -90 || lat > 90 || lng < -180 || lng > 180 {
		return 0, 0, false
	}
	return lat, lng, true
}

// parseDegrees is strconv.ParseFloat(strings.TrimSpace(s), 64), with a
// short way for what clients send (a plain decimal such as 33.571234).
func parseDegrees(s string) (float64, error) {
	if f, ok := parsePlainDecimal(s); ok {
		return f, nil
	}
	return strconv.ParseFloat(strings.TrimSpace(s), 64)
}

// exactPow10 are the powers of ten a float64 holds exactly, up to 1e15.
var exactPow10 = [16]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15}

// parsePlainDecimal reads [+-]digits[.digits] of at most 15 digits, and
// reports false for anything else (spaces, exponents, hex, inf, nan,
// underscores, more digits: those go through strconv). With at most 15
// digits the digits are an integer below 2^53 and the divisor a power of
// ten up to 1e15, both exact in a float64, so one division rounds the
// decimal's value correctly: the float strconv.ParseFloat returns
// (TestParsePlainDecimalMatchesStrconv), without its general machinery:
// 49 ns for a near= point here against strconv's 107.
func parsePlainDecimal(s string) (float64, bool) {
	i, neg := 0, false
	if len(s) > 0 && (s[0] == '-' || s[0] == '+') {
		neg, i = s[0] == '-', 1
	}
	var mant uint64
	digits, frac, dot := 0, 0, false
	for ; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			mant = mant*10 + uint64(c-'0')
			digits++
			if dot {
				frac++
			}
		case c == '.' && !dot:
			dot = true
		default:
			return 0, false
		}
		if digits > 15 {
			return 0, false
		}
	}
	if digits == 0 {
		return 0, false
	}
	f := float64(mant) / exactPow10[frac]
	if neg {
		f = -f
	}
	return f, true
}

// parseBBox reads "minLng,minLat,maxLng,maxLat" in degrees, finite, within
// the globe and with min <= max.
func parseBBox(v string) (density.BBox, error) {
	var b density.BBox
	parts := strings.Split(v, ",")
	if len(parts) != 4 {
		return b, badRequest("bbox must be minLng,minLat,maxLng,maxLat")
	}
	for i, p := range parts {
		f, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return density.BBox{}, badRequest("bbox must be minLng,minLat,maxLng,maxLat")
		}
		b[i] = f
	}
	if b[0] > b[2] || b[1] > b[3] || b[1] < -90 || b[3] > 90 || b[0] < -180 || b[2] > 180 {
		return density.BBox{}, badRequest("bbox must be minLng,minLat,maxLng,maxLat with min <= max")
	}
	return b, nil
}

func queryInt(c *fiber.Ctx, name string, def, lo, hi int) (int, error) {
	v := queryView(c, name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, badRequest(name + " must be an integer from " + strconv.Itoa(lo) + " to " + strconv.Itoa(hi))
	}
	return n, nil
}

// queryView is the query parameter name in place: valid only during the
// handler, for values parsed there and not kept (c.Query copies, as the
// app is Immutable).
func queryView(c *fiber.Ctx, name string) string {
	return utils.UnsafeString(c.Context().QueryArgs().Peek(name))
}

// nearScratch holds a near= answer's ids and names between requests.
type nearScratch struct {
	ids, names []string
	touch      byte // what namesOf read of the names (kept so that the reads stay)
}

var nearScratches = sync.Pool{New: func() any { return &nearScratch{} }}

// namesOf returns the hits' display names, in sc.
func (t Tracking) namesOf(hits []livemap.Hit, sc *nearScratch) []string {
	sc.ids, sc.names = sc.ids[:0], sc.names[:0]
	for i := range hits {
		sc.ids = append(sc.ids, hits[i].ID)
		sc.names = append(sc.names, "")
	}
	if t.Names != nil {
		t.Names(sc.ids, sc.names)
	} else {
		for i, id := range sc.ids {
			sc.names[i] = t.Name(id)
		}
	}
	// Read each name's first byte now, in one short loop: the names live
	// apart on the heap, and their memory misses overlap here rather than
	// one by one among the JSON writes.
	var touch byte
	for _, n := range sc.names {
		if n != "" {
			touch |= n[0]
		}
	}
	sc.touch = touch
	return sc.names
}

func (t Tracking) named(cj courierJSON) courierJSON {
	if t.Name != nil {
		cj.Name = t.Name(cj.ID)
	}
	if t.Phone != nil {
		if p := t.Phone(cj.ID); p != "" {
			cj.Phone = order.MaskPhone(p)
		}
	}
	return cj
}

func (t Tracking) listCouriers(c *fiber.Ctx) error {
	limit, err := queryInt(c, "limit", 20, 1, 500)
	if err != nil {
		return err
	}
	radius, err := queryInt(c, "radius_m", 10_000, 1, 100_000)
	if err != nil {
		return err
	}
	var f livemap.Filter
	if st := queryView(c, "status"); st != "" {
		status, err := livemap.ParseStatus(st)
		if err != nil {
			return badRequest("status must be offline, available, busy or on_break")
		}
		f.Statuses = statusFilter(status)
		if status == livemap.StatusAvailable {
			f.Online, f.OnShift = true, true
		}
	}
	if near := queryView(c, "near"); near != "" {
		lat, lng, ok := parseLatLng(near)
		if !ok {
			return badRequest("near must be LAT,LNG in degrees")
		}
		hp := hitBufs.Get().(*[]livemap.Hit)
		hits := t.Index.NearestAppend((*hp)[:0], lat, lng, f, limit, float64(radius))
		var names []string
		sc := nearScratches.Get().(*nearScratch)
		if t.Name != nil || t.Names != nil {
			names = t.namesOf(hits, sc)
		}
		bp := nearBufs.Get().(*[]byte)
		buf := appendCouriersJSON((*bp)[:0], hits, names)
		c.Response().SetBody(buf) // copies
		c.Response().Header.SetContentType(fiber.MIMEApplicationJSON)
		clear(sc.ids) // drop references to courier strings before pooling
		clear(sc.names)
		if cap(sc.ids) <= 1024 {
			nearScratches.Put(sc)
		}
		clear(hits)
		*hp, *bp = hits[:0], buf[:0]
		if cap(hits) <= 1024 {
			hitBufs.Put(hp)
		}
		if cap(buf) <= 1<<20 {
			nearBufs.Put(bp)
		}
		return nil
	}
	out := []courierJSON{}
	after := c.Query("after")
	var all []livemap.Courier
	t.Index.Each(func(lc livemap.Courier) bool {
		if lc.ID > after && matches(lc, f) {
			all = append(all, lc)
		}
		return true
	})
	slices.SortFunc(all, func(a, b livemap.Courier) int { return cmp.Compare(a.ID, b.ID) })
	next := ""
	if len(all) > limit {
		all = all[:limit]
		next = all[limit-1].ID
	}
	for _, lc := range all {
		out = append(out, t.named(courierOut(lc, 0, false)))
	}
	return c.JSON(fiber.Map{"couriers": out, "next": next})
}

// oneStatus is a one-status list per status the index names, made once:
// a filter's Statuses is only read (by the index and matches), so the
// lists are shared rather than made per request.
var oneStatus = func() (t [len(statusJSON)][]livemap.Status) {
	for i := range t {
		t[i] = []livemap.Status{livemap.Status(i)}
	}
	return t
}()

// statusFilter is []livemap.Status{st}, shared when st is a known status.
func statusFilter(st livemap.Status) []livemap.Status {
	if int(st) < len(oneStatus) {
		return oneStatus[st][:1:1] // full: an append elsewhere copies
	}
	return []livemap.Status{st}
}

func matches(c livemap.Courier, f livemap.Filter) bool {
	if len(f.Statuses) > 0 && !slices.Contains(f.Statuses, c.Status) {
		return false
	}
	return (!f.Online || c.Online) && (!f.OnShift || c.OnShift)
}

func (t Tracking) getCourier(c *fiber.Ctx) error {
	id := c.Params("id")
	if !validID(id) {
		return notFound("courier")
	}
	lc, ok := t.Index.Get(id)
	if !ok {
		return notFound("courier")
	}
	return c.JSON(t.named(courierOut(lc, 0, false)))
}

func (t Tracking) track(c *fiber.Ctx) error {
	id := c.Params("id")
	p := principal(c)
	if !validID(id) || (p.Role == auth.RoleCourier && p.CourierID != id) {
		return notFound("courier")
	}
	now := time.Now().UTC()
	from, to := now.Add(-time.Hour), now
	var err error
	if v := c.Query("from"); v != "" {
		if from, err = time.Parse(time.RFC3339, v); err != nil {
			return badRequest("from must be RFC 3339")
		}
	}
	if v := c.Query("to"); v != "" {
		if to, err = time.Parse(time.RFC3339, v); err != nil {
			return badRequest("to must be RFC 3339")
		}
	}
	if to.Before(from) || to.Sub(from) > 7*24*time.Hour {
		return badRequest("from must be before to, at most 7 days apart")
	}
	limit, err := queryInt(c, "limit", 5000, 1, 20000)
	if err != nil {
		return err
	}
	ps, err := t.Store.Track(c.UserContext(), id, from, to, limit)
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"courier_id": id, "positions": ps})
}

type shiftReq struct {
	OnDuty *bool `json:"on_duty"`
}

func (t Tracking) shift(c *fiber.Ctx) error {
	var req shiftReq
	if err := decode(c, &req); err != nil {
		return err
	}
	if req.OnDuty == nil {
		return badRequest("on_duty (boolean) is required")
	}
	p := principal(c)
	if err := t.SetShift(c, p.CourierID, *req.OnDuty); err != nil {
		return err
	}
	return c.JSON(fiber.Map{"courier_id": p.CourierID, "on_duty": *req.OnDuty})
}

func (t Tracking) density(c *fiber.Ctx) error {
	res, err := queryInt(c, "res", 8, 7, 8)
	if err != nil {
		return err
	}
	var bbox *density.BBox
	if v := c.Query("bbox"); v != "" {
		b, err := parseBBox(v)
		if err != nil {
			return err
		}
		bbox = &b
	}
	c.Set(fiber.HeaderContentType, "application/geo+json")
	return c.JSON(density.Features(t.Density.Cells(res, bbox, time.Now())), "application/geo+json")
}

type alertJSON struct {
	Cell              string        `json:"cell"`
	Lat               float64       `json:"lat"`
	Lng               float64       `json:"lng"`
	Demand            int           `json:"demand"`
	AvailableCouriers int           `json:"available_couriers"`
	BusyCouriers      int           `json:"busy_couriers"`
	OpenOrders        int           `json:"open_orders"`
	Booked15m         int           `json:"booked_15m"`
	NoSupply          bool          `json:"no_supply"`
	Ratio             *float64      `json:"ratio,omitempty"`
	NearestIdle       []courierJSON `json:"nearest_idle_couriers"`
}

func (t Tracking) alerts(c *fiber.Ctx) error {
	res, err := queryInt(c, "res", 8, 7, 8)
	if err != nil {
		return err
	}
	out := []alertJSON{}
	idle := livemap.Filter{Statuses: []livemap.Status{livemap.StatusAvailable}, Online: true, OnShift: true}
	for _, a := range t.Density.Alerts(res, t.AlertRatio, time.Now()) {
		aj := alertJSON{Cell: a.Cell, Lat: a.Lat, Lng: a.Lng, Demand: a.Demand, AvailableCouriers: a.AvailableCouriers,
			BusyCouriers: a.BusyCouriers, OpenOrders: a.OpenOrders, Booked15m: a.Booked15m, NoSupply: a.NoSupply, NearestIdle: []courierJSON{}}
		if !a.NoSupply {
			r := math.Round(a.Ratio*100) / 100
			aj.Ratio = &r
		}
		for _, h := range t.Index.Nearest(a.Lat, a.Lng, idle, 3, 15_000) {
			if h.Cell8.String() == a.Cell || h.Cell7.String() == a.Cell {
				continue // already counted as the cell's supply
			}
			aj.NearestIdle = append(aj.NearestIdle, t.named(courierOut(h.Courier, h.DistanceM, true)))
		}
		out = append(out, aj)
	}
	return c.JSON(fiber.Map{"ratio": t.AlertRatio, "alerts": out})
}

func (s *Server) auditList(c *fiber.Ctx, st *mongostore.Store) error {
	limit, err := queryInt(c, "limit", 100, 1, 1000)
	if err != nil {
		return err
	}
	before := c.Query("before")
	if before != "" && !validID(before) {
		return badRequest("before must be an entry id")
	}
	subject := c.Query("subject")
	if len(subject) > 200 {
		return badRequest("subject too long")
	}
	entries, err := st.Audit(c.UserContext(), subject, before, limit)
	if err != nil {
		return err
	}
	next := ""
	if len(entries) == limit {
		next = entries[len(entries)-1].ID
	}
	return c.JSON(fiber.Map{"entries": entries, "next": next})
}
