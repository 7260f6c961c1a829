package link

import (
	"time"

	"github.com/tawsil/tawsil/shared/wire"
)

// holder decides when live fixes leave: a message carries the fixes that
// came within the profile's publish delay (mqtt.max_publish_delay_s), so at
// 1 fix/s and 5 s one message carries five fixes and its framing, packet id
// and PUBACK are paid once for them. The delay counts from when the link
// first saw the oldest waiting fix, or from the fix's own time if that is
// earlier (a backlog is never held). A full batch, a flush or a zero delay
// publish at once.
type holder struct {
	seq  uint64    // oldest waiting fix
	seen time.Time // when the link first saw it
}

// wait returns how long to hold fixes (the waiting ones, oldest first)
// before publishing them; 0 means publish now.
func (h *holder) wait(now time.Time, fixes []wire.Fix, batchMax int, delay time.Duration, flush bool) time.Duration {
	if len(fixes) == 0 {
		return 0
	}
	if fixes[0].Seq != h.seq {
		h.seq, h.seen = fixes[0].Seq, now
	}
	if delay <= 0 || flush || len(fixes) >= batchMax {
		return 0
	}
	age := max(now.Sub(h.seen), now.Sub(fixes[0].Time))
	if age >= delay {
		return 0
	}
	return delay - age
}
