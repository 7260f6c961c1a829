package app

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// TestCourierNames: a name is found by its id, replaced by a later set
// (an erasure sets ""), and an unknown id has no name.
func TestCourierNames(t *testing.T) {
	var n courierNames
	if got := n.get("c1"); got != "" {
		t.Fatalf("empty: %q", got)
	}
	n.set("c1", "Amina")
	n.set("c12", "Youssef")
	n.set("c", "1Amina") // "c"+"1Amina" is the same entry text as "c1"+"Amina"
	for _, tt := range []struct{ give, want string }{{"c1", "Amina"}, {"c12", "Youssef"}, {"c", "1Amina"}, {"c2", ""}, {"", ""}} {
		if got := n.get(tt.give); got != tt.want {
			t.Errorf("get(%q) = %q, want %q", tt.give, got, tt.want)
		}
	}
	got := make([]string, 3)
	n.getAll([]string{"c12", "nobody", "c"}, got)
	if got[0] != "Youssef" || got[1] != "" || got[2] != "1Amina" {
		t.Errorf("getAll = %q", got)
	}
	n.set("c1", "Amina B.")
	n.set("c12", "")
	if got := n.get("c1"); got != "Amina B." {
		t.Errorf("renamed: %q", got)
	}
	if got, ok := n.m["c12"]; !ok || got != "c12" || n.get("c12") != "" {
		t.Errorf("erased: entry %q, name %q", got, n.get("c12"))
	}
}

// BenchmarkCourierNames: a name per random courier of 50,000, then its
// bytes read (as the near= answer writes them), beside a map of id to name
// under the same lock.
func BenchmarkCourierNames(b *testing.B) {
	const n = 50_000
	ids := make([]string, n)
	var joined courierNames
	split := map[string]string{}
	for i := range ids {
		ids[i] = fmt.Sprintf("bench-courier-%06d", i)
		name := "Bench " + strconv.Itoa(i)
		joined.set(strings.Clone(ids[i]), name)
		split[strings.Clone(ids[i])] = strings.Clone(name)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	order := make([]int32, 1<<16)
	for i := range order {
		order[i] = int32(rng.IntN(n))
	}
	var mu sync.RWMutex
	sum := 0
	b.Run("joined", func(b *testing.B) {
		i := 0
		for b.Loop() {
			s := joined.get(ids[order[i&(len(order)-1)]])
			sum += int(s[len(s)-1])
			i++
		}
	})
	b.Run("joined5", func(b *testing.B) { // five names a call, as near= asks them
		var five [5]string
		out := make([]string, 5)
		i := 0
		for b.Loop() {
			for k := range five {
				five[k] = ids[order[(i+k)&(len(order)-1)]]
			}
			joined.getAll(five[:], out)
			sum += int(out[4][len(out[4])-1])
			i += 5
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(5*b.N), "ns/name")
	})
	b.Run("split", func(b *testing.B) {
		i := 0
		for b.Loop() {
			mu.RLock()
			s := split[ids[order[i&(len(order)-1)]]]
			mu.RUnlock()
			sum += int(s[len(s)-1])
			i++
		}
	})
	runtime.KeepAlive(sum)
}
