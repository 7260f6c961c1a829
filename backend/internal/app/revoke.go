package app

import (
	"context"
	"errors"
	"time"

	"github.com/tawsil/tawsil/backend/internal/account"
	"github.com/tawsil/tawsil/backend/internal/order"
)

// wireRevocation makes a revocation take effect at once in memory: a user
// whose tokens were revoked (logout, password change, disabling, erasure)
// loses its open event streams; a disabled or erased courier also leaves the
// live index (positions, listings, availability), dispatch and its offers.
// Enabling a courier again brings it back to the live index, off shift.
func (m *Main) wireRevocation() {
	m.Accounts.OnUserRevoked = func(u account.User) {
		if m.Hub != nil {
			m.Hub.EndUser(u.ID)
		}
		if u.CourierID == "" || !(u.Disabled || u.Erased) {
			return
		}
		m.Index.Remove(u.CourierID)
		if m.Delivery != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			m.Delivery.CourierGone(ctx, u.CourierID, order.Actor{Role: order.RoleAdmin, ID: "account-admin"})
		}
		m.Log.Info("courier left live state", "courier_id", u.CourierID, "erased", u.Erased)
	}
	m.Accounts.OnUserRestored = func(u account.User) {
		if u.CourierID == "" {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if c, err := m.Accounts.Courier(ctx, u.CourierID); err == nil {
			m.learnCourier(c)
		}
	}
}

// activeCourier reports whether a courier's user may appear in the live
// state (neither disabled nor erased).
func (m *Main) activeCourier(ctx context.Context, c account.Courier) (bool, error) {
	if c.UserID == "" {
		return true, nil
	}
	u, err := m.Accounts.User(ctx, c.UserID)
	if errors.Is(err, account.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return !u.Disabled && !u.Erased, nil
}
