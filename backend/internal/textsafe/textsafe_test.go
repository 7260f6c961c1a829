package textsafe

import (
	"errors"
	"testing"
)

func TestIdentifier(t *testing.T) {
	tests := []struct {
		give string
		ok   bool
	}{
		{"amina@example.ma", true},
		{"courier-01", true},
		{"+212612345678", true},
		{"admin\u202e@example.ma", false}, // right-to-left override
		{"admin\u200b@example.ma", false}, // zero-width space
		{"\u2066admin@example.ma", false}, // left-to-right isolate
		{"admin\u00ad@example.ma", false}, // soft hyphen
		{"admin\x00@example.ma", false},
		{"admin\x7f@example.ma", false},
		{"admin\u0085@example.ma", false}, // C1 next line
		{"ad\ufeffmin@example.ma", false}, // BOM
		{"a\xffb@example.ma", false},      // invalid UTF-8
		{"admin\u2028@example.ma", false},
		{"a\U000e0041@example.ma", false}, // tag character
	}
	for _, tt := range tests {
		err := Identifier(tt.give)
		if (err == nil) != tt.ok || (err != nil && !errors.Is(err, ErrInvisible)) {
			t.Errorf("Identifier(%q) = %v, want ok=%v", tt.give, err, tt.ok)
		}
	}
}

func TestName(t *testing.T) {
	tests := []struct{ give, want string }{
		{"Amina Alaoui", "Amina Alaoui"},
		{"  Amina \t Alaoui \n", "Amina Alaoui"},
		{"Am\u200bina", "Amina"},
		{"\u202eanimA", "animA"},
		{"Ami\u200dna\u2066 x\u2069", "Amina x"},
		{"Cafe\u0301", "Caf\u00e9"}, // NFC
		{"أمينة العلوي", "أمينة العلوي"},
		{"a\x00b\x1bc", "abc"},
		{"a\xffb", "ab"},
		{"\u200b\u200c", ""},
	}
	for _, tt := range tests {
		if got := Name(tt.give); got != tt.want {
			t.Errorf("Name(%q) = %q, want %q", tt.give, got, tt.want)
		}
	}
}
