package mongostore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"
)

// bucketDoc is one history bucket: the fixes of one courier and epoch that
// one history flush wrote (at most bucketMax), packed (see fixpack). The
// store holds a few large documents instead of one per fix: FerretDB takes
// documents, not bytes, per second, and a fix costs about 20 bytes instead
// of a document and three index entries.
//
// Buckets are only ever inserted (and deleted whole, or rewritten by the
// retention purge, which is idempotent): no filtered update, whose
// atomicity FerretDB does not give. The _id comes from the courier, epoch
// and the fixes' sequence numbers, so a retried write of the same batch is
// refused as a duplicate and stores nothing twice. A fix written twice in
// different batches (a fix re-sent after its first write, when a
// storage acknowledgement was lost or a process stopped before it sent it)
// is stored twice and read once: every read collapses copies by (courier,
// epoch, seq), keeping the first received.
type bucketDoc struct {
	ID      string    `bson:"_id"`
	Courier string    `bson:"c"`
	Epoch   uint64    `bson:"ep"`
	S0      uint64    `bson:"s0"` // lowest seq (the base of the seq deltas)
	S1      uint64    `bson:"s1"` // highest seq
	T0      time.Time `bson:"t0"` // earliest device time (the base of the time deltas)
	T1      time.Time `bson:"t1"` // latest device time
	N       int       `bson:"n"`  // fixes
	V       int       `bson:"v"`  // fixpack version
	P       []byte    `bson:"p"`  // the fixes (fixpack)
}

const (
	bucketsColl = "position_buckets"
	oldColl     = "positions" // one document per fix: before buckets
	bucketMax   = 1000        // fixes per bucket (about 20 kB)
)

func bucketIndexes() []mongo.IndexModel {
	return []mongo.IndexModel{
		{Keys: bson.D{{Key: "c", Value: 1}, {Key: "t1", Value: 1}}},  // track, erasure
		{Keys: bson.D{{Key: "t1", Value: 1}, {Key: "t0", Value: 1}}}, // retention (EnsureTTL adds {t1} where it can)
	}
}

// newBucket packs ps (one courier and epoch, sorted by seq, at least one).
func newBucket(ps []Position) bucketDoc { return packRuns([][]Position{ps}) }

// packRuns packs the fixes of runs, one run after the other (one courier
// and epoch, in seq order, at least one fix): the bucket newBucket makes of
// them put end to end, without copying them there.
func packRuns(runs [][]Position) bucketDoc {
	runs = slices.DeleteFunc(slices.Clone(runs), func(r []Position) bool { return len(r) == 0 })
	first := &runs[0][0]
	b := bucketDoc{Courier: first.CourierID, Epoch: first.Epoch, S0: first.Seq, S1: first.Seq, T0: first.T, T1: first.T, V: fixpackVersion}
	// FNV-64a of the seqs, 8 bytes each, little-endian (hash/fnv's, inline).
	const offset64, prime64 = 14695981039346656037, 1099511628211
	h := uint64(offset64)
	for _, ps := range runs {
		b.N += len(ps)
		for i := range ps {
			b.S0, b.S1 = min(b.S0, ps[i].Seq), max(b.S1, ps[i].Seq)
			if ps[i].T.Before(b.T0) {
				b.T0 = ps[i].T
			}
			if ps[i].T.After(b.T1) {
				b.T1 = ps[i].T
			}
			s := ps[i].Seq
			for k := range 8 {
				h ^= uint64(byte(s >> (8 * k)))
				h *= prime64
			}
		}
	}
	// BSON dates keep milliseconds: so do the bounds, or a fix at t1 could
	// fall just outside its own bucket's range.
	b.T0, b.T1 = b.T0.Truncate(time.Millisecond), b.T1.Truncate(time.Millisecond)
	b.P = appendFixes(make([]byte, 0, 20*b.N), runs, b.S0, b.T0)
	b.ID = b.Courier + ":" + strconv.FormatUint(b.Epoch, 10) + ":" + strconv.FormatUint(b.S0, 10) + "-" +
		strconv.FormatUint(b.S1, 10) + ":" + strconv.FormatUint(h, 36)
	return b
}

// fixes decodes a bucket's fixes, keeping those keep accepts (nil: all).
func (b *bucketDoc) fixes(dst []Position, keep func(*Position) bool) ([]Position, error) {
	if b.V != fixpackVersion {
		return dst, fmt.Errorf("history bucket %s: unknown version %d", b.ID, b.V)
	}
	out, err := decodeFixes(dst, b.P, b.N, b.Courier, b.Epoch, b.S0, b.T0, keep)
	if err != nil {
		return dst, fmt.Errorf("history bucket %s: %w", b.ID, err)
	}
	return out, nil
}

// InsertPositions writes a batch as one bucket per courier and epoch (split
// at bucketMax fixes) with one unordered InsertMany. A bucket already stored
// (the same batch written again after an error) is skipped, not an error.
// It returns the number of fixes in the buckets it inserted.
func (s *Store) InsertPositions(ctx context.Context, ps []Position) (inserted int, err error) {
	return s.InsertPositionBatches(ctx, [][]Position{ps})
}

// InsertPositionBatches is InsertPositions of the batches' fixes together
// (a history flush: one batch per message), without first copying them
// into one slice.
func (s *Store) InsertPositionBatches(ctx context.Context, batches [][]Position) (inserted int, err error) {
	var docs []any
	var sizes []int
	var stored [][][]Position
	for _, runs := range groupRuns(batches) {
		if !increasing(runs) { // out of order, or copies of a fix: sorted and compacted, in a new slice
			runs = [][]Position{sortedBySeq(slices.Concat(runs...))}
		}
		runs = s.recent.unwritten(runs)
		if len(runs) == 0 {
			continue
		}
		stored = append(stored, runs)
		for _, chunk := range chunkRuns(runs, bucketMax) {
			b := packRuns(chunk)
			docs = append(docs, b)
			sizes = append(sizes, b.N)
		}
	}
	if len(docs) == 0 {
		return 0, nil
	}
	_, err = s.c(bucketsColl).InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
	for _, n := range sizes {
		inserted += n
	}
	if err == nil {
		s.recent.written(stored)
		return inserted, nil
	}
	var bwe mongo.BulkWriteException
	if errors.As(err, &bwe) && bwe.WriteConcernError == nil {
		for _, we := range bwe.WriteErrors {
			if we.Code != 11000 {
				return 0, fmt.Errorf("insert history buckets: %w", err)
			}
			inserted -= sizes[we.Index]
		}
		s.recent.written(stored) // a duplicate is a bucket stored before
		return inserted, nil
	}
	return 0, fmt.Errorf("insert history buckets: %w", err)
}

// groupRuns splits the batches' fixes into one group per courier and epoch,
// ordered by courier and epoch, each the group's runs of fixes as they came
// (views of the batches: a flush's fixes are not copied). A batch is one
// message: one courier, nearly always one epoch, taken whole.
func groupRuns(batches [][]Position) [][][]Position {
	index := map[recentKey]int{}
	var keys []recentKey
	var groups [][][]Position
	add := func(run []Position) {
		k := recentKey{run[0].CourierID, run[0].Epoch}
		g, ok := index[k]
		if !ok {
			g = len(groups)
			index[k] = g
			keys = append(keys, k)
			groups = append(groups, nil)
		}
		groups[g] = append(groups[g], run)
	}
	for _, ps := range batches {
		for i := 0; i < len(ps); {
			j := i + 1
			for j < len(ps) && ps[j].Epoch == ps[i].Epoch && ps[j].CourierID == ps[i].CourierID {
				j++
			}
			add(ps[i:j:j])
			i = j
		}
	}
	order := make([]int, len(groups))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		return cmp.Or(cmp.Compare(keys[a].courier, keys[b].courier), cmp.Compare(keys[a].epoch, keys[b].epoch))
	})
	out := make([][][]Position, len(groups))
	for i, g := range order {
		out[i] = groups[g]
	}
	return out
}

// increasing reports whether the runs' fixes, end to end, have strictly
// increasing seqs: in order, no fix twice (what sortedBySeq would leave as
// it is).
func increasing(runs [][]Position) bool {
	first, prev := true, uint64(0)
	for _, ps := range runs {
		for i := range ps {
			if !first && ps[i].Seq <= prev {
				return false
			}
			first, prev = false, ps[i].Seq
		}
	}
	return true
}

// chunkRuns cuts runs into chunks of at most max fixes, in order.
func chunkRuns(runs [][]Position, max int) [][][]Position {
	var out [][][]Position
	var cur [][]Position
	n := 0
	for _, run := range runs {
		for len(run) > 0 {
			take := min(len(run), max-n)
			cur = append(cur, run[:take:take])
			run, n = run[take:], n+take
			if n == max {
				out, cur, n = append(out, cur), nil, 0
			}
		}
	}
	if n > 0 {
		out = append(out, cur)
	}
	return out
}

// sortedBySeq sorts one courier and epoch's fixes by seq (stable: the first
// received of a fix's copies stays first) and drops the copies.
func sortedBySeq(g []Position) []Position {
	bySeq := func(a, b Position) int { return cmp.Compare(a.Seq, b.Seq) }
	if !slices.IsSortedFunc(g, bySeq) {
		slices.SortStableFunc(g, bySeq)
	}
	return slices.CompactFunc(g, func(a, b Position) bool { return a.Seq == b.Seq })
}

// recentWrites remembers, per courier and epoch, the runs of sequence
// numbers this process stored lately, so that a fix re-sent after it was
// stored (its storage acknowledgement lost, a redelivery) is not written
// again. It is only an economy: what another process stored is unknown here,
// and reads collapse copies anyway.
type recentWrites struct {
	mu sync.Mutex
	m  map[recentKey][]seqRun
}

type recentKey struct {
	courier string
	epoch   uint64
}

type seqRun struct{ from, to uint64 }

const (
	recentRuns = 8       // per courier and epoch, the latest
	recentKeys = 200_000 // past this many keys the memory starts again
)

// unwritten returns the runs of one group (one courier and epoch, in seq
// order end to end) without the fixes known to be stored: runs itself when
// there are none, else the rest in a new slice.
func (r *recentWrites) unwritten(runs [][]Position) [][]Position {
	lo, hi, n := uint64(0), uint64(0), 0
	for _, ps := range runs {
		if len(ps) > 0 {
			if n == 0 {
				lo = ps[0].Seq
			}
			hi = ps[len(ps)-1].Seq
			n += len(ps)
		}
	}
	if n == 0 {
		return nil
	}
	first := runs[0][0]
	r.mu.Lock()
	known := r.m[recentKey{first.CourierID, first.Epoch}]
	r.mu.Unlock()
	if !slices.ContainsFunc(known, func(run seqRun) bool { return run.from <= hi && run.to >= lo }) {
		return runs
	}
	rest := slices.DeleteFunc(slices.Concat(runs...), func(p Position) bool {
		return slices.ContainsFunc(known, func(run seqRun) bool { return p.Seq >= run.from && p.Seq <= run.to })
	})
	if len(rest) == 0 {
		return nil
	}
	return [][]Position{rest}
}

// written records groups (each one courier and epoch's runs, in seq order
// end to end) as stored.
func (r *recentWrites) written(groups [][][]Position) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil || len(r.m) > recentKeys {
		r.m = map[recentKey][]seqRun{}
	}
	for _, runs := range groups {
		var k recentKey
		cur, open := seqRun{}, false
		for _, ps := range runs {
			for i := range ps {
				switch {
				case !open:
					k, cur, open = recentKey{ps[i].CourierID, ps[i].Epoch}, seqRun{ps[i].Seq, ps[i].Seq}, true
				case ps[i].Seq == cur.to+1:
					cur.to = ps[i].Seq
				default:
					r.m[k] = addRun(r.m[k], cur)
					cur = seqRun{ps[i].Seq, ps[i].Seq}
				}
			}
		}
		if open {
			r.m[k] = addRun(r.m[k], cur)
		}
	}
}

// addRun merges run into runs (sorted, disjoint, not adjacent) and keeps
// the highest recentRuns.
func addRun(runs []seqRun, run seqRun) []seqRun {
	out := make([]seqRun, 0, len(runs)+1)
	for _, x := range runs {
		if x.to+1 < run.from || run.to+1 < x.from {
			out = append(out, x)
			continue
		}
		run = seqRun{min(run.from, x.from), max(run.to, x.to)}
	}
	out = append(out, run)
	slices.SortFunc(out, func(a, b seqRun) int { return cmp.Compare(a.from, b.from) })
	if len(out) > recentRuns {
		out = out[len(out)-recentRuns:]
	}
	return out
}

func (r *recentWrites) forget(courier string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k := range r.m {
		if k.courier == courier {
			delete(r.m, k)
		}
	}
}

// oldShape tells whether the one-document-per-fix collection has any
// documents, rechecked at most every oldRecheck: once retention or erasure
// has emptied it (nothing writes there since buckets, except a replica of an
// older version during a rolling upgrade: hence the recheck), reads skip it,
// as FerretDB may scan it whole for a courier's query.
type oldShape struct {
	mu      sync.Mutex
	checked time.Time
	has     bool
}

const oldRecheck = time.Minute

func (o *oldShape) any(ctx context.Context, s *Store) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if now := time.Now(); o.checked.IsZero() || now.Sub(o.checked) >= oldRecheck {
		err := s.c(oldColl).FindOne(ctx, bson.M{}, options.FindOne().SetProjection(bson.M{"_id": 1})).Err()
		if err == nil || !notFound(err) {
			o.has = true // on an error, read it: better slow than incomplete
		} else {
			o.has = false
		}
		if err == nil || notFound(err) {
			o.checked = now
		}
	}
	return o.has
}

type fixKey struct {
	courier    string
	epoch, seq uint64
}

// collapse drops the copies of a fix (see bucketDoc), keeping the first
// received, and sorts newest first (device time, then seq).
func collapse(ps []Position) []Position {
	slices.SortFunc(ps, func(a, b Position) int {
		return cmp.Or(cmp.Compare(a.CourierID, b.CourierID), cmp.Compare(a.Epoch, b.Epoch), cmp.Compare(a.Seq, b.Seq),
			a.ReceivedAt.Compare(b.ReceivedAt))
	})
	ps = slices.CompactFunc(ps, func(a, b Position) bool {
		return a.CourierID == b.CourierID && a.Epoch == b.Epoch && a.Seq == b.Seq
	})
	slices.SortFunc(ps, func(a, b Position) int {
		return cmp.Or(b.T.Compare(a.T), cmp.Compare(b.Seq, a.Seq))
	})
	return ps
}

// Track returns the latest limit positions of a courier between from and to
// (device time, inclusive), oldest first, from both history shapes.
func (s *Store) Track(ctx context.Context, courierID string, from, to time.Time, limit int) ([]Position, error) {
	if limit <= 0 {
		return []Position{}, nil
	}
	// Stored times keep milliseconds (BSON dates), and so did the bounds
	// of the one-document-per-fix query.
	from, to = from.Truncate(time.Millisecond), to.Truncate(time.Millisecond)
	out := []Position{}
	if s.old.any(ctx, s) {
		cur, err := s.c(oldColl).Find(ctx,
			bson.M{"courier_id": courierID, "t": bson.M{"$gte": from, "$lte": to}},
			options.Find().SetSort(bson.D{{Key: "t", Value: -1}, {Key: "seq", Value: -1}}).SetLimit(int64(limit)))
		if err != nil {
			return nil, fmt.Errorf("track: %w", err)
		}
		if err := cur.All(ctx, &out); err != nil {
			return nil, fmt.Errorf("track: %w", err)
		}
	}
	// Buckets newest first by their latest fix; once limit fixes are held,
	// a bucket whose latest fix is older than the oldest held has nothing
	// to add, nor has any after it.
	bc, err := s.c(bucketsColl).Find(ctx,
		bson.M{"c": courierID, "t1": bson.M{"$gte": from}, "t0": bson.M{"$lte": to}},
		options.Find().SetSort(bson.D{{Key: "t1", Value: -1}}))
	if err != nil {
		return nil, fmt.Errorf("track: %w", err)
	}
	defer bc.Close(ctx)
	inRange := func(p *Position) bool { return !p.T.Before(from) && !p.T.After(to) }
	var floor time.Time // device time of the oldest fix held, once limit are held
	full := false
	for bc.Next(ctx) {
		var b bucketDoc
		if err := bc.Decode(&b); err != nil {
			return nil, fmt.Errorf("track: %w", err)
		}
		if full && b.T1.Before(floor) {
			break
		}
		if out, err = b.fixes(out, inRange); err != nil {
			return nil, fmt.Errorf("track: %w", err)
		}
		if len(out) >= 2*limit || (!full && len(out) >= limit) {
			out = collapse(out)
			if len(out) >= limit {
				out = out[:limit]
				full, floor = true, out[limit-1].T
			}
		}
	}
	if err := bc.Err(); err != nil {
		return nil, fmt.Errorf("track: %w", err)
	}
	out = collapse(out)
	out = out[:min(len(out), limit)]
	slices.Reverse(out) // oldest first
	return out, nil
}

// CountPositions counts a courier's stored fixes, every courier's when
// courierID is empty, each fix once (tests, figures: it reads them all).
func (s *Store) CountPositions(ctx context.Context, courierID string) (int64, error) {
	seen := map[fixKey]struct{}{}
	oldF, bucketF := bson.M{}, bson.M{}
	if courierID != "" {
		oldF["courier_id"], bucketF["c"] = courierID, courierID
	}
	cur, err := s.c(oldColl).Find(ctx, oldF, options.Find().SetProjection(bson.M{"courier_id": 1, "ep": 1, "seq": 1}))
	if err != nil {
		return 0, fmt.Errorf("count positions: %w", err)
	}
	for cur.Next(ctx) {
		var p Position
		if err := cur.Decode(&p); err != nil {
			_ = cur.Close(ctx)
			return 0, fmt.Errorf("count positions: %w", err)
		}
		seen[fixKey{p.CourierID, p.Epoch, p.Seq}] = struct{}{}
	}
	if err := cur.Close(ctx); err != nil {
		return 0, err
	}
	bc, err := s.c(bucketsColl).Find(ctx, bucketF)
	if err != nil {
		return 0, fmt.Errorf("count positions: %w", err)
	}
	defer bc.Close(ctx)
	var ps []Position
	for bc.Next(ctx) {
		var b bucketDoc
		if err := bc.Decode(&b); err != nil {
			return 0, fmt.Errorf("count positions: %w", err)
		}
		if ps, err = b.fixes(ps[:0], nil); err != nil {
			return 0, fmt.Errorf("count positions: %w", err)
		}
		for _, p := range ps {
			seen[fixKey{p.CourierID, p.Epoch, p.Seq}] = struct{}{}
		}
	}
	return int64(len(seen)), bc.Err()
}

// PurgePositions deletes history with device time before cutoff: old-shape
// fixes, buckets entirely before it, and the fixes before it in a bucket
// that straddles it (the bucket is rewritten with the rest under its _id; two
// replicas purging at once write the same). It returns the fixes deleted.
func (s *Store) PurgePositions(ctx context.Context, cutoff time.Time) (int64, error) {
	r, err := s.c(oldColl).DeleteMany(ctx, bson.M{"t": bson.M{"$lt": cutoff}})
	if err != nil {
		return 0, fmt.Errorf("purge positions: %w", err)
	}
	deleted := r.DeletedCount
	var counts []struct {
		N int `bson:"n"`
	}
	cur, err := s.c(bucketsColl).Find(ctx, bson.M{"t1": bson.M{"$lt": cutoff}}, options.Find().SetProjection(bson.M{"n": 1}))
	if err == nil {
		err = cur.All(ctx, &counts)
	}
	if err != nil {
		return deleted, fmt.Errorf("purge positions: %w", err)
	}
	if _, err := s.c(bucketsColl).DeleteMany(ctx, bson.M{"t1": bson.M{"$lt": cutoff}}); err != nil {
		return deleted, fmt.Errorf("purge positions: %w", err)
	}
	for _, c := range counts {
		deleted += int64(c.N)
	}
	var straddling []bucketDoc
	cur, err = s.c(bucketsColl).Find(ctx, bson.M{"t0": bson.M{"$lt": cutoff}, "t1": bson.M{"$gte": cutoff}})
	if err == nil {
		err = cur.All(ctx, &straddling)
	}
	if err != nil {
		return deleted, fmt.Errorf("purge positions: %w", err)
	}
	for _, b := range straddling {
		kept, err := b.fixes(nil, func(p *Position) bool { return !p.T.Before(cutoff) })
		if err != nil {
			return deleted, fmt.Errorf("purge positions: %w", err)
		}
		nb := newBucket(kept) // kept is in seq order, as written; never empty: t1 ≥ cutoff
		nb.ID = b.ID
		if _, err := s.c(bucketsColl).ReplaceOne(ctx, bson.M{"_id": b.ID}, nb); err != nil {
			return deleted, fmt.Errorf("purge positions: %w", err)
		}
		deleted += int64(b.N - len(kept))
	}
	return deleted, nil
}

// erasePositions deletes a courier's whole history, both shapes.
func (s *Store) erasePositions(ctx context.Context, courierID string) error {
	s.recent.forget(courierID)
	if _, err := s.c(bucketsColl).DeleteMany(ctx, bson.M{"c": courierID}); err != nil {
		return fmt.Errorf("erase positions: %w", err)
	}
	if _, err := s.c(oldColl).DeleteMany(ctx, bson.M{"courier_id": courierID}); err != nil {
		return fmt.Errorf("erase positions: %w", err)
	}
	return nil
}

// compactBelow: buckets with fewer fixes are merged by CompactPositions.
const compactBelow = 64

// CompactPositions merges a courier's small buckets (fewer than compactBelow
// fixes: a courier at one fix a second gets a bucket per history flush)
// whose fixes are all before `before`, at most limit of them: it inserts the
// merged buckets, then deletes the small ones. Readers collapse the copies
// between the two steps; a crash between them leaves copies that the next
// run merges again. Two replicas compacting at once insert the same merged
// buckets (same _id: one wins) and delete the same small ones. It returns
// the number of small buckets merged away.
func (s *Store) CompactPositions(ctx context.Context, before time.Time, limit int) (int, error) {
	cur, err := s.c(bucketsColl).Find(ctx, bson.M{"t1": bson.M{"$lt": before}, "n": bson.M{"$lt": compactBelow}},
		options.Find().SetLimit(int64(limit)))
	if err != nil {
		return 0, fmt.Errorf("compact positions: %w", err)
	}
	var small []bucketDoc
	if err := cur.All(ctx, &small); err != nil {
		return 0, fmt.Errorf("compact positions: %w", err)
	}
	slices.SortFunc(small, func(a, b bucketDoc) int {
		return cmp.Or(cmp.Compare(a.Courier, b.Courier), cmp.Compare(a.Epoch, b.Epoch), cmp.Compare(a.S0, b.S0))
	})
	merged := 0
	for i := 0; i < len(small); {
		j := i + 1
		for j < len(small) && small[j].Courier == small[i].Courier && small[j].Epoch == small[i].Epoch {
			j++
		}
		if j-i >= 2 {
			n, err := s.merge(ctx, small[i:j])
			merged += n
			if err != nil {
				return merged, err
			}
		}
		i = j
	}
	return merged, nil
}

// merge replaces buckets of one courier and epoch by buckets of up to
// bucketMax fixes.
func (s *Store) merge(ctx context.Context, group []bucketDoc) (int, error) {
	var ps []Position
	var err error
	for i := range group {
		if ps, err = group[i].fixes(ps, nil); err != nil {
			return 0, fmt.Errorf("compact positions: %w", err)
		}
	}
	ps = collapse(ps)
	slices.SortFunc(ps, func(a, b Position) int { return cmp.Compare(a.Seq, b.Seq) })
	var docs []any
	keep := map[string]bool{} // a merged bucket that is one of the small ones (same fixes) stays
	for k := 0; k < len(ps); k += bucketMax {
		b := newBucket(ps[k:min(k+bucketMax, len(ps))])
		docs = append(docs, b)
		keep[b.ID] = true
	}
	if _, err := s.c(bucketsColl).InsertMany(ctx, docs, options.InsertMany().SetOrdered(false)); err != nil && !onlyDuplicates(err) {
		return 0, fmt.Errorf("compact positions: %w", err)
	}
	var ids []string
	for _, b := range group {
		if !keep[b.ID] {
			ids = append(ids, b.ID)
		}
	}
	if len(ids) == 0 {
		return 0, nil
	}
	if _, err := s.c(bucketsColl).DeleteMany(ctx, bson.M{"_id": bson.M{"$in": ids}}); err != nil {
		return 0, fmt.Errorf("compact positions: %w", err)
	}
	return len(ids), nil
}

// onlyDuplicates reports a bulk insert whose every error is a duplicate key.
func onlyDuplicates(err error) bool {
	var bwe mongo.BulkWriteException
	if !errors.As(err, &bwe) || bwe.WriteConcernError != nil {
		return false
	}
	for _, we := range bwe.WriteErrors {
		if we.Code != 11000 {
			return false
		}
	}
	return true
}
