package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/tawsil/tawsil/backend/internal/account"
	"github.com/tawsil/tawsil/backend/internal/auth"
)

// Demo accounts created by TAWSIL_SEED=true (local demos only). Their
// passwords come from TAWSIL_DEMO_PASSWORD when set.
var demoUsers = []account.NewUser{
	{Email: "merchant@demo.tawsil.ma", Role: auth.RoleMerchant, Name: "Hanout Maarif (demo)"},
	{Email: "dispatcher@demo.tawsil.ma", Role: auth.RoleDispatcher, Name: "Salma Dispatch (demo)"},
	{Email: "courier1@demo.tawsil.ma", Role: auth.RoleCourier, Name: "Youssef (demo)", Vehicle: "scooter"},
	{Email: "courier2@demo.tawsil.ma", Role: auth.RoleCourier, Name: "Khadija (demo)", Vehicle: "scooter"},
	{Email: "courier3@demo.tawsil.ma", Role: auth.RoleCourier, Name: "Omar (demo)", Vehicle: "bike"},
	{Email: "courier4@demo.tawsil.ma", Role: auth.RoleCourier, Name: "Imane (demo)", Vehicle: "scooter"},
	{Email: "courier5@demo.tawsil.ma", Role: auth.RoleCourier, Name: "Mehdi (demo)", Vehicle: "car"},
}

// FleetCredential is one line of the fleet credentials file the agent reads.
type FleetCredential struct {
	CourierID string `json:"courier_id"`
	Username  string `json:"mqtt_username"`
	Password  string `json:"mqtt_password"`
	ClientID  string `json:"client_id"`
}

// seed creates the demo accounts once, puts the demo couriers on shift and
// writes fresh device credentials for them to DATA_DIR/fleet-credentials.json.
func (m *Main) seed(ctx context.Context) error {
	pw := os.Getenv("TAWSIL_DEMO_PASSWORD")
	if pw == "" {
		pw = "tawsil-demo-2026"
	}
	var fleet []FleetCredential
	for _, du := range demoUsers {
		du.Password = pw
		u, err := m.Accounts.CreateUser(ctx, du)
		if errors.Is(err, account.ErrConflict) {
			u, err = m.Store.UserByEmail(ctx, du.Email)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", du.Email, err)
		}
		if u.CourierID == "" {
			continue
		}
		c, err := m.Accounts.Courier(ctx, u.CourierID)
		if err != nil {
			return err
		}
		m.learnCourier(c)
		if err := m.SetShift(ctx, u.CourierID, true); err != nil {
			return err
		}
		sec, err := m.Accounts.IssueDeviceCredential(ctx, u.CourierID)
		if err != nil {
			return err
		}
		fleet = append(fleet, FleetCredential{CourierID: u.CourierID, Username: sec.Username, Password: sec.Password, ClientID: sec.ClientID})
	}
	b, err := json.MarshalIndent(fleet, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(m.Config.DataDir, 0o700); err != nil {
		return err
	}
	path := filepath.Join(m.Config.DataDir, "fleet-credentials.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return err
	}
	m.Log.Info("demo accounts ready", "couriers", len(fleet), "fleet_credentials", path)
	return nil
}
