// Package agent wires one courier device: a GPS source feeds the filter,
// accepted fixes go to the durable outbox, the MQTT link drains it, task and
// config messages come back, and a loopback status endpoint shows it all.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/tawsil/tawsil/agent/internal/filter"
	"github.com/tawsil/tawsil/agent/internal/link"
	"github.com/tawsil/tawsil/agent/internal/outbox"
	"github.com/tawsil/tawsil/agent/internal/profileload"
	"github.com/tawsil/tawsil/agent/internal/source"
	"github.com/tawsil/tawsil/agent/internal/status"
	"github.com/tawsil/tawsil/agent/internal/tasks"
	"github.com/tawsil/tawsil/shared/profile"
	"github.com/tawsil/tawsil/shared/topic"
	"github.com/tawsil/tawsil/shared/wire"
)

// Config is the agent's command line.
type Config struct {
	Broker          string
	Username        string
	Password        string // from TAWSIL_AGENT_PASSWORD preferably
	ClientID        string // default "dev-" + Courier, as the backend issues it
	Courier         string
	Source          string
	ProfilePath     string
	OutboxDir       string
	StatusAddr      string // loopback only; "" disables the endpoint
	TopicPrefix     string
	CAFile          string
	ExitWhenDrained bool
	Version         string
	// FlushTimeout bounds how long shutdown waits for the outbox to drain
	// before disconnecting. Zero means 2 s.
	FlushTimeout time.Duration
	// StorageAck keeps fixes until the backend confirms it stored them (the
	// ack topic), re-sending after ResendAfter what it never confirmed.
	StorageAck  bool
	ResendAfter time.Duration
	// CompactTopics publishes positions on the compact topic and takes
	// storage acknowledgements on the compact ack topic (topic.CompactCourier).
	CompactTopics bool
	Logger        *slog.Logger
}

// ErrConfig reports an unusable Config.
var ErrConfig = errors.New("invalid agent config")

// Validate checks what can be checked without I/O and fills defaults.
func (c *Config) Validate() error {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.TopicPrefix == "" {
		c.TopicPrefix = topic.DefaultPrefix
	}
	if c.ClientID == "" {
		c.ClientID = "dev-" + c.Courier
	}
	if c.FlushTimeout == 0 {
		c.FlushTimeout = 2 * time.Second
	}
	switch {
	case !topic.ValidID(c.Courier):
		return fmt.Errorf("%w: --courier %q: want 1..64 of [A-Za-z0-9_-]", ErrConfig, c.Courier)
	case c.Broker == "":
		return fmt.Errorf("%w: --broker is required", ErrConfig)
	case c.Source == "":
		return fmt.Errorf("%w: --source is required", ErrConfig)
	case c.OutboxDir == "":
		return fmt.Errorf("%w: --outbox is required", ErrConfig)
	}
	if c.StatusAddr != "" {
		if err := status.CheckLoopback(c.StatusAddr); err != nil {
			return fmt.Errorf("%w: --status-addr: %w", ErrConfig, err)
		}
	}
	return nil
}

// Agent is one running device.
type Agent struct {
	cfg    Config
	log    *slog.Logger
	loader *profileload.Loader
	src    source.Source
	filt   *filter.Filter
	box    *outbox.Outbox
	book   *tasks.Book
	link   *link.Link
	start  time.Time

	mu      sync.Mutex
	profile profile.Profile

	sourceDone  atomic.Bool
	enqueueErrs atomic.Uint64
	statusLn    net.Listener
}

// New loads the profile, opens the outbox and the source, and binds the
// status address; nothing runs before Run. Close releases what New opened
// if Run is not called.
func New(cfg Config) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	loader, err := profileload.NewLoader()
	if err != nil {
		return nil, err
	}
	prof := profile.Default()
	if cfg.ProfilePath != "" {
		if prof, err = loader.File(cfg.ProfilePath); err != nil {
			return nil, err
		}
	}
	a := &Agent{cfg: cfg, log: cfg.Logger.With("courier_id", cfg.Courier), loader: loader, profile: prof, start: time.Now()}
	a.src, err = source.Open(cfg.Source, source.Options{Logger: a.log,
		Interval: time.Duration(prof.GPS.ReadIntervalS * float64(time.Second))})
	if err != nil {
		return nil, err
	}
	a.box, err = outbox.Open(cfg.OutboxDir, prof.Outbox.MaxFixes, a.log)
	if err != nil {
		return nil, err
	}
	if moved := a.box.MovedAside(); moved != "" {
		a.log.Error("outbox was corrupt and has been moved aside; its fixes are lost", "moved_to", moved)
	}
	if a.book, err = tasks.NewBook(a.box, nil); err != nil {
		a.box.Close()
		return nil, err
	}
	a.filt = filter.New(prof)
	a.link, err = link.New(link.Config{Broker: cfg.Broker, ClientID: cfg.ClientID, Username: cfg.Username,
		Password: cfg.Password, CAFile: cfg.CAFile, Courier: cfg.Courier, Prefix: cfg.TopicPrefix,
		AgentVersion: cfg.Version, Profile: prof, Logger: cfg.Logger, StorageAck: cfg.StorageAck, ResendAfter: cfg.ResendAfter,
		Compact: cfg.CompactTopics}, a.box)
	if err != nil {
		a.box.Close()
		return nil, err
	}
	if cfg.StatusAddr != "" {
		if a.statusLn, err = status.Listen(cfg.StatusAddr); err != nil {
			a.box.Close()
			return nil, err
		}
	}
	return a, nil
}

// StatusAddr is the bound status address (useful with port 0), or "".
func (a *Agent) StatusAddr() string {
	if a.statusLn == nil {
		return ""
	}
	return a.statusLn.Addr().String()
}

// Run runs until ctx is done (or, with ExitWhenDrained, until a finite
// source has ended and the outbox is empty). On the way out it stops
// reading, gives the link FlushTimeout to empty the outbox, publishes the
// offline state and disconnects.
func (a *Agent) Run(ctx context.Context) error {
	defer a.box.Close()
	linkCtx, stopLink := context.WithCancel(context.WithoutCancel(ctx))
	defer stopLink()
	readCtx, stopReading := context.WithCancel(ctx)
	defer stopReading()

	g, gctx := errgroup.WithContext(linkCtx)
	g.Go(func() error { return a.link.Run(gctx) })
	g.Go(func() error { a.handleInbox(gctx); return nil })
	if a.statusLn != nil {
		g.Go(func() error { return status.Serve(gctx, a.statusLn, status.Handler(a), a.log) })
	}
	readErr := make(chan error, 1)
	go func() { readErr <- a.read(readCtx) }()

	var err error
	select {
	case err = <-readErr:
		if err == nil && a.src.Finite() {
			a.sourceDone.Store(true)
			a.link.Flush() // nothing more will come: no reason to hold the last fixes
			a.log.Info("source ended", "source", a.cfg.Source, "outbox_depth", a.box.Depth())
			if a.cfg.ExitWhenDrained {
				err = a.waitDrained(ctx)
			} else {
				<-ctx.Done()
			}
		}
	case <-ctx.Done():
		stopReading()
		err = <-readErr
	case <-gctx.Done():
		stopReading()
		<-readErr
		err = g.Wait()
	}
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	stopReading()
	a.flush()
	stopLink()
	if gerr := g.Wait(); err == nil {
		err = gerr
	}
	st := a.Status()
	a.log.Info("agent stopped", "epoch", st.Epoch, "last_seq", st.LastSeq, "outbox_depth", st.OutboxDepth,
		"accepted", st.Fixes.Accepted, "lost", st.OutboxLost, "damaged", st.OutboxDamaged, "published", st.Fixes.Published,
		"stored", st.FixesStored, "resent", st.FixesResent, "storage_acks", st.StorageAcks, "storage_ack_bytes", st.StorageAckBytes)
	return err
}

// read feeds the filter and the outbox from the source.
func (a *Agent) read(ctx context.Context) error {
	err := a.src.Run(ctx, func(s source.Sample) error {
		if !s.NoFix && s.Fix.Battery != wire.Unknown {
			a.link.SetBattery(s.Fix.Battery)
		}
		send, _ := a.filt.Decide(s)
		if !send {
			return nil
		}
		// The outbox absorbs a full or failing disk itself (counted as
		// lost); what is left is a closed outbox or an unencodable fix,
		// neither a reason to stop reading.
		if _, err := a.box.Enqueue(s.Fix); err != nil {
			if errors.Is(err, outbox.ErrClosed) {
				return err
			}
			if n := a.enqueueErrs.Add(1); n == 1 || n%100 == 0 {
				a.log.Error("fix not queued", "err", err, "errors", n)
			}
		}
		a.link.SetLoss(a.box.Lost(), a.box.Damaged())
		a.link.Kick()
		return nil
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("source %s: %w", a.cfg.Source, err)
	}
	return err
}

func (a *Agent) waitDrained(ctx context.Context) error {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for a.box.Depth() > 0 {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
	a.log.Info("outbox drained: exiting")
	return nil
}

// flush gives a connected link a moment to empty the outbox.
func (a *Agent) flush() {
	a.link.Flush()
	deadline := time.Now().Add(a.cfg.FlushTimeout)
	for a.box.Depth() > 0 && a.link.Connected() && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
}

func (a *Agent) handleInbox(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-a.link.Inbox():
			switch m.Kind {
			case topic.Tasks:
				a.logTask(a.book.Apply(m.Payload))
				a.link.SetTaskActive(len(a.book.View().Assignments) > 0)
			case topic.Config:
				p, err := a.loader.JSON(m.Payload)
				if err != nil {
					a.log.Warn("refused pushed profile", "err", err)
					continue
				}
				a.applyProfile(p)
			}
		}
	}
}

// logTask writes one line per task message: what was applied (the
// courier's device log is where a support engineer sees what it was told)
// and what was skipped, and why.
func (a *Agent) logTask(t wire.Task, err error) {
	attrs := []any{"seq", t.Seq, "type", t.Type}
	if t.OrderID != "" {
		attrs = append(attrs, "order_id", t.OrderID)
	}
	if t.Route != nil {
		attrs = append(attrs, "route_version", t.Route.Version, "stops", len(t.Route.Stops))
	}
	switch {
	case errors.Is(err, tasks.ErrStale), errors.Is(err, tasks.ErrOldPlan):
		a.log.Info("task skipped", append(attrs, "why", err.Error())...)
	case err != nil:
		a.log.Warn("bad task message", "err", err)
	default:
		a.log.Info("task applied", attrs...)
	}
}

func (a *Agent) applyProfile(p profile.Profile) {
	a.mu.Lock()
	a.profile = p
	a.mu.Unlock()
	a.filt.SetProfile(p)
	a.link.SetProfile(p)
	a.box.SetMax(p.Outbox.MaxFixes)
	a.log.Info("profile applied", "profile", p.Name)
}

// Status implements status.Provider.
func (a *Agent) Status() status.Report {
	fs, ls := a.filt.Stats(), a.link.Stats()
	dropped := make(map[string]uint64, len(fs.Dropped))
	for k, v := range fs.Dropped {
		dropped[string(k)] = v
	}
	a.mu.Lock()
	name := a.profile.Name
	a.mu.Unlock()
	tv := a.book.View()
	r := status.Report{Connected: ls.Connected, Courier: a.cfg.Courier, Epoch: a.box.Epoch(), LastSeq: a.box.LastSeq(), OutboxDepth: a.box.Depth(),
		OutboxDropped: a.box.Dropped(), OutboxLost: a.box.Lost(), OutboxDamaged: a.box.Damaged(),
		StorageAcks: ls.StorageAcks, StorageAckBytes: ls.AckBytes, FixesStored: ls.FixesStored, FixesResent: ls.FixesResent,
		Fixes: status.Fixes{Read: fs.Read, Accepted: fs.Accepted, Suppressed: fs.Suppressed, Published: ls.FixesSent,
			Acknowledged: ls.FixesAcked, Dropped: dropped},
		ConnBytesSent: ls.ConnSent, ConnBytesReceived: ls.ConnReceived,
		Messages: ls.Messages, BytesSent: ls.WireBytes, PayloadBytes: ls.PayloadBytes, Profile: name,
		LastTaskSeq: tv.LastTaskSeq, Source: a.cfg.Source, SourceDone: a.sourceDone.Load(),
		Skipped: a.src.Counters(), Uptime: time.Since(a.start).Round(time.Second).String()}
	if tv.Route != nil {
		r.RouteVersion = tv.Route.Version
	}
	if ls.FixesSent > 0 {
		r.BytesPerFix = float64(ls.WireBytes) / float64(ls.FixesSent)
	}
	return r
}

// Tasks implements status.Provider.
func (a *Agent) Tasks() tasks.View { return a.book.View() }
