package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"

	"golang.org/x/sync/errgroup"

	"github.com/tawsil/tawsil/shared/topic"
)

// Credential is one courier's device login, in the format of the backend's
// fleet-credentials.json (TAWSIL_SEED) and of `agent fleet`.
type Credential struct {
	CourierID string `json:"courier_id"`
	Username  string `json:"mqtt_username"`
	Password  string `json:"mqtt_password"`
	ClientID  string `json:"client_id"`
}

// ErrCredentials means a credentials file is unusable.
var ErrCredentials = errors.New("invalid credentials file")

// decodeCredentials parses a credentials file and checks every entry.
func decodeCredentials(raw []byte) ([]Credential, error) {
	var cs []Credential
	if err := json.Unmarshal(raw, &cs); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCredentials, err)
	}
	seen := make(map[string]bool, len(cs))
	for i, c := range cs {
		switch {
		case !topic.ValidID(c.CourierID):
			return nil, fmt.Errorf("%w: entry %d: courier_id %q", ErrCredentials, i, c.CourierID)
		case c.ClientID == "":
			return nil, fmt.Errorf("%w: entry %d: empty client_id", ErrCredentials, i)
		case seen[c.CourierID]:
			return nil, fmt.Errorf("%w: entry %d: courier %s twice", ErrCredentials, i, c.CourierID)
		}
		seen[c.CourierID] = true
	}
	if len(cs) == 0 {
		return nil, fmt.Errorf("%w: no courier", ErrCredentials)
	}
	return cs, nil
}

func readCredentials(path string) ([]Credential, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read credentials: %w", err)
	}
	cs, err := decodeCredentials(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cs, nil
}

func writeCredentials(path string, cs []Credential) error {
	raw, err := json.MarshalIndent(cs, "", "  ")
	if err != nil {
		return fmt.Errorf("write credentials: %w", err)
	}
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		return fmt.Errorf("write credentials: %w", err)
	}
	return nil
}

// provisionOptions say how many couriers to create and how.
type provisionOptions struct {
	BaseURL       string
	AdminEmail    string
	AdminPassword string
	Couriers      int
	Prefix        string // email prefix: <prefix><n>@loadgen.tawsil.test
	Password      string // every courier's account password
	Workers       int
	// Sources are loopback source addresses the courier logins leave from
	// (the API limits logins per client address); empty: the default route.
	Sources []string
}

// provision creates couriers through the API as an operator would: create
// the user (admin), log the courier in and put it on shift, issue device
// credentials (admin).
func provision(ctx context.Context, o provisionOptions, log *slog.Logger) ([]Credential, error) {
	admin := newAPI(o.BaseURL, "")
	adminToken, err := admin.login(ctx, o.AdminEmail, o.AdminPassword)
	if err != nil {
		return nil, fmt.Errorf("admin login: %w", err)
	}
	sources := o.Sources
	if len(sources) == 0 {
		sources = []string{""}
	}
	clients := make([]*api, len(sources))
	for i, s := range sources {
		clients[i] = newAPI(o.BaseURL, s)
	}
	out := make([]Credential, o.Couriers)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(o.Workers, 1))
	for i := range o.Couriers {
		g.Go(func() error {
			c, err := provisionOne(gctx, admin, clients[i%len(clients)], adminToken, o, i)
			if err != nil {
				return fmt.Errorf("courier %d: %w", i, err)
			}
			out[i] = c
			if (i+1)%250 == 0 {
				log.Info("provisioning", "done", i+1, "of", o.Couriers)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return out, nil
}

func provisionOne(ctx context.Context, admin, client *api, adminToken string, o provisionOptions, i int) (Credential, error) {
	email := fmt.Sprintf("%s%d@loadgen.tawsil.test", o.Prefix, i)
	var user struct {
		CourierID string `json:"courier_id"`
	}
	vehicles := []string{"scooter", "scooter", "bike", "car"}
	err := admin.do(ctx, http.MethodPost, "/v1/users", adminToken, map[string]any{"email": email, "password": o.Password,
		"role": "courier", "name": fmt.Sprintf("Loadgen courier %d", i), "vehicle": vehicles[i%len(vehicles)]}, &user, http.StatusCreated)
	if err != nil {
		return Credential{}, err
	}
	if user.CourierID == "" {
		return Credential{}, errors.New("create user: no courier_id in the answer")
	}
	token, err := client.login(ctx, email, o.Password)
	if err != nil {
		return Credential{}, err
	}
	if err := client.do(ctx, http.MethodPost, "/v1/me/shift", token, map[string]bool{"on_duty": true}, nil, http.StatusOK); err != nil {
		return Credential{}, err
	}
	var sec Credential
	err = admin.do(ctx, http.MethodPost, "/v1/couriers/"+url.PathEscape(user.CourierID)+"/device-credentials", adminToken, nil, &sec, http.StatusCreated)
	if err != nil {
		return Credential{}, err
	}
	sec.CourierID = user.CourierID
	return sec, nil
}
