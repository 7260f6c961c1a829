//go:build !tawsil_noembed

package app

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"

	"github.com/tawsil/tawsil/backend/internal/account"
	"github.com/tawsil/tawsil/backend/internal/config"
	"github.com/tawsil/tawsil/backend/internal/embedded/broker"
	"github.com/tawsil/tawsil/backend/internal/embedded/docstore"
	"github.com/tawsil/tawsil/backend/internal/metrics"
	"github.com/tawsil/tawsil/backend/internal/mqttack"
)

// The embedded FerretDB and mochi broker are linked unless the binary is
// built with -tags tawsil_noembed (production images that always set
// MONGODB_URI and MQTT_URL).

var _ EmbeddedBroker = (*broker.Broker)(nil)

func startDocstore(ctx context.Context, cfg config.Config, log *slog.Logger) (uri string, closeFn func(), err error) {
	srv, err := docstore.Start(ctx, docstore.Options{Handler: cfg.FerretHandler, DataDir: cfg.DataDir, PGURL: cfg.FerretPGURL, Logger: log})
	if err != nil {
		return "", nil, err
	}
	return srv.URI(), srv.Close, nil
}

func startBroker(cfg config.Config, ln net.Listener, tlsCfg *tls.Config, auth *account.Service, h mqttack.Handler, log *slog.Logger, m *metrics.Metrics) (EmbeddedBroker, error) {
	o := broker.Options{Listen: cfg.MQTTListen, Listener: ln, TLS: tlsCfg, Prefix: cfg.TopicPrefix, Auth: auth, Handler: h,
		ServiceUsername: cfg.MQTTUsername, ServicePassword: cfg.MQTTPassword, Logger: log, Metrics: m}
	if ig, ok := h.(broker.Ignorer); ok {
		o.Ignored = ig
	}
	return broker.Start(o)
}
