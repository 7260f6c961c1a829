package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// cpuMeter reads the CPU time (user + system) that named processes have
// used, from /proc: the processes of -cpu (name=pid), the PostgreSQL
// backends serving -cpu-pg's database (their titles name it), and loadgen
// itself. A throughput ratio on a shared machine moves with everything
// else that runs; the CPU each part spends per fix does not, or much less.
type cpuMeter struct {
	pids map[string]int
	pgDB string
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's times: 100 on
// every Linux architecture Go supports.
const clockTicks = 100

// parseCPUFlag reads "name=pid,name=pid".
func parseCPUFlag(s string) (map[string]int, error) {
	out := map[string]int{}
	if s == "" {
		return out, nil
	}
	for _, kv := range strings.Split(s, ",") {
		name, v, ok := strings.Cut(kv, "=")
		pid, err := strconv.Atoi(v)
		if !ok || name == "" || err != nil || pid <= 0 {
			return nil, fmt.Errorf("-cpu: %q is not name=pid", kv)
		}
		out[name] = pid
	}
	return out, nil
}

// cpuSample is CPU seconds by process name.
type cpuSample map[string]float64

func (m cpuMeter) enabled() bool { return len(m.pids) > 0 || m.pgDB != "" }

// sample reads the processes' CPU time now; a process that is gone reads 0.
func (m cpuMeter) sample() cpuSample {
	s := cpuSample{"loadgen": procCPU("self")}
	for name, pid := range m.pids {
		s[name] = procCPU(strconv.Itoa(pid))
	}
	if m.pgDB != "" {
		s["postgres"] = pgCPU(m.pgDB)
	}
	return s
}

// procCPU is utime+stime of /proc/<pid>/stat in seconds.
func procCPU(pid string) float64 {
	b, err := os.ReadFile(filepath.Join("/proc", pid, "stat"))
	if err != nil {
		return 0
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 { // fields 3.. : state is f[0], utime f[11], stime f[12]
		return 0
	}
	u, err1 := strconv.ParseFloat(f[11], 64)
	st, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return 0
	}
	return (u + st) / clockTicks
}

// pgCPU sums the CPU time of the PostgreSQL backends whose title names db
// ("postgres: 15/main: user db 127.0.0.1(port) idle"). A backend that
// ended during the run takes its time with it: FerretDB keeps a pool.
func pgCPU(db string) float64 {
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	var total float64
	for _, d := range dirs {
		if _, err := strconv.Atoi(d.Name()); err != nil {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		if err != nil || !bytes.HasPrefix(cmd, []byte("postgres: ")) {
			continue
		}
		// With a cluster name the title has one more field before the user.
		if f := strings.Fields(string(bytes.TrimRight(cmd, "\x00"))); (len(f) > 3 && f[3] == db) || (len(f) > 2 && f[2] == db) {
			total += procCPU(d.Name())
		}
	}
	return total
}

// cpuUse is what each process used between two samples, in CPU seconds.
type cpuUse struct {
	by    map[string]float64
	total float64
}

func (a cpuSample) until(b cpuSample) cpuUse {
	u := cpuUse{by: map[string]float64{}}
	for name, v := range b {
		d := max(v-a[name], 0)
		u.by[name] = d
		u.total += d
	}
	return u
}

// perKFix formats the use as CPU ms per 1,000 fixes, in total and by
// process (largest first).
func (u cpuUse) perKFix(fixes int) string {
	if fixes <= 0 {
		return "n/a"
	}
	k := float64(fixes) / 1000
	names := make([]string, 0, len(u.by))
	for n := range u.by {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		return u.by[names[i]] > u.by[names[j]] || (u.by[names[i]] == u.by[names[j]] && names[i] < names[j])
	})
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fmt.Sprintf("%s %.2f", n, 1000*u.by[n]/k)
	}
	return fmt.Sprintf("%.2f CPU ms per 1000 fixes (%s)", 1000*u.total/k, strings.Join(parts, ", "))
}
