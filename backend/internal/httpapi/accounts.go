package httpapi

import (
	"encoding/json"
	"errors"
	"math"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/tawsil/tawsil/backend/internal/account"
	"github.com/tawsil/tawsil/backend/internal/auth"
	"github.com/tawsil/tawsil/shared/profile"
	"github.com/tawsil/tawsil/shared/topic"
)

type loginReq struct {
	Email    string `json:"email"`
	Password string `json:"password"`
}

func (s *Server) login(c *fiber.Ctx) error {
	var req loginReq
	if err := decode(c, &req); err != nil {
		return err
	}
	if req.Email == "" || req.Password == "" || len(req.Email) > 254 || len(req.Password) > 200 {
		return badRequest("email and password are required")
	}
	pair, wait, err := s.accounts.Login(c.UserContext(), req.Email, req.Password, c.IP())
	if errors.Is(err, account.ErrThrottled) {
		return &apiError{status: 429, slug: "rate-limited", detail: "too many failed logins; try again later",
			retryAfter: int(math.Ceil(wait.Seconds()))}
	}
	if err != nil {
		return err
	}
	return c.JSON(pair)
}

type refreshReq struct {
	RefreshToken string `json:"refresh_token"`
}

func (s *Server) refresh(c *fiber.Ctx) error {
	var req refreshReq
	if err := decode(c, &req); err != nil {
		return err
	}
	pair, err := s.accounts.Refresh(c.UserContext(), req.RefreshToken)
	if err != nil {
		return err
	}
	return c.JSON(pair)
}

func (s *Server) logout(c *fiber.Ctx) error {
	if err := s.accounts.Logout(c.UserContext(), principal(c).UserID); err != nil {
		return err
	}
	return c.SendStatus(fiber.StatusNoContent)
}

type passwordReq struct {
	OldPassword string `json:"old_password"`
	NewPassword string `json:"new_password"`
}

func (s *Server) changePassword(c *fiber.Ctx) error {
	var req passwordReq
	if err := decode(c, &req); err != nil {
		return err
	}
	if err := s.accounts.ChangePassword(c.UserContext(), principal(c).UserID, req.OldPassword, req.NewPassword); err != nil {
		return err
	}
	return c.SendStatus(fiber.StatusNoContent)
}

type createUserReq struct {
	Email    string `json:"email"`
	Password string `json:"password"`
	Role     string `json:"role"`
	Name     string `json:"name"`
	Vehicle  string `json:"vehicle,omitempty"`
	Capacity int    `json:"capacity,omitempty"`
	Policy   string `json:"policy,omitempty"`
	Phone    string `json:"phone,omitempty"`
}

type userResp struct {
	ID         string `json:"id"`
	Email      string `json:"email"`
	Name       string `json:"name"`
	Role       string `json:"role"`
	CourierID  string `json:"courier_id,omitempty"`
	MerchantID string `json:"merchant_id,omitempty"`
	Disabled   bool   `json:"disabled"`
	CreatedAt  string `json:"created_at"`
}

func userJSON(u account.User) userResp {
	return userResp{ID: u.ID, Email: u.Email, Name: u.Name, Role: string(u.Role), CourierID: u.CourierID,
		MerchantID: u.MerchantID, Disabled: u.Disabled, CreatedAt: u.CreatedAt.UTC().Format("2006-01-02T15:04:05Z07:00")}
}

func (s *Server) createUser(c *fiber.Ctx) error {
	var req createUserReq
	if err := decode(c, &req); err != nil {
		return err
	}
	u, err := s.accounts.CreateUser(c.UserContext(), account.NewUser{Email: req.Email, Password: req.Password,
		Role: auth.Role(req.Role), Name: req.Name, Vehicle: req.Vehicle, Capacity: req.Capacity, Policy: req.Policy, Phone: req.Phone})
	if err != nil {
		return err
	}
	if s.OnCourierCreated != nil && u.CourierID != "" {
		if c2, err := s.accounts.Courier(c.UserContext(), u.CourierID); err == nil {
			s.OnCourierCreated(c2)
		}
	}
	return c.Status(fiber.StatusCreated).JSON(userJSON(u))
}

// validID refuses ids that are not plain tokens (operators, dots, slashes).
func validID(id string) bool { return topic.ValidID(id) }

func (s *Server) getUser(c *fiber.Ctx) error {
	id := c.Params("id")
	if !validID(id) {
		return notFound("user")
	}
	u, err := s.accounts.User(c.UserContext(), id)
	if err != nil {
		return err
	}
	return c.JSON(userJSON(u))
}

func (s *Server) eraseUser(c *fiber.Ctx) error {
	id := c.Params("id")
	if !validID(id) {
		return notFound("user")
	}
	if id == principal(c).UserID {
		return conflict("an admin cannot erase itself")
	}
	u, err := s.accounts.User(c.UserContext(), id)
	if err != nil {
		return err
	}
	if err := s.accounts.Erase(c.UserContext(), id); err != nil {
		return err
	}
	if u.CourierID != "" && s.OnCourierErased != nil {
		if err := s.OnCourierErased(c.UserContext(), u.CourierID); err != nil {
			return err
		}
	}
	s.audit(c, "erase_user", "user:"+id, "")
	return c.SendStatus(fiber.StatusNoContent)
}

func (s *Server) setDisabled(disabled bool) fiber.Handler {
	return func(c *fiber.Ctx) error {
		id := c.Params("id")
		if !validID(id) {
			return notFound("user")
		}
		if id == principal(c).UserID {
			return conflict("an admin cannot disable or enable itself")
		}
		if err := s.accounts.SetDisabled(c.UserContext(), id, disabled); err != nil {
			return err
		}
		action := "enable_user"
		if disabled {
			action = "disable_user"
		}
		s.audit(c, action, "user:"+id, "")
		u, err := s.accounts.User(c.UserContext(), id)
		if err != nil {
			return err
		}
		return c.JSON(userJSON(u))
	}
}

func (s *Server) deviceCredentials(c *fiber.Ctx) error {
	id := c.Params("id")
	if !validID(id) {
		return notFound("courier")
	}
	sec, err := s.accounts.IssueDeviceCredential(c.UserContext(), id)
	if err != nil {
		return err
	}
	s.audit(c, "issue_device_credential", "courier:"+id, "")
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.Status(fiber.StatusCreated).JSON(sec)
}

// pushProfile validates a device profile (the same rules the agent applies)
// and sends it to the courier's device, retained on its config topic.
func (s *Server) pushProfile(c *fiber.Ctx) error {
	id := c.Params("id")
	if !validID(id) {
		return notFound("courier")
	}
	if _, err := s.accounts.Courier(c.UserContext(), id); err != nil {
		return err
	}
	if err := jsonMediaType(c); err != nil {
		return err
	}
	if err := strictJSON(c.Body()); err != nil {
		return badRequest("invalid JSON body: " + err.Error())
	}
	p, err := profile.DecodeJSON(c.Body())
	if err != nil {
		return problem(fiber.StatusUnprocessableEntity, "invalid-profile", err.Error())
	}
	raw, err := json.Marshal(p)
	if err != nil {
		return err
	}
	if err := s.PushProfile(c.UserContext(), id, raw); err != nil {
		return err
	}
	s.audit(c, "push_device_profile", "courier:"+id, p.Name)
	return c.JSON(p)
}

func (s *Server) revokeDevice(c *fiber.Ctx) error {
	id := c.Params("id")
	if !validID(id) {
		return notFound("courier")
	}
	if err := s.accounts.RevokeDevice(c.UserContext(), id); err != nil {
		return err
	}
	s.audit(c, "revoke_device_credential", "courier:"+id, "")
	return c.SendStatus(fiber.StatusNoContent)
}

// audit records an access to personal data; failures are logged, not fatal
// to the request (the read already happened).
func (s *Server) audit(c *fiber.Ctx, action, subject, detail string) {
	if s.Audit == nil {
		return
	}
	p := principal(c)
	if err := s.Audit(c.UserContext(), p.UserID, string(p.Role), action, subject, strings.TrimSpace(detail)); err != nil {
		s.log.Error("audit append failed", "action", action, "err", err)
	}
}
