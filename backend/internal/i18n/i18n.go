// Package i18n holds Tawsil's translations: one data file per locale
// (locales/fr.json, ar.json, en.json) with the texts of the web faces ("ui")
// and of the API's problem documents ("problems"), the choice of a locale
// from Accept-Language (French by default, for Morocco), and the
// translation of a problem's title and detail. It has no I/O beyond its
// embedded files.
package i18n

import (
	"embed"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Locales are the supported locales, the default first.
var Locales = []string{"fr", "ar", "en"}

// Default is the locale when the client names none we have.
const Default = "fr"

//go:embed locales/*.json
var files embed.FS

// file is one locale's data file.
type file struct {
	Dir      string            `json:"dir"`
	Name     string            `json:"name"`
	UI       map[string]string `json:"ui"`
	Problems struct {
		Titles  map[string]string `json:"titles"`  // by HTTP status
		Slugs   map[string]string `json:"slugs"`   // a generic detail by problem slug
		Details map[string]string `json:"details"` // English detail (or template with {}) → this locale
	} `json:"problems"`
}

type template struct {
	re   *regexp.Regexp
	tr   string
	lits int // literal characters: longer templates are more specific
}

type locale struct {
	f         file
	ui        []byte // {"lang","dir","name","ui"} for the web faces
	templates []template
}

// Catalog is every locale's texts.
type Catalog struct {
	locs map[string]*locale
}

// Load reads the embedded locale files and checks that they agree: every
// locale has the same UI keys and the same problem keys as the default.
func Load() (*Catalog, error) {
	c := &Catalog{locs: map[string]*locale{}}
	for _, l := range Locales {
		raw, err := files.ReadFile("locales/" + l + ".json")
		if err != nil {
			return nil, fmt.Errorf("i18n: %s: %w", l, err)
		}
		var f file
		if err := json.Unmarshal(raw, &f); err != nil {
			return nil, fmt.Errorf("i18n: %s.json: %w", l, err)
		}
		if f.Dir != "ltr" && f.Dir != "rtl" {
			return nil, fmt.Errorf("i18n: %s.json: dir must be ltr or rtl", l)
		}
		lc := &locale{f: f}
		if lc.ui, err = json.Marshal(map[string]any{"lang": l, "dir": f.Dir, "name": f.Name, "ui": f.UI}); err != nil {
			return nil, err
		}
		for k, v := range f.Problems.Details {
			if !strings.Contains(k, "{}") {
				continue
			}
			parts := strings.Split(k, "{}")
			for i := range parts {
				parts[i] = regexp.QuoteMeta(parts[i])
			}
			if strings.Count(v, "{}") != len(parts)-1 {
				return nil, fmt.Errorf("i18n: %s.json: detail %q: translation must keep its %d {} placeholders", l, k, len(parts)-1)
			}
			lc.templates = append(lc.templates, template{re: regexp.MustCompile("^" + strings.Join(parts, "(.+?)") + "$"), tr: v,
				lits: len(k) - 2*(len(parts)-1)})
		}
		sort.Slice(lc.templates, func(i, j int) bool { return lc.templates[i].lits > lc.templates[j].lits })
		c.locs[l] = lc
	}
	base := c.locs[Default].f
	for _, l := range Locales[1:] {
		f := c.locs[l].f
		for _, pair := range []struct {
			what string
			a, b map[string]string
		}{{"ui", base.UI, f.UI}, {"problems.titles", base.Problems.Titles, f.Problems.Titles},
			{"problems.slugs", base.Problems.Slugs, f.Problems.Slugs}, {"problems.details", base.Problems.Details, f.Problems.Details}} {
			if missing := diffKeys(pair.a, pair.b); len(missing) > 0 {
				return nil, fmt.Errorf("i18n: %s.json lacks %s keys %v", l, pair.what, missing)
			}
			if extra := diffKeys(pair.b, pair.a); len(extra) > 0 {
				return nil, fmt.Errorf("i18n: %s.json has %s keys %v that %s.json lacks", l, pair.what, extra, Default)
			}
		}
	}
	return c, nil
}

func diffKeys(a, b map[string]string) []string {
	var out []string
	for k := range a {
		if _, ok := b[k]; !ok {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// Supported reports whether l is one of Locales.
func Supported(l string) bool { return slices.Contains(Locales, l) }

// Negotiate picks a locale from an Accept-Language header: the supported
// language with the highest weight (ties: the header's order), else French.
func Negotiate(header string) string {
	best, bestQ := "", 0.0
	for _, part := range strings.Split(header, ",") {
		tag, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		q := 1.0
		if v, ok := strings.CutPrefix(strings.TrimSpace(params), "q="); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || f < 0 || f > 1 {
				continue
			}
			q = f
		}
		primary, _, _ := strings.Cut(strings.ToLower(strings.TrimSpace(tag)), "-")
		if q > bestQ && Supported(primary) {
			best, bestQ = primary, q
		}
	}
	if best == "" {
		return Default
	}
	return best
}

// Dir is "rtl" or "ltr" for a locale.
func (c *Catalog) Dir(lang string) string { return c.loc(lang).f.Dir }

// UI is a locale's texts for the web faces, as JSON.
func (c *Catalog) UI(lang string) []byte { return c.loc(lang).ui }

// T is one UI text (the key itself when missing).
func (c *Catalog) T(lang, key string) string {
	if v, ok := c.loc(lang).f.UI[key]; ok {
		return v
	}
	return key
}

// Has reports whether a locale has a UI text for key.
func (c *Catalog) Has(lang, key string) bool {
	_, ok := c.loc(lang).f.UI[key]
	return ok
}

func (c *Catalog) loc(lang string) *locale {
	if l, ok := c.locs[lang]; ok {
		return l
	}
	return c.locs[Default]
}

// Problem translates a problem document's title (by status) and detail.
// The detail, written in English where the error arises, is looked up
// exactly, then as a known sentence followed by ": more" (the rest
// translated the same way), then as a template ("{} must be RFC 3339");
// failing all three, the slug's generic
// sentence stands in, so a reader never gets a sentence in a language they
// did not ask for (exact is then false: the caller may keep the original
// aside). English keeps the original detail.
func (c *Catalog) Problem(lang string, status int, slug, detail string) (title, translated string, exact bool) {
	l := c.loc(lang)
	title = l.f.Problems.Titles[strconv.Itoa(status)]
	if title == "" {
		title = l.f.Problems.Titles[strconv.Itoa(status/100*100)]
	}
	if lang == "en" {
		return title, detail, true
	}
	if v, ok := c.Detail(lang, detail); ok {
		return title, v, true
	}
	if v, ok := l.f.Problems.Slugs[slug]; ok {
		return title, v, false
	}
	return title, l.f.Problems.Slugs["error"], false
}

// Detail translates an English problem detail; false when the catalogue
// has no translation for it.
func (c *Catalog) Detail(lang, detail string) (string, bool) {
	l := c.loc(lang)
	if v, ok := l.f.Problems.Details[detail]; ok {
		return v, true
	}
	if head, tail, ok := strings.Cut(detail, ": "); ok {
		if v, ok := l.f.Problems.Details[head]; ok {
			if t, ok := c.Detail(lang, tail); ok {
				tail = t
			}
			return v + " : " + tail, true
		}
	}
	for _, t := range l.templates {
		if m := t.re.FindStringSubmatch(detail); m != nil {
			out := t.tr
			for _, arg := range m[1:] {
				out = strings.Replace(out, "{}", arg, 1)
			}
			return out, true
		}
	}
	return "", false
}
