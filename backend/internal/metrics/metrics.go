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
	Dispatch         *prometheus.CounterVec // by outcome (offered, assigned, needs_dispatcher)
	OrderEvents      *prometheus.CounterVec // by event name (order.booked, order.offer_expired, ...)
	Offers           *prometheus.CounterVec // by outcome (made, accepted, declined, expired)
	Webhooks         *prometheus.CounterVec // by outcome
	ClusterRelays    *prometheus.CounterVec // messages for the other replicas, by kind (position, note) and outcome (sent, dropped, failed)
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
			Help: "Dispatch decisions by outcome: offered (an offer made), assigned (by a dispatcher), needs_dispatcher (dispatch gave up or a rule asked for a human)."}, []string{"outcome"}),
		OrderEvents: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tawsil_order_events_total",
			Help: "Order events by name, as on the stream and webhooks."}, []string{"event"}),
		Offers: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tawsil_offers_total",
			Help: "Offers to couriers by outcome: made, accepted, declined, expired."}, []string{"outcome"}),
		Webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tawsil_webhook_deliveries_total",
			Help: "Webhook delivery attempts by outcome."}, []string{"outcome"}),
	}
	m.ClusterRelays = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tawsil_cluster_relays_total",
		Help: "Messages for the other replicas (relayed HTTP positions, courier notes), by kind and outcome."}, []string{"kind", "outcome"})
	r.MustRegister(m.ClusterRelays)
	r.MustRegister(m.IngestMessages, m.IngestFixes, m.IngestRejections, m.IngestIgnored, m.HistoryQueue, m.HistoryWritten, m.HistoryFlushErrs,
		m.HistoryFlushSecs, m.StorageAcks, m.StorageAckBytes, m.StorageAckedFix, m.MQTTDenied, m.HTTPRequests, m.HTTPDuration, m.LiveCouriers, m.Dispatch, m.Webhooks, m.OrderEvents, m.Offers)
	return m
}

// Gauges read at scrape time: open orders by status, orders waiting for a
// dispatcher, dispatcher streams, MQTT sessions (nil: not registered).
type Gauges struct {
	OrdersByStatus  func() map[string]int
	NeedsDispatcher func() int
	StreamClients   func() int
	MQTTSessions    func() int
}

// RegisterGauges registers the scrape-time gauges.
func (m *Metrics) RegisterGauges(g Gauges) {
	if g.OrdersByStatus != nil {
		m.Registry.MustRegister(statusGauge{desc: prometheus.NewDesc("tawsil_orders_open",
			"Orders not yet finished (delivered, returned, cancelled), by status.", []string{"status"}, nil), read: g.OrdersByStatus})
	}
	gauge := func(name, help string, f func() int) {
		if f != nil {
			m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return float64(f()) }))
		}
	}
	gauge("tawsil_orders_needs_dispatcher", "Open orders waiting for a dispatcher's decision.", g.NeedsDispatcher)
	gauge("tawsil_stream_clients", "Dispatcher event streams connected (SSE).", g.StreamClients)
	gauge("tawsil_mqtt_sessions", "MQTT sessions the embedded broker holds (connected clients and kept persistent sessions).", g.MQTTSessions)
}

type statusGauge struct {
	desc *prometheus.Desc
	read func() map[string]int
}

func (g statusGauge) Describe(ch chan<- *prometheus.Desc) { ch <- g.desc }

func (g statusGauge) Collect(ch chan<- prometheus.Metric) {
	for status, n := range g.read() {
		ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, float64(n), status)
	}
}
