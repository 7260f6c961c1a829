package order

import (
	"strings"
	"testing"
)

// FuzzMaskPhone: customer phone numbers are outside input. Masking never
// panics and never shows more than the country code, one national digit
// and the last two digits.
func FuzzMaskPhone(f *testing.F) {
	for _, s := range []string{"+212612345678", "0612345678", "+1 (555) 010-9999", "", "+", "٠٦١٢٣٤٥٦٧٨", "++212"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, phone string) {
		got := MaskPhone(phone)
		digits := 0
		for _, r := range got {
			if r >= '0' && r <= '9' {
				digits++
			}
		}
		if digits > 6 {
			t.Errorf("MaskPhone(%q) = %q shows %d digits", phone, got, digits)
		}
		if strings.ContainsAny(got, "abcdefghijklmnopqrstuvwxyz") {
			t.Errorf("MaskPhone(%q) = %q keeps letters", phone, got)
		}
	})
}
