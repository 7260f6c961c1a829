package ingest

import (
	"context"
	"encoding/binary"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/tawsil/tawsil/backend/internal/metrics"
	"github.com/tawsil/tawsil/shared/topic"
	"github.com/tawsil/tawsil/shared/wire"
)

// AckPublisher sends one storage acknowledgement (QoS0, not retained).
type AckPublisher func(ctx context.Context, topic string, payload []byte) error

// Acks tells devices which of their fixes are durably handled (see
// wire.Ack), at most once per interval per courier, so the downlink cost
// per fix is bounded by one small message per interval. A lost
// acknowledgement (QoS0) costs a re-send by the device, which ingest
// deduplicates and acknowledges again.
type Acks struct {
	prefix   string
	interval time.Duration
	pub      AckPublisher
	log      *slog.Logger
	m        *metrics.Metrics
	now      func() time.Time

	mu      sync.Mutex
	pending map[ackKey]*pendingAck
	last    map[string]time.Time // courier → last acknowledgement sent
	kick    chan struct{}
}

type ackKey struct {
	courier string
	epoch   uint64
	compact bool // the fixes came on the compact topic: so does their acknowledgement
}

type pendingAck struct {
	ranges []wire.SeqRange
	fixes  int
}

// NewAcks returns an idle acknowledger; Run sends.
func NewAcks(prefix string, interval time.Duration, pub AckPublisher, log *slog.Logger, m *metrics.Metrics) *Acks {
	return &Acks{prefix: prefix, interval: interval, pub: pub, log: log, m: m, now: time.Now,
		pending: map[ackKey]*pendingAck{}, last: map[string]time.Time{}, kick: make(chan struct{}, 1)}
}

// Add records that fixes seqs (sorted) of courier's epoch are durably
// handled; compact: they came on the compact position topic, and the
// acknowledgement goes to the compact ack topic (topic.CompactCourier).
func (a *Acks) Add(courier string, compact bool, epoch uint64, seqs []uint64) {
	if a == nil || len(seqs) == 0 {
		return
	}
	a.mu.Lock()
	k := ackKey{courier, epoch, compact}
	p := a.pending[k]
	if p == nil {
		p = &pendingAck{}
		a.pending[k] = p
	}
	for i := 0; i < len(seqs); {
		j := i
		for j+1 < len(seqs) && seqs[j+1] == seqs[j]+1 {
			j++
		}
		p.ranges = wire.AddRange(p.ranges, wire.SeqRange{From: seqs[i], To: seqs[j]})
		i = j + 1
	}
	p.fixes += len(seqs)
	a.mu.Unlock()
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// Run sends due acknowledgements until ctx ends.
func (a *Acks) Run(ctx context.Context) {
	tick := time.NewTicker(max(a.interval/5, 10*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-a.kick:
		}
		a.flush(ctx)
	}
}

type ackOut struct {
	key     ackKey
	payload []byte
	fixes   int
}

// flush sends every acknowledgement whose courier's interval has passed.
func (a *Acks) flush(ctx context.Context) {
	now := a.now()
	var out []ackOut
	a.mu.Lock()
	for k, p := range a.pending {
		if t, ok := a.last[k.courier]; ok && now.Sub(t) < a.interval {
			continue
		}
		n := min(len(p.ranges), wire.MaxAckRanges)
		payload, err := wire.EncodeAck(nil, wire.Ack{Epoch: k.epoch, Ranges: p.ranges[:n]})
		if err != nil { // ranges built by AddRange are always valid
			a.log.Error("storage ack not encoded", "courier_id", k.courier, "err", err)
			delete(a.pending, k)
			continue
		}
		out = append(out, ackOut{key: k, payload: payload, fixes: p.fixes})
		if n == len(p.ranges) {
			delete(a.pending, k)
		} else {
			p.ranges = append([]wire.SeqRange(nil), p.ranges[n:]...)
		}
	}
	for _, o := range out {
		a.last[o.key.courier] = now
	}
	for c, t := range a.last {
		if now.Sub(t) >= a.interval {
			delete(a.last, c) // keeps the map to the couriers acknowledged lately
		}
	}
	a.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].key.courier < out[j].key.courier })
	for _, o := range out {
		t := topic.Courier(a.prefix, o.key.courier, topic.Ack)
		if o.key.compact {
			t = topic.CompactCourier(a.prefix, o.key.courier, topic.Ack)
		}
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := a.pub(pctx, t, o.payload)
		cancel()
		if err != nil {
			// The device re-sends what stays unacknowledged; no retry here.
			a.log.Debug("storage ack not published", "courier_id", o.key.courier, "err", err)
			continue
		}
		if a.m != nil {
			a.m.StorageAcks.Inc()
			a.m.StorageAckBytes.Add(float64(PublishPacketSize(t, len(o.payload), 0)))
			a.m.StorageAckedFix.Add(float64(o.fixes))
		}
	}
}

// PublishPacketSize is the size of an MQTT 3.1.1 PUBLISH packet on the wire
// (fixed header, topic, packet id when qos > 0, payload), TCP/TLS excluded.
func PublishPacketSize(topicName string, payload int, qos byte) int {
	rem := 2 + len(topicName) + payload
	if qos > 0 {
		rem += 2
	}
	return 1 + len(binary.AppendUvarint(nil, uint64(rem))) + rem
}
