package mdrp

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tawsil/tawsil/backend/internal/dispatch"
)

// TestTune plays the server's policy with changes to its dispatch
// configuration on public instances, one line per (instance, change): how
// the README's tuning was done. It needs the instances, which do not ship
// (no licence), so it runs only when asked:
//
//	MDRP_TUNE=DIR[,DIR...] MDRP_SET='hz=25;at=6,idle=0.5' go test -run TestTune -v ./internal/mdrp
//
// MDRP_SET holds changes separated by ';', each a list of key=value (keys
// in apply; durations in minutes); MDRP_TB=1 plays the take-back variant.
func TestTune(t *testing.T) {
	dirs := os.Getenv("MDRP_TUNE")
	if dirs == "" {
		t.Skip("MDRP_TUNE names no instance folders")
	}
	for _, d := range strings.Split(dirs, ",") {
		in, err := Load(d)
		if err != nil {
			t.Fatal(err)
		}
		for _, set := range strings.Split(os.Getenv("MDRP_SET"), ";") {
			cfg := TawsilConfig(in.Params)
			apply(t, &cfg, set)
			p, err := NewTawsil(in, cfg, os.Getenv("MDRP_TB") != "", "x")
			if err != nil {
				t.Fatal(err)
			}
			r := Play(in, p)
			m := r.Metrics
			t.Logf("%s [%s] viol %d del %.2f%% c2d %.1f p90 %.1f ord/ch %.2f pay/ord %.2f", in.Name, set, len(r.Violations),
				100*float64(m.Delivered)/float64(len(in.Orders)), m.ClickToDoor.Mean, m.ClickToDoor.P90, m.OrdersPerCourierHour, m.TotalPay/float64(max(m.Delivered, 1)))
		}
	}
}

func apply(t *testing.T, c *dispatch.Config, set string) {
	for _, kv := range strings.Split(set, ",") {
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			t.Fatal(kv)
		}
		m := time.Duration(f * float64(time.Minute))
		switch k {
		case "margin":
			c.Margin = m
		case "mps":
			c.MarginPerStop = m
		case "cap":
			c.DefaultCapacity = int(f)
		case "at":
			c.Weights.AssignedToday = f
		case "idle":
			c.Weights.IdleMin = f
		case "idlecap":
			c.IdleCap = m
		case "lead":
			c.CommitLead = m
		case "hz":
			c.CommitHorizon = m
		case "wait":
			c.Weights.WaitMin = f
		case "k":
			c.EpochCandidates = int(f)
		case "late":
			c.LateAfter = m
		case "slack":
			c.SlackTarget = m
		case "slackw":
			c.Weights.SlackShortMin = f
		case "load":
			c.Weights.Load = f
		case "pickupw":
			c.Weights.PickupMin = f
		case "detour":
			c.Weights.DetourMin = f
		case "deliv":
			c.Weights.DeliveryMin = f
		default:
			t.Fatal("unknown " + k)
		}
	}
}
