package account

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/tawsil/tawsil/backend/internal/auth"
	"github.com/tawsil/tawsil/backend/internal/textsafe"
)

// MaxImport is how many couriers one import takes.
const MaxImport = 2000

// ImportRow is one courier of a bulk import.
type ImportRow struct {
	Name, Phone, Email, Vehicle string
	Capacity                    int
}

// Import statuses.
const (
	ImportCreated  = "created"  // new courier, user and device credentials (the secret is shown this once)
	ImportExisting = "existing" // a courier with this e-mail exists: nothing changed, no new secret
	ImportInvalid  = "invalid"  // refused, with the reason
)

// ImportResult is what happened to one row.
type ImportResult struct {
	Row       int           `json:"row"` // 1-based, in the order given
	Email     string        `json:"email"`
	Status    string        `json:"status"`
	CourierID string        `json:"courier_id,omitempty"`
	UserID    string        `json:"user_id,omitempty"`
	Device    *DeviceSecret `json:"device,omitempty"`
	Error     string        `json:"error,omitempty"`
}

// BulkStore is what a bulk import needs of the store besides Store.
type BulkStore interface {
	UsersByEmails(ctx context.Context, emails []string) (map[string]User, error)
	InsertCouriers(ctx context.Context, cs []*Courier) error // sets the ids
	InsertUsers(ctx context.Context, us []*User) (conflicts map[int]bool, err error)
	DeleteCouriers(ctx context.Context, ids []string) error
	InsertDeviceCredentials(ctx context.Context, ds []DeviceCredential) error
}

// ImportCouriers creates couriers in bulk: for each new e-mail a courier, its
// user (no password: an admin sets one before the courier app can sign in;
// the device needs none) and device credentials, returned once. It is
// idempotent: an e-mail already registered to a courier is reported
// "existing" and nothing changes. Rows are checked like single creations.
func (s *Service) ImportCouriers(ctx context.Context, bs BulkStore, rows []ImportRow) ([]ImportResult, error) {
	if len(rows) == 0 || len(rows) > MaxImport {
		return nil, fmt.Errorf("%w: an import takes 1 to %d couriers", ErrInvalid, MaxImport)
	}
	now := s.now().UTC()
	out := make([]ImportResult, len(rows))
	seen := map[string]int{}
	for i, r := range rows {
		res := &out[i]
		res.Row = i + 1
		email := strings.ToLower(strings.TrimSpace(r.Email))
		res.Email = email
		if err := checkImportRow(&rows[i], email); err != nil {
			res.Status, res.Error = ImportInvalid, err.Error()
			continue
		}
		if j, dup := seen[email]; dup {
			res.Status, res.Error = ImportInvalid, fmt.Sprintf("the same e-mail as row %d", j+1)
			continue
		}
		seen[email] = i
	}
	// The unique index on e-mails decides what exists: insert everything
	// new-looking, then undo the couriers whose user was a duplicate and
	// look only those up (a look-up of every e-mail scans the users on
	// FerretDB: quadratic over a large onboarding).
	fresh := make([]int, 0, len(seen))
	for _, i := range seen {
		fresh = append(fresh, i)
	}
	if len(fresh) == 0 {
		return out, nil
	}
	slices.Sort(fresh)
	cs := make([]*Courier, len(fresh))
	for k, i := range fresh {
		r := rows[i]
		cs[k] = &Courier{Name: textsafe.Name(r.Name), Phone: r.Phone, Vehicle: r.Vehicle, Capacity: r.Capacity, CreatedAt: now}
	}
	if err := bs.InsertCouriers(ctx, cs); err != nil {
		return nil, fmt.Errorf("import couriers: %w", err)
	}
	us := make([]*User, len(fresh))
	for k, i := range fresh {
		us[k] = &User{Email: out[i].Email, Name: cs[k].Name, Role: auth.RoleCourier, CourierID: cs[k].ID, CreatedAt: now}
	}
	conflicts, err := bs.InsertUsers(ctx, us)
	if err != nil {
		// No transactions: undo every courier of this import whose user is not in.
		var ids []string
		for _, c := range cs {
			ids = append(ids, c.ID)
		}
		if derr := bs.DeleteCouriers(context.WithoutCancel(ctx), ids); derr != nil {
			s.log.Error("imported couriers left without users", "count", len(ids), "err", derr)
		}
		return nil, fmt.Errorf("import users: %w", err)
	}
	var undo, taken []string
	var ds []DeviceCredential
	for k, i := range fresh {
		res := &out[i]
		if conflicts[k] { // the e-mail is registered already
			undo = append(undo, cs[k].ID)
			taken = append(taken, res.Email)
			continue
		}
		secret := DeviceSecret{Username: cs[k].ID, Password: auth.RandomToken(24), ClientID: "dev-" + cs[k].ID}
		ds = append(ds, DeviceCredential{Username: secret.Username, ClientID: secret.ClientID, CourierID: cs[k].ID,
			SecretHash: auth.HashSecret(secret.Password), CreatedAt: now})
		res.Status, res.CourierID, res.UserID, res.Device = ImportCreated, cs[k].ID, us[k].ID, &secret
	}
	if len(taken) > 0 {
		existing, err := bs.UsersByEmails(ctx, taken)
		if err != nil {
			return nil, err
		}
		for k, i := range fresh {
			if !conflicts[k] {
				continue
			}
			res := &out[i]
			u, ok := existing[res.Email]
			switch {
			case !ok:
				res.Status, res.Error = ImportInvalid, "the e-mail was registered meanwhile"
			case u.Role != auth.RoleCourier || u.Erased:
				res.Status, res.Error = ImportInvalid, "the e-mail belongs to another account"
			default:
				res.Status, res.CourierID, res.UserID = ImportExisting, u.CourierID, u.ID
			}
		}
	}
	if len(undo) > 0 {
		if err := bs.DeleteCouriers(context.WithoutCancel(ctx), undo); err != nil {
			s.log.Error("couriers left without users", "count", len(undo), "err", err)
		}
	}
	if len(ds) > 0 {
		if err := bs.InsertDeviceCredentials(ctx, ds); err != nil {
			return nil, fmt.Errorf("import device credentials: %w", err)
		}
	}
	return out, nil
}

func checkImportRow(r *ImportRow, email string) error {
	if a, err := mail.ParseAddress(email); err != nil || a.Address != email || len(email) > 254 || textsafe.Identifier(email) != nil {
		return errors.New("email is not an address")
	}
	name := textsafe.Name(r.Name)
	if name == "" || utf8.RuneCountInString(name) > 120 {
		return errors.New("name must be 1 to 120 characters")
	}
	r.Phone = strings.TrimSpace(r.Phone)
	if r.Phone != "" && !validPhone(r.Phone) {
		return errors.New("phone must be +<country><number>, 8 to 15 digits")
	}
	if r.Vehicle == "" {
		r.Vehicle = "scooter"
	}
	switch r.Vehicle {
	case "scooter", "bike", "car", "foot":
	default:
		return errors.New("vehicle must be scooter, bike, car or foot")
	}
	if r.Capacity == 0 {
		r.Capacity = 3
	}
	if r.Capacity < 1 || r.Capacity > 20 {
		return errors.New("capacity must be 1 to 20")
	}
	return nil
}
