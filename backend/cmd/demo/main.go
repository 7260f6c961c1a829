// Command demo makes `make run` alive: simulated couriers that accept most
// offers, decline some, drive their planned routes at street speed, pick up,
// deliver with the handover code the demo merchant hands them and sometimes
// fail with a realistic reason, and a demo merchant that books orders
// through the day. It is a client of the backend like any other (HTTP and
// MQTT with the seed's credentials); see internal/demo.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tawsil/tawsil/backend/internal/demo"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run() error {
	var o demo.Options
	flag.StringVar(&o.API, "api", "http://127.0.0.1:8080", "backend HTTP address")
	flag.StringVar(&o.Broker, "broker", "tcp://127.0.0.1:1883", "MQTT broker")
	flag.StringVar(&o.Credentials, "credentials", "data/fleet-credentials.json", "the seed's device credentials")
	flag.IntVar(&o.ExtraCouriers, "extra-couriers", 7, "couriers to add besides the five seeded ones (needs TAWSIL_ADMIN_EMAIL/PASSWORD)")
	flag.DurationVar(&o.BookEvery, "book-every", 25*time.Second, "mean time between bookings at the busiest hours")
	flag.Float64Var(&o.Behaviour.AcceptRate, "accept", 0.85, "share of offers accepted")
	flag.Float64Var(&o.Behaviour.FailRate, "fail", 0.08, "share of deliveries that fail at the door")
	flag.Float64Var(&o.Behaviour.SpeedMPS, "speed", 8, "street speed, m/s")
	flag.DurationVar(&o.Behaviour.DoorWait, "door-wait", 150*time.Second, "time at the door before a failed attempt is reported")
	verbose := flag.Bool("v", false, "log every refused action")
	flag.Parse()
	o.Password = os.Getenv("TAWSIL_DEMO_PASSWORD")
	if o.Password == "" {
		o.Password = "tawsil-demo-2026"
	}
	o.AdminEmail, o.AdminPass = os.Getenv("TAWSIL_ADMIN_EMAIL"), os.Getenv("TAWSIL_ADMIN_PASSWORD")
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	o.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return demo.Run(ctx, o)
}
