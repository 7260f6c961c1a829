// Command agent is the Tawsil courier edge agent: it reads GPS, filters it,
// keeps accepted fixes in a durable outbox and publishes them over MQTT; it
// receives tasks and profiles back. Subcommands:
//
//	agent run --broker URL --courier ID --source SRC --profile FILE --outbox DIR ...
//	agent fleet --broker URL --couriers N --city casablanca ...
//	agent validate-profile FILE
//
// The MQTT password comes from TAWSIL_AGENT_PASSWORD (preferred) or --password.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tawsil/tawsil/agent/internal/agent"
	"github.com/tawsil/tawsil/agent/internal/fleet"
	"github.com/tawsil/tawsil/agent/internal/link"
	"github.com/tawsil/tawsil/agent/internal/profileload"
	"github.com/tawsil/tawsil/shared/profile"
	"github.com/tawsil/tawsil/shared/topic"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const passwordEnv = "TAWSIL_AGENT_PASSWORD"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "agent:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: agent run|fleet|validate-profile [flags] (agent CMD -h for flags)")
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	switch args[0] {
	case "run":
		return runAgent(ctx, args[1:], log, stderr)
	case "fleet":
		return runFleet(ctx, args[1:], log, stdout, stderr)
	case "validate-profile":
		return validateProfile(args[1:], stdout)
	}
	return fmt.Errorf("unknown command %q: want run, fleet or validate-profile", args[0])
}

func runAgent(ctx context.Context, args []string, log *slog.Logger, stderr io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c agent.Config
	fs.StringVar(&c.Broker, "broker", "", "MQTT broker URL: tcp://host:1883, tls://host:8883 (also ssl://, mqtts://)")
	fs.StringVar(&c.Username, "username", "", "MQTT username of this device")
	password := fs.String("password", "", "MQTT password (prefer the "+passwordEnv+" environment variable)")
	fs.StringVar(&c.Courier, "courier", "", "courier id")
	fs.StringVar(&c.ClientID, "client-id", "", "MQTT client id (default dev-<courier>, as the backend issues it)")
	fs.StringVar(&c.Source, "source", "", "GPS source: gpsd:HOST:PORT, nmea:/dev/tty..., nmea-file:PATH[?speed=N], gpx:PATH[?speed=N], sim:CITY")
	fs.StringVar(&c.ProfilePath, "profile", "", "device profile YAML (firmware-configs/); built-in default when empty")
	fs.StringVar(&c.OutboxDir, "outbox", "", "directory of the durable outbox")
	fs.StringVar(&c.StatusAddr, "status-addr", "127.0.0.1:7070", "loopback address of the status endpoint; empty to disable")
	fs.StringVar(&c.TopicPrefix, "topic-prefix", topic.DefaultPrefix, "MQTT topic prefix")
	fs.StringVar(&c.CAFile, "ca-file", "", "PEM CA certificates for a TLS broker")
	fs.BoolVar(&c.ExitWhenDrained, "exit-when-drained", false, "exit 0 once a file source has ended and the outbox is empty")
	fs.BoolVar(&c.StorageAck, "storage-ack", true, "keep each fix until the backend confirms it stored it (ack topic); false: until the broker's PUBACK")
	fs.BoolVar(&c.CompactTopics, "compact-topics", true, "positions on "+topic.CompactCourier(topic.DefaultPrefix, "{courier}", topic.Pos)+" and acknowledgements on "+
		topic.CompactCourier(topic.DefaultPrefix, "{courier}", topic.Ack)+" (the default prefix's compact topics); false: the long topics under the prefix")
	fs.DurationVar(&c.ResendAfter, "resend-after", link.DefaultResendAfter, "with --storage-ack: send again what the broker acknowledged but the backend did not confirm within this")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c.Password = os.Getenv(passwordEnv)
	if c.Password == "" {
		c.Password = *password
	}
	c.Version = version
	c.Logger = log
	a, err := agent.New(c)
	if err != nil {
		return err
	}
	return a.Run(ctx)
}

func runFleet(ctx context.Context, args []string, log *slog.Logger, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("fleet", flag.ContinueOnError)
	fs.SetOutput(stderr)
	broker := fs.String("broker", "", "MQTT broker URL")
	n := fs.Int("couriers", 10, "number of simulated couriers (ignored with --credentials)")
	city := fs.String("city", "casablanca", "city: casablanca, rabat, tanger")
	credsFile := fs.String("credentials", "", "JSON array or JSON lines of {courier_id, mqtt_username, mqtt_password, client_id}")
	courierTmpl := fs.String("courier-template", "sim-{n}", "courier id template without --credentials")
	userTmpl := fs.String("username-template", "sim-{n}", "MQTT username template without --credentials")
	password := fs.String("password", "", "shared MQTT password without --credentials (prefer "+passwordEnv+")")
	rate := fs.Float64("rate", 0, "GPS samples per second per courier (default: the profile's read interval)")
	duration := fs.Duration("duration", 0, "stop after this long (0: until interrupted)")
	profilePath := fs.String("profile", "", "device profile YAML; built-in default when empty")
	prefix := fs.String("topic-prefix", topic.DefaultPrefix, "MQTT topic prefix")
	caFile := fs.String("ca-file", "", "PEM CA certificates for a TLS broker")
	every := fs.Duration("report-every", 10*time.Second, "print totals this often")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *broker == "" {
		return errors.New("fleet: --broker is required")
	}
	prof := profile.Default()
	if *profilePath != "" {
		loader, err := profileload.NewLoader()
		if err != nil {
			return err
		}
		if prof, err = loader.File(*profilePath); err != nil {
			return err
		}
	}
	var creds []fleet.Credential
	if *credsFile != "" {
		f, err := os.Open(*credsFile)
		if err != nil {
			return err
		}
		creds, err = fleet.ReadCredentials(f)
		f.Close()
		if err != nil {
			return err
		}
	} else {
		pw := os.Getenv(passwordEnv)
		if pw == "" {
			pw = *password
		}
		creds = fleet.Templated(*n, *courierTmpl, *userTmpl, pw)
	}
	var interval time.Duration
	if *rate > 0 {
		interval = time.Duration(float64(time.Second) / *rate)
	}
	fl, err := fleet.New(fleet.Config{Broker: *broker, CAFile: *caFile, Prefix: *prefix, City: *city, Interval: interval,
		Profile: prof, Couriers: creds, Version: version, Logger: log})
	if err != nil {
		return err
	}
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	log.Info("fleet starting", "couriers", len(creds), "city", *city, "broker", *broker)
	done := make(chan error, 1)
	go func() { done <- fl.Run(ctx) }()
	tick := time.NewTicker(*every)
	defer tick.Stop()
	enc := json.NewEncoder(stdout)
	for {
		select {
		case err := <-done:
			if encErr := enc.Encode(fl.Totals()); err == nil {
				err = encErr
			}
			return err
		case <-tick.C:
			if err := enc.Encode(fl.Totals()); err != nil {
				return err
			}
		}
	}
}

func validateProfile(args []string, stdout io.Writer) error {
	if len(args) != 1 {
		return errors.New("usage: agent validate-profile FILE")
	}
	loader, err := profileload.NewLoader()
	if err != nil {
		return err
	}
	p, err := loader.File(args[0])
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "%s: valid profile %q\n", args[0], p.Name)
	return err
}
