package web_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/tawsil/tawsil/backend/internal/failure"
	"github.com/tawsil/tawsil/backend/internal/i18n"
	"github.com/tawsil/tawsil/backend/internal/livemap"
	"github.com/tawsil/tawsil/backend/internal/order"
)

// TestEveryUITextIsTranslated: every text key the sources name
// (t('key'), data-i18n="key"), and every key built from a status, reason
// or decision the backend can send, exists in every locale.
func TestEveryUITextIsTranslated(t *testing.T) {
	cat, err := i18n.Load()
	if err != nil {
		t.Fatal(err)
	}
	literal := regexp.MustCompile(`\bt\('([a-z0-9_.]+[a-z0-9_])'|data-i18n(?:-[a-z]+)?': '([a-z0-9_.]+)'|titleKey = '([a-z_.]+)'`)
	keys := map[string]string{}
	err = filepath.WalkDir("src", func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".ts") && !strings.HasSuffix(path, ".html") {
			return err
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range literal.FindAllStringSubmatch(string(raw), -1) {
			keys[m[1]+m[2]+m[3]] = path
		}
		for _, m := range regexp.MustCompile(`data-title-key="([a-z_.]+)"`).FindAllStringSubmatch(string(raw), -1) {
			keys[m[1]] = path
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) < 80 {
		t.Fatalf("only %d keys found in src/: is the pattern right?", len(keys))
	}
	for _, s := range order.Statuses() {
		keys["status."+string(s)] = "order.Statuses"
		keys["track.status."+string(s)] = "order.Statuses"
	}
	for _, s := range []livemap.Status{livemap.StatusOffline, livemap.StatusAvailable, livemap.StatusBusy, livemap.StatusOnBreak} {
		keys["courier.status."+s.String()] = "livemap statuses"
	}
	for _, r := range failure.Reasons() {
		keys["reason."+string(r)] = "failure.Reasons"
	}
	for _, a := range failure.Actions() {
		keys["decision."+string(a)] = "failure.Actions"
	}
	for _, k := range []order.Kind{order.ActReattempt, order.ActReassign, order.ActReturn, order.ActCancel, order.ActDeliverRelay} {
		keys["decision."+string(k)] = "attempt decisions"
	}
	keys["decision."+string(failure.DispatcherReview)] = "failure.DispatcherReview"
	for _, k := range []string{"pickup", "dropoff", "return", "relay"} {
		keys["stop."+k] = "route stop kinds"
	}
	for _, k := range []string{"connecting", "open", "reconnecting"} {
		keys["stream."+k] = "stream states"
	}
	for k, from := range keys {
		for _, l := range i18n.Locales {
			if !cat.Has(l, k) {
				t.Errorf("%s: text %q missing from locales/%s.json", from, k, l)
			}
		}
	}
}
