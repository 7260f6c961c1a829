package delivery

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tawsil/tawsil/backend/internal/auth"
	"github.com/tawsil/tawsil/backend/internal/mongostore"
	"github.com/tawsil/tawsil/backend/internal/order"
	"github.com/tawsil/tawsil/backend/internal/textsafe"
)

// Webhook events a merchant can subscribe to.
var WebhookEvents = []string{"order.booked", "order.offered", "order.offer_declined", "order.offer_expired", "order.assigned",
	"order.unassigned", "order.reassigned", "order.picked_up", "order.delivered",
	"order.failed_attempt", "order.reattempt_scheduled", "order.returning", "order.returned", "order.cancelled",
	"order.contact_customer", "order.booked.redelivery", "cod.settlement_closed", "order.handover_locked"}

// ErrWebhook reports an invalid webhook registration.
var ErrWebhook = errors.New("invalid webhook")

// Webhooks keeps merchants' endpoints and delivers events from an outbox
// collection: at least once, signed, retried with backoff. Every replica
// runs the sender; each attempt of an event is claimed in the store, so one
// replica sends it.
//
// Signature header: Tawsil-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256
// over "<t>.<body>" with the webhook's secret>. Tawsil-Event-Id is the event
// id to dedupe on; Tawsil-Event is its type.
type Webhooks struct {
	store        *mongostore.Store
	client       *http.Client
	log          *slog.Logger
	allowPrivate bool // deliver to loopback/private addresses (tests, on-prem)
	onResult     func(outcome string)
	lookup       func(ctx context.Context, host string) ([]net.IPAddr, error) // name → addresses (hosts file, DNS)
}

// NewWebhooks returns the webhook service. allowPrivate permits http:// and
// private addresses (never on the open internet: SSRF).
func NewWebhooks(store *mongostore.Store, allowPrivate bool, log *slog.Logger, onResult func(string)) *Webhooks {
	w := &Webhooks{store: store, log: log, allowPrivate: allowPrivate, onResult: onResult, lookup: net.DefaultResolver.LookupIPAddr}
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, port, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			if w.allowPrivate {
				return dialer.DialContext(ctx, network, addr)
			}
			addrs, err := resolveWebhook(ctx, w.lookup, host)
			if err != nil {
				return nil, err
			}
			// Dial the address just checked: resolving the name again
			// would let DNS rebinding swap in a private one.
			return dialer.DialContext(ctx, network, net.JoinHostPort(addrs[0].String(), port))
		},
		MaxIdleConnsPerHost: 4,
	}
	w.client = &http.Client{Timeout: 10 * time.Second, Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return w
}

// Register validates and stores a webhook; the secret is returned once.
func (w *Webhooks) Register(ctx context.Context, merchantID, rawURL string, events []string) (mongostore.Webhook, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" || len(rawURL) > 500 || textsafe.Identifier(rawURL) != nil || (u.Scheme != "https" && !(w.allowPrivate && u.Scheme == "http")) {
		return mongostore.Webhook{}, fmt.Errorf("%w: url must be an absolute https URL", ErrWebhook)
	}
	if !w.allowPrivate {
		if err := w.checkTarget(ctx, u.Hostname()); err != nil {
			return mongostore.Webhook{}, fmt.Errorf("%w: url must name a public host", ErrWebhook)
		}
	}
	if len(events) == 0 || len(events) > len(WebhookEvents) {
		return mongostore.Webhook{}, fmt.Errorf("%w: events must list at least one of %v", ErrWebhook, WebhookEvents)
	}
	for _, e := range events {
		if !slices.Contains(WebhookEvents, e) {
			return mongostore.Webhook{}, fmt.Errorf("%w: unknown event %q; valid: %v", ErrWebhook, e, WebhookEvents)
		}
	}
	hook := mongostore.Webhook{MerchantID: merchantID, URL: u.String(), Events: slices.Compact(slices.Sorted(slices.Values(events))),
		Secret: "whsec_" + auth.RandomToken(24), CreatedAt: time.Now().UTC()}
	if err := w.store.InsertWebhook(ctx, &hook); err != nil {
		return mongostore.Webhook{}, err
	}
	return hook, nil
}

// Enqueue records an event for every matching webhook of the merchant.
func (w *Webhooks) Enqueue(ctx context.Context, merchantID, event string, payload map[string]any) {
	hooks, err := w.store.Webhooks(ctx, merchantID)
	if err != nil {
		w.log.Error("webhooks lookup", "err", err)
		return
	}
	for _, h := range hooks {
		if !slices.Contains(h.Events, event) {
			continue
		}
		if _, err := w.enqueue(ctx, h, event, payload); err != nil {
			w.log.Error("webhook enqueue", "webhook_id", h.ID, "event", event, "err", err)
		}
	}
}

func (w *Webhooks) enqueue(ctx context.Context, h mongostore.Webhook, event string, payload map[string]any) (string, error) {
	id := "evt_" + auth.RandomToken(12)
	now := time.Now().UTC()
	body, err := json.Marshal(map[string]any{"id": id, "type": event, "created_at": now, "data": payload})
	if err != nil {
		return "", err
	}
	return id, w.store.EnqueueWebhook(ctx, mongostore.WebhookDelivery{ID: id, WebhookID: h.ID, MerchantID: h.MerchantID, Event: event,
		Body: body, NextAt: now, CreatedAt: now})
}

// PingEvent is the test event a merchant sends its own endpoint.
const PingEvent = "webhook.ping"

// Ping queues a test event to one of the merchant's webhooks, delivered
// (signed, retried) like any other; it returns the event id.
func (w *Webhooks) Ping(ctx context.Context, merchantID, webhookID string) (string, error) {
	h, err := w.store.Webhook(ctx, webhookID)
	if err != nil {
		return "", err
	}
	if h.MerchantID != merchantID {
		return "", order.ErrNotFound
	}
	return w.enqueue(ctx, h, PingEvent, map[string]any{"webhook_id": h.ID, "message": "test event from Tawsil"})
}

// Deliveries lists the latest events of a merchant's webhook with their
// attempts, newest first.
func (w *Webhooks) Deliveries(ctx context.Context, merchantID, webhookID string, limit int) ([]mongostore.WebhookDelivery, error) {
	h, err := w.store.Webhook(ctx, webhookID)
	if err != nil {
		return nil, err
	}
	if h.MerchantID != merchantID {
		return nil, order.ErrNotFound
	}
	return w.store.WebhookDeliveries(ctx, webhookID, limit)
}

// Redeliver sends an event of a merchant's webhook again, now.
func (w *Webhooks) Redeliver(ctx context.Context, merchantID, webhookID, eventID string) error {
	h, err := w.store.Webhook(ctx, webhookID)
	if err != nil {
		return err
	}
	if h.MerchantID != merchantID {
		return order.ErrNotFound
	}
	w.log.Info("webhook redelivery", "webhook_id", webhookID, "event_id", eventID)
	return w.store.RedeliverWebhook(ctx, webhookID, eventID, time.Now().UTC())
}

// Run delivers due events until ctx ends.
func (w *Webhooks) Run(ctx context.Context) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.deliverDue(ctx)
		}
	}
}

func (w *Webhooks) deliverDue(ctx context.Context) {
	due, err := w.store.DueWebhooks(ctx, time.Now().UTC(), 50)
	if err != nil {
		w.log.Warn("webhook outbox", "err", err)
		return
	}
	for _, d := range due {
		// One replica sends one attempt: the attempt is claimed in the
		// store. A retry is the next attempt of the same event id.
		won, err := w.store.Claim(ctx, "webhook/"+d.ID+"#"+strconv.Itoa(d.Attempts), time.Now().UTC(), 2*time.Minute)
		if err != nil {
			w.log.Warn("webhook claim", "event_id", d.ID, "err", err)
			return
		}
		if !won {
			continue
		}
		h, err := w.store.Webhook(ctx, d.WebhookID)
		if err != nil {
			_ = w.store.WebhookGiveUp(ctx, d.ID, mongostore.WebhookAttempt{At: time.Now().UTC(), Error: "webhook deleted"})
			continue
		}
		status, err := w.send(ctx, h, d)
		a := mongostore.WebhookAttempt{At: time.Now().UTC(), Status: status}
		if err == nil {
			w.result("delivered")
			_ = w.store.WebhookDelivered(ctx, d.ID, a)
			continue
		}
		a.Error = err.Error()
		w.result("failed")
		if d.Attempts+1 >= 12 {
			w.log.Warn("webhook given up", "webhook_id", d.WebhookID, "event_id", d.ID, "event", d.Event, "status", status, "attempts", d.Attempts+1)
			_ = w.store.WebhookGiveUp(ctx, d.ID, a)
			continue
		}
		backoff := time.Duration(1<<min(d.Attempts, 10)) * 2 * time.Second // 2 s, 4 s, ... ~34 min
		w.log.Info("webhook attempt failed", "webhook_id", d.WebhookID, "event_id", d.ID, "event", d.Event, "status", status,
			"attempt", d.Attempts+1, "retry_in", backoff.String())
		_ = w.store.WebhookRetry(ctx, d.ID, time.Now().UTC().Add(backoff), a)
	}
}

func (w *Webhooks) result(outcome string) {
	if w.onResult != nil {
		w.onResult(outcome)
	}
}

// Sign returns the signature header value for body at time t.
func Sign(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts + "."))
	mac.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac.Sum(nil))
}

// send makes one attempt; status is the endpoint's answer (0 without one).
func (w *Webhooks) send(ctx context.Context, h mongostore.Webhook, d mongostore.WebhookDelivery) (status int, err error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.URL, bytes.NewReader(d.Body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Tawsil-Webhooks/1")
	req.Header.Set("Tawsil-Event-Id", d.ID)
	req.Header.Set("Tawsil-Event", d.Event)
	req.Header.Set("Tawsil-Signature", Sign(h.Secret, time.Now(), d.Body))
	res, err := w.client.Do(req)
	if err != nil {
		return 0, errors.New(sendError(err))
	}
	defer res.Body.Close()
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return res.StatusCode, fmt.Errorf("webhook answered %d", res.StatusCode)
	}
	return res.StatusCode, nil
}

// sendError names a failed attempt for the merchant without our internals.
func sendError(err error) string {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return "no answer within 10 s"
	case strings.Contains(err.Error(), "refused"):
		return "connection refused"
	case strings.Contains(err.Error(), "not allowed"), strings.Contains(err.Error(), "private"):
		return "address not allowed"
	}
	return "could not connect"
}

// checkTarget applies the delivery policy at registration: literals and
// names that resolve (hosts file, DNS) must be public. A name that does not
// resolve now is accepted; every delivery checks it again.
func (w *Webhooks) checkTarget(ctx context.Context, host string) error {
	if _, _, err := webhookHost(host); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	_, err := resolveWebhook(ctx, w.lookup, host)
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return nil
	}
	return err
}
