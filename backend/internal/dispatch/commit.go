package dispatch

// Hold reports whether a job should wait for a later decision rather than
// go to its best-ranked candidate r now (deferred commitment): the parcel
// is not ready until more than Config.CommitLead after r would reach the
// pick-up. Committing that early ties the courier up while it waits, or
// binds the order to a courier chosen before the couriers near the ready
// time are known; waiting lets a later decision bundle it with orders of
// the same pick-up placed meanwhile and give it to whoever is best placed
// then. A job without a ready time, or a CommitLead of zero, is never held.
func (d *Dispatcher) Hold(job Job, r Ranked) bool {
	if d.cfg.CommitLead <= 0 || job.ReadyAt.IsZero() {
		return false
	}
	return job.ReadyAt.Sub(r.PickupAt) > d.cfg.CommitLead
}
