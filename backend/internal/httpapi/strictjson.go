package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// maxJSONDepth bounds nesting (arrays and objects) in request bodies.
const maxJSONDepth = 32

// strictJSON checks that body is exactly one JSON value with nothing but
// white space after it and no object holding the same key twice
// (encoding/json keeps the last one silently; two parsers of one body must
// not disagree about what it says).
func strictJSON(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := walkJSON(dec, 0); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("data after the JSON value")
	}
	return nil
}

func walkJSON(dec *json.Decoder, depth int) error {
	tok, err := dec.Token()
	if errors.Is(err, io.EOF) {
		return errors.New("empty body")
	}
	if err != nil {
		return errors.New(jsonErr(err))
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return nil
	}
	if depth >= maxJSONDepth {
		return fmt.Errorf("nested deeper than %d", maxJSONDepth)
	}
	switch d {
	case '{':
		seen := map[string]struct{}{}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return errors.New(jsonErr(err))
			}
			k, _ := kt.(string)
			// encoding/json matches field names without regard to case.
			k = strings.ToLower(k)
			if _, dup := seen[k]; dup {
				return fmt.Errorf("duplicate key %q", truncate(k, 40))
			}
			seen[k] = struct{}{}
			if err := walkJSON(dec, depth+1); err != nil {
				return err
			}
		}
	case '[':
		for dec.More() {
			if err := walkJSON(dec, depth+1); err != nil {
				return err
			}
		}
	default:
		return errors.New("malformed")
	}
	if _, err := dec.Token(); err != nil { // the closing delimiter
		return errors.New(jsonErr(err))
	}
	return nil
}

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) > n {
		return string(r[:n]) + "…"
	}
	return s
}
