// Package metrics holds the backend's Prometheus collectors, registered on a
// registry of their own (no global state), served at /metrics.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics are the collectors the adapters update.
type Metrics struct {
	Registry *prometheus.Registry

	IngestMessages   *prometheus.CounterVec // by kind (pos, state, owntracks)
	IngestFixes      *prometheus.CounterVec // by outcome (accepted, duplicate, out_of_order)
	IngestRejections *prometheus.CounterVec // by reason
	IngestIgnored    *prometheus.CounterVec // messages accepted and set aside, by reason (OwnTracks types and topics we do not use)
	HistoryQueue     prometheus.Gauge
	HistoryWritten   prometheus.Counter
	HistoryFlushErrs prometheus.Counter
	HistoryFlushSecs prometheus.Histogram
	MQTTDenied       *prometheus.CounterVec // by what (connect, publish, subscribe, will)
	StorageAcks      prometheus.Counter     // storage acknowledgements published to devices
	StorageAckBytes  prometheus.Counter     // their PUBLISH packets, MQTT header included
	StorageAckedFix  prometheus.Counter     // fixes they covered (a re-sent fix counts again)
	HTTPRequests     *prometheus.CounterVec // by route, status class
	HTTPDuration     *prometheus.HistogramVec
	LiveCouriers     prometheus.GaugeFunc
	Dispatch         *prometheus.CounterVec // by outcome
	Webhooks         *prometheus.CounterVec // by outcome
}

// New registers the collectors. liveCouriers reports the live index size.
func New(liveCouriers func() float64) *Metrics {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &Metrics{
		Registry: r,
		IngestMessages: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tawsil_ingest_messages_total",
			Help: "MQTT messages received by topic kind."}, []string{"kind"}),
		IngestFixes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tawsil_ingest_fixes_total",
			Help: "Fixes that passed validation, by outcome."}, []string{"outcome"}),
		IngestRejections: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tawsil_ingest_rejections_total",
			Help: "Fixes or messages refused at ingest, by reason."}, []string{"reason"}),
		IngestIgnored: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tawsil_ingest_ignored_total",
			Help: "Device messages accepted but not used (OwnTracks events, waypoints, cards...), by reason."}, []string{"reason"}),
		HistoryQueue: prometheus.NewGauge(prometheus.GaugeOpts{Name: "tawsil_history_queue_fixes",
			Help: "Fixes waiting to be written to position history."}),
		HistoryWritten: prometheus.NewCounter(prometheus.CounterOpts{Name: "tawsil_history_written_total",
			Help: "Fixes written to position history."}),
		HistoryFlushErrs: prometheus.NewCounter(prometheus.CounterOpts{Name: "tawsil_history_flush_errors_total",
			Help: "Failed history flushes (retried)."}),
		HistoryFlushSecs: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tawsil_history_flush_seconds",
			Help: "Duration of one history InsertMany.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		StorageAcks: prometheus.NewCounter(prometheus.CounterOpts{Name: "tawsil_storage_acks_total",
			Help: "Storage acknowledgements published to devices (ack topic)."}),
		StorageAckBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "tawsil_storage_ack_bytes_total",
			Help: "Bytes of storage acknowledgement PUBLISH packets (MQTT 3.1.1 framing, TCP excluded)."}),
		StorageAckedFix: prometheus.NewCounter(prometheus.CounterOpts{Name: "tawsil_storage_acked_fixes_total",
			Help: "Fixes covered by storage acknowledgements."}),
		MQTTDenied: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tawsil_mqtt_denied_total",
			Help: "Broker refusals (embedded broker), by what was refused."}, []string{"what"}),
		HTTPRequests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tawsil_http_requests_total",
			Help: "HTTP requests by route and status."}, []string{"route", "status"}),
		HTTPDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "tawsil_http_request_seconds",
			Help: "HTTP request duration by route.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}, []string{"route"}),
		LiveCouriers: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tawsil_live_couriers",
			Help: "Couriers in the live index."}, liveCouriers),
		Dispatch: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tawsil_dispatch_total",
			Help: "Dispatch outcomes."}, []string{"outcome"}),
		Webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tawsil_webhook_deliveries_total",
			Help: "Webhook delivery attempts by outcome."}, []string{"outcome"}),
	}
	r.MustRegister(m.IngestMessages, m.IngestFixes, m.IngestRejections, m.IngestIgnored, m.HistoryQueue, m.HistoryWritten, m.HistoryFlushErrs,
		m.HistoryFlushSecs, m.StorageAcks, m.StorageAckBytes, m.StorageAckedFix, m.MQTTDenied, m.HTTPRequests, m.HTTPDuration, m.LiveCouriers, m.Dispatch, m.Webhooks)
	return m
}
