//go:build tawsil_noembed

package app

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"

	"github.com/tawsil/tawsil/backend/internal/account"
	"github.com/tawsil/tawsil/backend/internal/config"
	"github.com/tawsil/tawsil/backend/internal/metrics"
	"github.com/tawsil/tawsil/backend/internal/mqttack"
)

func startDocstore(context.Context, config.Config, *slog.Logger) (string, func(), error) {
	return "", nil, errors.New("MONGODB_URI: required (this binary was built with -tags tawsil_noembed: no embedded store)")
}

func startBroker(config.Config, net.Listener, *tls.Config, *account.Service, mqttack.Handler, *slog.Logger, *metrics.Metrics) (EmbeddedBroker, error) {
	return nil, errors.New("MQTT_URL: required (this binary was built with -tags tawsil_noembed: no embedded broker)")
}
