package main

import (
	"bytes"
	"errors"
	"flag"
	"strings"
	"testing"
)

func TestHelpPrintsUsage(t *testing.T) {
	for _, arg := range []string{"-h", "--help", "-help"} {
		var out bytes.Buffer
		err := run([]string{arg}, &out, func(string) string { return "" })
		if !errors.Is(err, flag.ErrHelp) {
			t.Fatalf("%s: err = %v, want flag.ErrHelp (usage, not a configuration error)", arg, err)
		}
		if !strings.Contains(out.String(), "Usage: backend") || !strings.Contains(out.String(), "TAWSIL_JWT_SECRET") {
			t.Fatalf("%s printed %q", arg, out.String())
		}
	}
}

func TestUnknownArgument(t *testing.T) {
	var out bytes.Buffer
	if err := run([]string{"serve"}, &out, func(string) string { return "" }); !errors.Is(err, errUsage) {
		t.Fatalf("err = %v, want a usage error", err)
	}
	if !strings.Contains(out.String(), "Usage: backend") {
		t.Fatalf("printed %q", out.String())
	}
}

func TestBadConfigListsEverySetting(t *testing.T) {
	env := map[string]string{"TAWSIL_HTTP_ADDR": "nope", "TAWSIL_STALE_AFTER": "1s", "TAWSIL_OFFER_TIMEOUT": "soon"}
	err := run(nil, &bytes.Buffer{}, func(k string) string { return env[k] })
	if err == nil {
		t.Fatal("started with a bad configuration")
	}
	for _, name := range []string{"TAWSIL_HTTP_ADDR", "TAWSIL_JWT_SECRET", "TAWSIL_STALE_AFTER", "TAWSIL_OFFER_TIMEOUT"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error does not name %s:\n%v", name, err)
		}
	}
}
