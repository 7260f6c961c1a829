// Package profileload reads a device profile from YAML or JSON, checks it
// against the JSON Schema of firmware-configs/ and against profile.Validate,
// and reports the first offending field by name.
package profileload

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
	"gopkg.in/yaml.v3"

	"github.com/tawsil/tawsil/shared/profile"
)

// Schema is the JSON Schema (draft 2020-12) of a device profile. It is a copy
// of firmware-configs/profile.schema.json; a test keeps the two identical.
//
//go:embed profile.schema.json
var Schema []byte

const schemaURL = "https://tawsil.ma/schemas/device-profile.schema.json"

// maxProfileBytes bounds a profile file; real ones are well under 2 KiB.
const maxProfileBytes = 64 << 10

// ErrInvalid wraps every refusal; it is profile.ErrInvalid so callers can
// test one sentinel whatever the layer that refused.
var ErrInvalid = profile.ErrInvalid

// Loader validates profiles against the compiled schema. It is safe for
// concurrent use.
type Loader struct {
	schema *jsonschema.Schema
}

// NewLoader compiles the embedded schema.
func NewLoader() (*Loader, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(Schema))
	if err != nil {
		return nil, fmt.Errorf("profile schema: %w", err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource(schemaURL, doc); err != nil {
		return nil, fmt.Errorf("profile schema: %w", err)
	}
	sch, err := c.Compile(schemaURL)
	if err != nil {
		return nil, fmt.Errorf("profile schema: %w", err)
	}
	return &Loader{schema: sch}, nil
}

// File reads and checks a YAML (or JSON, which is YAML) profile file.
func (l *Loader) File(path string) (profile.Profile, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return profile.Profile{}, fmt.Errorf("read profile: %w", err)
	}
	p, err := l.YAML(raw)
	if err != nil {
		return p, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

// YAML checks and decodes a YAML profile document.
func (l *Loader) YAML(raw []byte) (profile.Profile, error) {
	var p profile.Profile
	if len(raw) > maxProfileBytes {
		return p, fmt.Errorf("%w: larger than %d bytes", ErrInvalid, maxProfileBytes)
	}
	var generic any
	if err := yaml.Unmarshal(raw, &generic); err != nil {
		return p, fmt.Errorf("%w: yaml: %v", ErrInvalid, err)
	}
	// The schema validator speaks JSON values: go through JSON so YAML ints,
	// floats and maps get JSON's types.
	asJSON, err := json.Marshal(generic)
	if err != nil {
		return p, fmt.Errorf("%w: yaml to json: %v", ErrInvalid, err)
	}
	if err := l.check(asJSON); err != nil {
		return p, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&p); err != nil {
		return p, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return p, p.Validate()
}

// JSON checks and decodes a JSON profile, as pushed on the config topic.
func (l *Loader) JSON(raw []byte) (profile.Profile, error) {
	if len(raw) > maxProfileBytes {
		return profile.Profile{}, fmt.Errorf("%w: larger than %d bytes", ErrInvalid, maxProfileBytes)
	}
	if err := l.check(raw); err != nil {
		return profile.Profile{}, err
	}
	return profile.DecodeJSON(raw)
}

func (l *Loader) check(asJSON []byte) error {
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(asJSON))
	if err != nil {
		return fmt.Errorf("%w: json: %v", ErrInvalid, err)
	}
	err = l.schema.Validate(inst)
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if errors.As(err, &ve) {
		return fmt.Errorf("%w: %s", ErrInvalid, describe(ve))
	}
	return fmt.Errorf("%w: %v", ErrInvalid, err)
}

// describe names the deepest failing field as a dotted path ("gps.max_speed_mps")
// followed by what is wrong with it.
func describe(ve *jsonschema.ValidationError) string {
	leaf := ve
	for len(leaf.Causes) > 0 {
		leaf = leaf.Causes[0]
	}
	field := strings.Join(leaf.InstanceLocation, ".")
	if field == "" {
		field = "(document)"
	}
	return field + ": " + leaf.ErrorKind.LocalizedString(message.NewPrinter(language.English))
}
