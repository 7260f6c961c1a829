package i18n

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func mustLoad(tb testing.TB) *Catalog {
	tb.Helper()
	c, err := Load()
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func TestNegotiate(t *testing.T) {
	tests := []struct{ give, want string }{
		{"", "fr"},
		{"fr-MA,fr;q=0.9", "fr"},
		{"ar-MA,ar;q=0.9,fr;q=0.8", "ar"},
		{"en-US,en;q=0.9", "en"},
		{"de-DE,en;q=0.5,ar;q=0.7", "ar"},
		{"de-DE", "fr"},
		{"en;q=0,ar;q=0.1", "ar"},
		{"EN-gb", "en"},
		{"*", "fr"},
		{"en;q=abc,ar", "ar"},
	}
	for _, tt := range tests {
		if got := Negotiate(tt.give); got != tt.want {
			t.Errorf("Negotiate(%q) = %q, want %q", tt.give, got, tt.want)
		}
	}
}

func TestProblem(t *testing.T) {
	c := mustLoad(t)
	tests := []struct {
		lang, slug, give  string
		status            int
		wantTitle, wantDt string
	}{
		{"fr", "unauthorized", "a bearer token is required", 401, "Authentification requise", "un jeton d'accès (Bearer) est requis"},
		{"ar", "unauthorized", "a bearer token is required", 401, "المصادقة مطلوبة", "رمز الدخول (Bearer) مطلوب"},
		{"en", "unauthorized", "a bearer token is required", 401, "Unauthorized", "a bearer token is required"},
		{"fr", "bad-request", "limit must be an integer from 1 to 500", 400, "Requête invalide", "limit doit être un entier de 1 à 500"},
		{"fr", "forbidden", "role courier may not do this", 403, "Accès refusé", "le rôle courier n'a pas le droit de faire cela"},
		{"fr", "not-at-place", "courier is not at the place: 612 m away (at most 250 m)", 409, "Conflit", "le coursier n'est pas sur place : à 612 m (250 m au plus)"},
		{"fr", "conflict", "something nobody wrote down", 409, "Conflit", "La requête est en conflit avec l'état actuel ; rechargez et réessayez."},
		{"ar", "made-up-slug", "something nobody wrote down", 418, "طلب غير صالح", "فشل الطلب."},
		{"xx", "not-found", "order not found", 404, "Introuvable", "commande introuvable"},
	}
	for _, tt := range tests {
		title, detail, _ := c.Problem(tt.lang, tt.status, tt.slug, tt.give)
		if title != tt.wantTitle || detail != tt.wantDt {
			t.Errorf("Problem(%s, %d, %q) = %q, %q; want %q, %q", tt.lang, tt.status, tt.give, title, detail, tt.wantTitle, tt.wantDt)
		}
	}
}

func TestLocalesAgree(t *testing.T) {
	c := mustLoad(t)
	for _, l := range Locales {
		if c.T(l, "app.name") == "app.name" {
			t.Errorf("%s: no app.name", l)
		}
	}
	if c.Dir("ar") != "rtl" || c.Dir("fr") != "ltr" || c.Dir("en") != "ltr" {
		t.Error("directions")
	}
}

// TestEveryAPIDetailIsTranslated reads the HTTP layer's source: every
// literal detail its helpers send (badRequest("..."), notFound("order"), ...)
// must have a French and an Arabic translation, so a person never gets a
// sentence in a language they did not ask for.
func TestEveryAPIDetailIsTranslated(t *testing.T) {
	c := mustLoad(t)
	files, err := filepath.Glob("../httpapi/*.go")
	if err != nil || len(files) == 0 {
		t.Fatalf("httpapi sources: %v", err)
	}
	helpers := map[string]func(string) string{
		"badRequest": func(s string) string { return s }, "forbidden": func(s string) string { return s },
		"conflict": func(s string) string { return s }, "unauthorized": func(s string) string { return s },
		"notFound": func(s string) string { return s + " not found" },
	}
	seen := 0
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) == 0 {
				return true
			}
			if sel, ok := call.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "addMapping" && len(call.Args) == 3 {
				checkSlug(t, c, fset, call.Args[2])
				return true
			}
			id, ok := call.Fun.(*ast.Ident)
			if !ok {
				return true
			}
			if id.Name == "problem" && len(call.Args) == 3 {
				checkSlug(t, c, fset, call.Args[1])
			}
			var arg ast.Expr
			var text func(string) string
			if h, ok := helpers[id.Name]; ok {
				arg, text = call.Args[0], h
			} else if id.Name == "problem" && len(call.Args) == 3 {
				arg, text = call.Args[2], func(s string) string { return s }
			} else {
				return true
			}
			lit, ok := arg.(*ast.BasicLit)
			if !ok {
				if b, ok := arg.(*ast.BinaryExpr); ok { // "prefix: " + err
					if l, ok := b.X.(*ast.BasicLit); ok {
						outer := text
						lit, text = l, func(s string) string { return outer(s + "x") }
					}
				}
			}
			if lit == nil || lit.Kind != token.STRING {
				return true
			}
			s, err := strconv.Unquote(lit.Value)
			if err != nil {
				return true
			}
			seen++
			for _, l := range []string{"fr", "ar"} {
				if _, ok := c.Detail(l, text(s)); !ok {
					t.Errorf("%s: %q has no %s translation (add it to locales/*.json problems.details)", fset.Position(lit.Pos()), text(s), l)
				}
			}
			return true
		})
	}
	if seen < 20 {
		t.Fatalf("found only %d literal details: is the parser looking at the right files?", seen)
	}
}

// checkSlug: every problem slug has a general sentence in each locale.
func checkSlug(t *testing.T, c *Catalog, fset *token.FileSet, arg ast.Expr) {
	t.Helper()
	lit, ok := arg.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return
	}
	slug, err := strconv.Unquote(lit.Value)
	if err != nil {
		return
	}
	for _, l := range Locales {
		if _, ok := c.loc(l).f.Problems.Slugs[slug]; !ok {
			t.Errorf("%s: problem slug %q has no %s sentence (locales/%s.json problems.slugs)", fset.Position(lit.Pos()), slug, l, l)
		}
	}
}
