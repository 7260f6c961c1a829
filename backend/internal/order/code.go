package order

import (
	"crypto/rand"
	"crypto/subtle"
	"fmt"
	"math/big"
)

// HandoverCodeLen is the number of digits in a handover code.
const HandoverCodeLen = 6

var codeSpace = big.NewInt(1_000_000)

// NewHandoverCode returns a uniformly random 6-digit code from crypto/rand.
// The customer reads it to the courier at the door.
func NewHandoverCode() (string, error) {
	n, err := rand.Int(rand.Reader, codeSpace)
	if err != nil {
		return "", fmt.Errorf("handover code: %w", err)
	}
	return fmt.Sprintf("%06d", n.Int64()), nil
}

// CheckHandoverCode reports whether given matches want, in time that does
// not depend on where they differ. An empty want never matches.
func CheckHandoverCode(want, given string) bool {
	if len(want) == 0 {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(want), []byte(given)) == 1
}

// NewTrackingToken returns an unguessable token (26 base32 characters,
// 130 bits from crypto/rand) for the public tracking link.
func NewTrackingToken() string { return rand.Text() }
