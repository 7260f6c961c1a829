// Package fleet runs many simulated couriers in one process, each with its
// own MQTT connection, client id, credentials and sequence numbers, for
// demos and load tests.
//
// Each simulated courier keeps its fixes in an in-memory outbox
// (outbox.Memory): a per-courier bbolt file would cost one fsync per fix
// per courier, which measures the disk rather than the platform, and a
// simulated courier has nothing to lose in a crash. Sequence numbers start
// from the Unix time in milliseconds at start-up, so a restarted fleet
// never reuses a (courier, seq) pair the backend has already stored.
package fleet

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tawsil/tawsil/agent/internal/filter"
	"github.com/tawsil/tawsil/agent/internal/link"
	"github.com/tawsil/tawsil/agent/internal/outbox"
	"github.com/tawsil/tawsil/agent/internal/source"
	"github.com/tawsil/tawsil/shared/profile"
	"github.com/tawsil/tawsil/shared/topic"
)

// Credential is one device's MQTT identity, as the backend's
// device-credentials endpoint returns it.
type Credential struct {
	CourierID string `json:"courier_id"`
	Username  string `json:"mqtt_username"`
	Password  string `json:"mqtt_password"`
	ClientID  string `json:"client_id"`
}

// ErrCredentials reports an unusable credentials file.
var ErrCredentials = errors.New("invalid credentials")

// ReadCredentials reads a JSON array or JSON lines of Credential.
func ReadCredentials(r io.Reader) ([]Credential, error) {
	raw, err := io.ReadAll(io.LimitReader(r, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("read credentials: %w", err)
	}
	raw = bytes.TrimSpace(raw)
	var creds []Credential
	if bytes.HasPrefix(raw, []byte("[")) {
		if err := json.Unmarshal(raw, &creds); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrCredentials, err)
		}
	} else {
		sc := bufio.NewScanner(bytes.NewReader(raw))
		for n := 1; sc.Scan(); n++ {
			line := bytes.TrimSpace(sc.Bytes())
			if len(line) == 0 {
				continue
			}
			var c Credential
			if err := json.Unmarshal(line, &c); err != nil {
				return nil, fmt.Errorf("%w: line %d: %v", ErrCredentials, n, err)
			}
			creds = append(creds, c)
		}
	}
	for i, c := range creds {
		if !topic.ValidID(c.CourierID) {
			return nil, fmt.Errorf("%w: entry %d: courier_id %q", ErrCredentials, i, c.CourierID)
		}
		if c.ClientID == "" {
			creds[i].ClientID = "dev-" + c.CourierID
		}
	}
	if len(creds) == 0 {
		return nil, fmt.Errorf("%w: no entry", ErrCredentials)
	}
	return creds, nil
}

// Templated makes n credentials from templates in which "{n}" is the
// courier number (1-based), for brokers that accept any password or share one.
func Templated(n int, courierTmpl, userTmpl, password string) []Credential {
	out := make([]Credential, n)
	for i := range out {
		num := fmt.Sprint(i + 1)
		id := strings.ReplaceAll(courierTmpl, "{n}", num)
		out[i] = Credential{CourierID: id, Username: strings.ReplaceAll(userTmpl, "{n}", num), Password: password, ClientID: "dev-" + id}
	}
	return out
}

// Config is a fleet run.
type Config struct {
	Broker   string
	CAFile   string
	Prefix   string
	City     string
	Interval time.Duration // sampling period of each courier; 0: the profile's
	Profile  profile.Profile
	Couriers []Credential
	Version  string
	Logger   *slog.Logger
}

// Totals are the fleet's counters.
type Totals struct {
	Couriers     int    `json:"couriers"`
	Connected    int    `json:"connected"`
	Accepted     uint64 `json:"accepted"`
	Published    uint64 `json:"published"`
	Acknowledged uint64 `json:"acknowledged"`
	Messages     uint64 `json:"messages"`
	WireBytes    uint64 `json:"bytes_sent"`
	Depth        int    `json:"outbox_depth"`
}

// Fleet is a running set of simulated couriers.
type Fleet struct {
	cfg      Config
	links    []*link.Link
	boxes    []*outbox.Memory
	accepted atomic.Uint64
}

// New prepares the couriers.
func New(cfg Config) (*Fleet, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	city, err := source.CityByName(cfg.City)
	if err != nil {
		return nil, err
	}
	cfg.City = city.Name
	if cfg.Interval == 0 {
		cfg.Interval = time.Duration(cfg.Profile.GPS.ReadIntervalS * float64(time.Second))
	}
	f := &Fleet{cfg: cfg}
	base := uint64(time.Now().UnixMilli())
	for _, c := range cfg.Couriers {
		box := outbox.NewMemory(cfg.Profile.Outbox.MaxFixes, base)
		l, err := link.New(link.Config{Broker: cfg.Broker, ClientID: c.ClientID, Username: c.Username, Password: c.Password,
			CAFile: cfg.CAFile, Courier: c.CourierID, Prefix: cfg.Prefix, AgentVersion: cfg.Version, Profile: cfg.Profile,
			Logger: cfg.Logger}, box)
		if err != nil {
			return nil, err
		}
		f.links = append(f.links, l)
		f.boxes = append(f.boxes, box)
	}
	return f, nil
}

// Run runs every courier until ctx is done.
func (f *Fleet) Run(ctx context.Context) error {
	city, err := source.CityByName(f.cfg.City)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	for i, l := range f.links {
		box := f.boxes[i]
		sim := source.NewSim(city, f.cfg.Interval, rand.Int64N(1<<62)+1)
		filt := filter.New(f.cfg.Profile)
		wg.Add(3)
		go func() { defer wg.Done(); l.Run(ctx) }()
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case <-l.Inbox(): // simulated couriers do not act on tasks
				}
			}
		}()
		go func() {
			defer wg.Done()
			// Spread the couriers' ticks over one interval.
			if err := sleep(ctx, time.Duration(rand.Int64N(int64(f.cfg.Interval)))); err != nil {
				return
			}
			_ = sim.Run(ctx, func(s source.Sample) error {
				l.SetBattery(s.Fix.Battery)
				if send, _ := filt.Decide(s); send {
					if _, err := box.Enqueue(s.Fix); err != nil {
						return err
					}
					f.accepted.Add(1)
					l.Kick()
				}
				return nil
			})
		}()
	}
	wg.Wait()
	return nil
}

// Totals sums the couriers' counters.
func (f *Fleet) Totals() Totals {
	t := Totals{Couriers: len(f.links), Accepted: f.accepted.Load()}
	for i, l := range f.links {
		s := l.Stats()
		if s.Connected {
			t.Connected++
		}
		t.Published += s.FixesSent
		t.Acknowledged += s.FixesAcked
		t.Messages += s.Messages
		t.WireBytes += s.WireBytes
		t.Depth += f.boxes[i].Depth()
	}
	return t
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
