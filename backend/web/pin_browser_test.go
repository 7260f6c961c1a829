package web_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBrowserPin: a customer whose address is informal drops the pin from
// the tracking page in headless Chromium (the phone's location, granted to
// the page), and the order takes that point and is dispatched to it. The
// scenario is test/pin.mjs; screenshots go to test-artifacts/.
func TestBrowserPin(t *testing.T) {
	chromium, node := browserTools(t)
	m, base, dir := startApp(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pub, creds := startFleet(ctx, t, m, dir)
	for i, c := range creds { // live couriers around the shop, for dispatch once the pin is in
		pub.Set(c.CourierID, 33.5731+0.001*float64(i%5), -7.5898-0.001*float64(i%3), 0, 0)
	}
	artifacts, err := filepath.Abs("test-artifacts")
	if err != nil {
		t.Fatal(err)
	}
	cmdCtx, cmdCancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cmdCancel()
	cmd := exec.CommandContext(cmdCtx, node, "test/pin.mjs")
	cmd.Env = append(os.Environ(), "BASE_URL="+base, "CHROMIUM="+chromium, "ARTIFACTS="+artifacts,
		"ADMIN_EMAIL="+m.Config.AdminEmail, "ADMIN_PASSWORD="+m.Config.AdminPassword)
	out, err := cmd.CombinedOutput()
	t.Logf("pin scenario output:\n%s", out)
	if err != nil {
		t.Fatalf("pin scenario failed: %v", err)
	}
	if !strings.Contains(string(out), "ALL PASSED") {
		t.Fatal("the pin scenario did not report ALL PASSED")
	}
}
