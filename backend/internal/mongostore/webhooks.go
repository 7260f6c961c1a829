package mongostore

import (
	"context"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo/options"

	"github.com/tawsil/tawsil/backend/internal/order"
)

// Webhook is a merchant's endpoint.
type Webhook struct {
	ID         string    `bson:"_id" json:"id"`
	MerchantID string    `bson:"merchant_id" json:"-"`
	URL        string    `bson:"url" json:"url"`
	Events     []string  `bson:"events" json:"events"`
	Secret     string    `bson:"secret" json:"-"`
	CreatedAt  time.Time `bson:"created_at" json:"created_at"`
}

// InsertWebhook stores a webhook.
func (s *Store) InsertWebhook(ctx context.Context, w *Webhook) error {
	w.ID = newID()
	_, err := s.c("webhooks").InsertOne(ctx, w)
	return err
}

// Webhooks lists a merchant's webhooks.
func (s *Store) Webhooks(ctx context.Context, merchantID string) ([]Webhook, error) {
	cur, err := s.c("webhooks").Find(ctx, bson.M{"merchant_id": merchantID})
	if err != nil {
		return nil, fmt.Errorf("webhooks: %w", err)
	}
	out := []Webhook{}
	return out, cur.All(ctx, &out)
}

// Webhook finds one webhook.
func (s *Store) Webhook(ctx context.Context, id string) (Webhook, error) {
	var w Webhook
	err := s.c("webhooks").FindOne(ctx, bson.M{"_id": id}).Decode(&w)
	if notFound(err) {
		return w, order.ErrNotFound
	}
	return w, err
}

// DeleteWebhook removes a merchant's webhook.
func (s *Store) DeleteWebhook(ctx context.Context, merchantID, id string) error {
	r, err := s.c("webhooks").DeleteOne(ctx, bson.M{"_id": id, "merchant_id": merchantID})
	if err != nil {
		return err
	}
	if r.DeletedCount == 0 {
		return order.ErrNotFound
	}
	return nil
}

// WebhookDelivery is one event waiting in the outbox.
type WebhookDelivery struct {
	ID          string           `bson:"_id"`
	WebhookID   string           `bson:"webhook_id"`
	MerchantID  string           `bson:"merchant_id"`
	Event       string           `bson:"event"`
	Body        []byte           `bson:"body"`
	Attempts    int              `bson:"attempts"`
	NextAt      time.Time        `bson:"next_at"`
	DeliveredAt *time.Time       `bson:"delivered_at,omitempty"`
	GaveUp      bool             `bson:"gave_up"`
	LastError   string           `bson:"last_error,omitempty"`
	CreatedAt   time.Time        `bson:"created_at"`
	Log         []WebhookAttempt `bson:"log,omitempty"` // every attempt, oldest first
}

// WebhookAttempt is one try at sending an event.
type WebhookAttempt struct {
	At     time.Time `bson:"at" json:"at"`
	Status int       `bson:"status,omitempty" json:"status,omitempty"` // the endpoint's HTTP status (0: no answer)
	Error  string    `bson:"error,omitempty" json:"error,omitempty"`
}

// EnqueueWebhook adds an event to the outbox.
func (s *Store) EnqueueWebhook(ctx context.Context, d WebhookDelivery) error {
	_, err := s.c("webhook_outbox").InsertOne(ctx, d)
	return err
}

// DueWebhooks lists undelivered events due by now.
func (s *Store) DueWebhooks(ctx context.Context, now time.Time, limit int) ([]WebhookDelivery, error) {
	cur, err := s.c("webhook_outbox").Find(ctx, bson.M{"next_at": bson.M{"$lte": now}, "delivered_at": bson.M{"$exists": false}, "gave_up": false},
		options.Find().SetSort(bson.D{{Key: "next_at", Value: 1}}).SetLimit(int64(limit)))
	if err != nil {
		return nil, err
	}
	var out []WebhookDelivery
	return out, cur.All(ctx, &out)
}

// WebhookDelivered marks an event delivered.
func (s *Store) WebhookDelivered(ctx context.Context, id string, a WebhookAttempt) error {
	_, err := s.c("webhook_outbox").UpdateByID(ctx, id, bson.M{"$set": bson.M{"delivered_at": a.At}, "$inc": bson.M{"attempts": 1},
		"$push": bson.M{"log": a}})
	return err
}

// WebhookRetry schedules another attempt.
func (s *Store) WebhookRetry(ctx context.Context, id string, next time.Time, a WebhookAttempt) error {
	_, err := s.c("webhook_outbox").UpdateByID(ctx, id, bson.M{"$set": bson.M{"next_at": next, "last_error": a.Error}, "$inc": bson.M{"attempts": 1},
		"$push": bson.M{"log": a}})
	return err
}

// WebhookGiveUp stops retrying an event.
func (s *Store) WebhookGiveUp(ctx context.Context, id string, a WebhookAttempt) error {
	_, err := s.c("webhook_outbox").UpdateByID(ctx, id, bson.M{"$set": bson.M{"gave_up": true, "last_error": a.Error}, "$inc": bson.M{"attempts": 1},
		"$push": bson.M{"log": a}})
	return err
}

// WebhookDeliveries lists a webhook's events, newest first.
func (s *Store) WebhookDeliveries(ctx context.Context, webhookID string, limit int) ([]WebhookDelivery, error) {
	cur, err := s.c("webhook_outbox").Find(ctx, bson.M{"webhook_id": webhookID},
		options.Find().SetSort(bson.D{{Key: "created_at", Value: -1}, {Key: "_id", Value: -1}}).SetLimit(int64(limit)))
	if err != nil {
		return nil, fmt.Errorf("webhook deliveries: %w", err)
	}
	out := []WebhookDelivery{}
	return out, cur.All(ctx, &out)
}

// RedeliverWebhook sends an event of the webhook again, now (same event id:
// the receiver dedupes on it). ErrNotFound if it is not this webhook's.
func (s *Store) RedeliverWebhook(ctx context.Context, webhookID, eventID string, now time.Time) error {
	r, err := s.c("webhook_outbox").UpdateOne(ctx, bson.M{"_id": eventID, "webhook_id": webhookID},
		bson.M{"$set": bson.M{"next_at": now, "gave_up": false}, "$unset": bson.M{"delivered_at": ""}})
	if err != nil {
		return fmt.Errorf("redeliver webhook: %w", err)
	}
	if r.MatchedCount == 0 {
		return order.ErrNotFound
	}
	return nil
}
