package httpapi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"time"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"

	"github.com/tawsil/tawsil/backend/internal/mongostore"
	"github.com/tawsil/tawsil/backend/internal/textsafe"
)

// IdemStore keeps idempotency keys and the answers given under them.
type IdemStore interface {
	ClaimIdempotencyKey(ctx context.Context, k mongostore.IdemKey) (mongostore.IdemKey, bool, error)
	IdemResponse(ctx context.Context, scope, key string) (*mongostore.StoredResponse, error)
	SaveIdemResponse(ctx context.Context, scope, key string, r mongostore.StoredResponse) error
	ReleaseIdemKey(ctx context.Context, scope, key string) error
}

// idemReplayBody is the Locals key under which a handler whose answer
// carries a secret leaves the body a replay gets instead: a secret is shown
// once, never again from the idempotency store (which would also keep it
// in the clear).
const idemReplayBody = "idem-replay-body"

// idempotent honours an Idempotency-Key header on a creating POST: the same
// key and body replay the first answer (Idempotent-Replayed: true), another
// body under the key is 422, a key whose first request is still running is
// 409. Without the header the request runs as usual. Keys are scoped to the
// caller and the request path. (POST /v1/orders has its own, stricter handling.)
func (s *Server) idempotent(c *fiber.Ctx) error {
	key := c.Get("Idempotency-Key")
	if key == "" || s.Idem == nil {
		return c.Next()
	}
	if len(key) > 128 || !utf8.ValidString(key) || textsafe.Identifier(key) != nil {
		return badRequest("Idempotency-Key must be 1 to 128 characters")
	}
	scope := principal(c).UserID + " " + c.Method() + " " + c.Path() // the path names the order acted on
	sum := sha256.Sum256(c.Body())
	hash := hex.EncodeToString(sum[:])
	ctx := c.UserContext()
	claim, existing, err := s.Idem.ClaimIdempotencyKey(ctx, mongostore.IdemKey{Scope: scope, Key: key, BodyHash: hash, At: time.Now().UTC()})
	if err != nil {
		return err
	}
	if existing {
		if claim.BodyHash != hash {
			return problem(fiber.StatusUnprocessableEntity, "idempotency-key-reused", "idempotency key reused with a different body")
		}
		r, err := s.Idem.IdemResponse(ctx, scope, key)
		if err != nil {
			return err
		}
		if r == nil {
			// Its own slug, for clients to retry on whatever language the
			// detail is in (the courier app resends its queue on it).
			c.Set(fiber.HeaderRetryAfter, "1")
			return problem(fiber.StatusConflict, "idempotency-key-in-progress", "a request with this Idempotency-Key is still being processed")
		}
		c.Set("Idempotent-Replayed", "true")
		c.Set(fiber.HeaderContentType, r.ContentType)
		return c.Status(r.Status).Send(r.Body)
	}
	if err := c.Next(); err != nil {
		// Failed requests are not remembered: the client may retry with the key.
		if rerr := s.Idem.ReleaseIdemKey(context.WithoutCancel(ctx), scope, key); rerr != nil {
			s.log.Error("idempotency key not released", "err", rerr)
		}
		return err
	}
	res := c.Response()
	if res.StatusCode() >= 500 {
		return s.Idem.ReleaseIdemKey(context.WithoutCancel(ctx), scope, key)
	}
	body := append([]byte(nil), res.Body()...)
	if b, ok := c.Locals(idemReplayBody).([]byte); ok {
		body = b // the answer carried a secret: a replay gets it without
	}
	return s.Idem.SaveIdemResponse(context.WithoutCancel(ctx), scope, key, mongostore.StoredResponse{Status: res.StatusCode(),
		ContentType: string(res.Header.ContentType()), Body: body})
}
