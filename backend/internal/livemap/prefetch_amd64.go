package livemap

// prefetch asks the CPU to bring the cache line holding addr in, without
// reading it: not a memory access as far as Go (and the race detector) is
// concerned, and it never faults, so addr may be stale or zero. Update and
// UpdateBatch issue the loads they are about to need this way, so that
// misses on independent lines overlap instead of queueing one behind the
// other (see UpdateBatch).
//
//go:noescape
func prefetch(addr uintptr)

// prefetch4 is prefetch of four lines in one call.
//
//go:noescape
func prefetch4(a, b, c, d uintptr)
