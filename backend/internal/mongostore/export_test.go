package mongostore

import (
	"context"
	"time"
)

// InsertOldPositions writes fixes as versions before history buckets did:
// one document each in positions (tests of the upgrade).
func (s *Store) InsertOldPositions(ctx context.Context, ps []Position) error {
	docs := make([]any, len(ps))
	for i := range ps {
		docs[i] = ps[i]
	}
	_, err := s.c(oldColl).InsertMany(ctx, docs)
	s.old.mu.Lock()
	s.old.checked = time.Time{} // tests do not wait for the recheck
	s.old.mu.Unlock()
	return err
}

// HistoryDocs counts the documents of each history shape.
func (s *Store) HistoryDocs(ctx context.Context) (old, buckets int64, err error) {
	if old, err = s.c(oldColl).CountDocuments(ctx, map[string]any{}); err != nil {
		return 0, 0, err
	}
	buckets, err = s.c(bucketsColl).CountDocuments(ctx, map[string]any{})
	return old, buckets, err
}

// Fixpack exposes the bucket codec to its tests.
func Fixpack(ps []Position) ([]Position, error) {
	b := newBucket(ps)
	return b.fixes(nil, nil)
}

// FixpackBytes is the packed size of ps.
func FixpackBytes(ps []Position) int { return len(newBucket(ps).P) }

// DecodeFixpack decodes arbitrary bytes as n fixes (robustness tests).
func DecodeFixpack(p []byte, n int) ([]Position, error) {
	b := bucketDoc{ID: "t", Courier: "c", V: fixpackVersion, N: n, P: p}
	return b.fixes(nil, nil)
}
