package mongostore

import (
	"context"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/bson"
)

// Handover-code attempts live in handover_attempts, one document per
// attempt, so that a lockout survives a restart and holds on every
// replica. An attempt is claimed (inserted) before its code is checked and
// counted with the others: concurrent guesses cannot get past the bound,
// since inserts are never lost where a counter update could be (FerretDB
// does not apply a filtered update atomically). Attempts that did not
// fail (the right code, or refused for another reason) are dropped.

// ClaimHandoverAttempt records an attempt of a courier on an order and
// returns its id and how many attempts of that courier on that order
// (this one included) are recorded.
func (s *Store) ClaimHandoverAttempt(ctx context.Context, orderID, courierID string, at time.Time) (id string, n int, err error) {
	id = newID()
	if _, err := s.c("handover_attempts").InsertOne(ctx, bson.M{"_id": id, "order_id": orderID, "courier_id": courierID, "at": at}); err != nil {
		return "", 0, fmt.Errorf("handover attempt: %w", err)
	}
	c, err := s.c("handover_attempts").CountDocuments(ctx, bson.M{"order_id": orderID, "courier_id": courierID})
	if err != nil {
		return "", 0, fmt.Errorf("handover attempts: %w", err)
	}
	return id, int(c), nil
}

// DropHandoverAttempt forgets an attempt that did not fail.
func (s *Store) DropHandoverAttempt(ctx context.Context, id string) error {
	if _, err := s.c("handover_attempts").DeleteOne(ctx, bson.M{"_id": id}); err != nil {
		return fmt.Errorf("drop handover attempt: %w", err)
	}
	return nil
}

// ResetHandover forgets the attempts on an order (a dispatcher unlocks it)
// and returns how many couriers had some.
func (s *Store) ResetHandover(ctx context.Context, orderID string) (int, error) {
	couriers, err := s.c("handover_attempts").Distinct(ctx, "courier_id", bson.M{"order_id": orderID})
	if err != nil {
		return 0, fmt.Errorf("reset handover: %w", err)
	}
	if _, err := s.c("handover_attempts").DeleteMany(ctx, bson.M{"order_id": orderID}); err != nil {
		return 0, fmt.Errorf("reset handover: %w", err)
	}
	return len(couriers), nil
}
