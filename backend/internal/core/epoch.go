package core

import (
	"slices"
	"time"

	"github.com/tawsil/tawsil/backend/internal/dispatch"
	"github.com/tawsil/tawsil/backend/internal/order"
)

// DefaultMaxOffers is how many couriers an order is offered to, over all
// its epochs, before it goes to dispatchers.
const DefaultMaxOffers = 10

func (c *Core) maxOffers() int {
	if c.MaxOffers > 0 {
		return c.MaxOffers
	}
	return DefaultMaxOffers
}

// Awaiting reports whether an order waits for a dispatch epoch to place
// it: booked, with no offer out and no courier of its round left to offer,
// not waiting for its pin, not handed to dispatchers.
func Awaiting(st State) bool {
	return st.Order != nil && st.Status == order.StatusBooked && !st.Flags.NeedsDispatcher && !st.PinPending() && !roundOpen(st.Round)
}

// EpochJob is an order waiting for a courier as a dispatch epoch places
// it: under its promise; when no courier keeps it, within Config.Latest of
// its booking; and, once it has waited Config.LateAfter past its ready
// time (its booking when it has none), by whoever hands it over soonest.
func (c *Core) EpochJob(st State, now time.Time) dispatch.EpochJob {
	cfg := c.Dispatch.Config()
	j := dispatch.EpochJob{Job: dispatch.JobFor(st.Order), PlacedAt: st.BookedAt}
	if cfg.Latest > 0 {
		j.LatestBy = st.BookedAt.Add(cfg.Latest)
	}
	ready := st.ReadyAt
	if ready.IsZero() {
		ready = st.BookedAt
	}
	j.AnyTime = !now.Before(ready.Add(cfg.LateAfter))
	return j
}

// anyLeft reports whether a candidate is left that o's round has not
// offered it to.
func anyLeft(o *State, cands []dispatch.Candidate) bool {
	for i := range cands {
		if o.Round == nil || !slices.Contains(o.Round.Ranked, cands[i].CourierID) {
			return true
		}
	}
	return false
}

// Accept is a shell's last word on an epoch's choice of candidate cand
// for order o, under promiseBy (zero: none) with the courier's route
// becoming r.Plan: false tries the next candidate.
type Accept func(o *State, cand int, promiseBy time.Time, r dispatch.Ranked) bool

// EpochDecision is one order's decision in an epoch: offer it to Courier.
type EpochDecision struct {
	Order   string
	Courier string
	Commit  dispatch.Commit
}

// Decide runs one dispatch epoch at now over the orders waiting for a
// courier (those not Awaiting are left out) and the couriers that may take
// work (built by the shell with CandidateOf and Candidate): the
// dispatcher's Epoch, scoring Config.EpochCandidates couriers per order. A
// courier the order's round offered before (it declined, let the offer
// expire, or was excluded) is not chosen again; accept, when not nil, is
// the shell's own last word (a cash cap, a shift ending). It returns the
// decisions, in the order made, and the orders that found nobody though
// they may go to anyone at any time (AnyTime), or for which no courier is
// left that was not offered them already (the shell steps them with
// Unplaced: they go to dispatchers).
func (c *Core) Decide(orders []State, cands []dispatch.Candidate, now time.Time, accept Accept) (decided []EpochDecision, unplaced []string) {
	waiting := make([]*State, 0, len(orders))
	jobs := make([]dispatch.EpochJob, 0, len(orders))
	for i := range orders {
		if Awaiting(orders[i]) {
			waiting = append(waiting, &orders[i])
			jobs = append(jobs, c.EpochJob(orders[i], now))
		}
	}
	if len(jobs) == 0 {
		return nil, nil
	}
	ok := func(j, ci int, promiseBy time.Time, r dispatch.Ranked) bool {
		o := waiting[j]
		if o.Round != nil && slices.Contains(o.Round.Ranked, cands[ci].CourierID) {
			return false
		}
		return accept == nil || accept(o, ci, promiseBy, r)
	}
	commits, held := c.Dispatch.EpochHeld(jobs, cands, now, c.Dispatch.Config().EpochCandidates, ok)
	done := make([]bool, len(jobs))
	for _, cm := range commits {
		done[cm.Job] = true
		decided = append(decided, EpochDecision{Order: waiting[cm.Job].ID, Courier: cands[cm.Cand].CourierID, Commit: cm})
	}
	for j, job := range jobs {
		if !done[j] && !held[j] && (job.AnyTime || !anyLeft(waiting[j], cands)) {
			unplaced = append(unplaced, waiting[j].ID)
		}
	}
	return decided, unplaced
}
