//go:build !linux

package mdrp

import "time"

// threadCPU is not measured here: zero.
func threadCPU() time.Duration { return 0 }
