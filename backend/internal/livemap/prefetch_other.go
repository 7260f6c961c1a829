//go:build !amd64

package livemap

// prefetch is a hint only; other architectures go without it.
func prefetch(addr uintptr) {}

func prefetch4(a, b, c, d uintptr) {}
