package main

import (
	"runtime"
	"strings"
	"testing"
)

func TestParseCPUFlag(t *testing.T) {
	got, err := parseCPUFlag("mosquitto=12,backend=34")
	if err != nil || len(got) != 2 || got["mosquitto"] != 12 || got["backend"] != 34 {
		t.Fatalf("parseCPUFlag = %v, %v", got, err)
	}
	for _, bad := range []string{"mosquitto", "=3", "a=0", "a=x", "a=1,"} {
		if _, err := parseCPUFlag(bad); err == nil {
			t.Errorf("parseCPUFlag(%q) accepted", bad)
		}
	}
}

// TestCPUMeterSelf: the meter reads this process's CPU time from /proc and
// reports what was used between two samples per 1,000 fixes.
func TestCPUMeterSelf(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	var m cpuMeter
	a := m.sample()
	x := 0
	for i := 0; procCPU("self") < a["loadgen"]+0.05; i++ { // burn at least 50 ms of CPU
		x += i
	}
	u := a.until(m.sample())
	if u.by["loadgen"] < 0.05 || u.total != u.by["loadgen"] {
		t.Fatalf("used %+v (x %d)", u, x)
	}
	if s := u.perKFix(1000); !strings.Contains(s, "CPU ms per 1000 fixes (loadgen ") {
		t.Fatalf("perKFix = %q", s)
	}
}
