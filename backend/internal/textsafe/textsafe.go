// Package textsafe keeps invisible characters out of stored text.
// Identifiers (emails, ids, phone numbers) are refused when they carry a
// control, format (zero-width, bidirectional override) or otherwise invisible
// character: an "admin\u202e@..." email would display as another account.
// Free text shown to people (names, addresses, notes) is normalised instead:
// Unicode NFC, control and format characters removed (newlines and tabs in
// multi-line text become spaces), so what is stored is what is seen.
package textsafe

import (
	"errors"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// ErrInvisible reports an identifier with an invalid, control or format character.
var ErrInvisible = errors.New("contains control, format or invalid characters")

// invisible reports runes that change how text reads without being seen:
// C0/C1 controls (Cc), format characters (Cf: zero-width space/joiners,
// bidi embeddings, overrides and isolates, the BOM, soft hyphen), line and
// paragraph separators, and the variation/tag ranges.
func invisible(r rune) bool {
	switch {
	case unicode.Is(unicode.Cc, r), unicode.Is(unicode.Cf, r):
		return true
	case r == '\u2028' || r == '\u2029': // line and paragraph separators (Zl, Zp)
		return true
	case r >= 0xFE00 && r <= 0xFE0F, r >= 0xE0100 && r <= 0xE01EF: // variation selectors
		return true
	case r >= 0xE0000 && r <= 0xE007F: // tags
		return true
	case r == utf8.RuneError:
		return true
	}
	return false
}

// Identifier returns ErrInvisible when s is not valid UTF-8 or holds any
// invisible character.
func Identifier(s string) error {
	if !utf8.ValidString(s) {
		return ErrInvisible
	}
	for _, r := range s {
		if invisible(r) {
			return ErrInvisible
		}
	}
	return nil
}

// Name normalises human text: invalid bytes and invisible characters
// removed (whitespace controls become a space), runs of spaces collapsed,
// the result in NFC and trimmed.
func Name(s string) string {
	s = strings.ToValidUTF8(s, "")
	var b strings.Builder
	b.Grow(len(s))
	space := false
	for _, r := range s {
		switch {
		case r == '\t' || r == '\n' || r == '\r' || r == '\u2028' || r == '\u2029' || unicode.IsSpace(r):
			if !space && b.Len() > 0 {
				b.WriteByte(' ')
			}
			space = true
			continue
		case invisible(r):
			continue
		}
		b.WriteRune(r)
		space = false
	}
	return strings.TrimSpace(norm.NFC.String(b.String()))
}
