package httpapi

import (
	"bytes"
	"io/fs"
	"mime"
	"path"
	"strings"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/compress"

	"github.com/tawsil/tawsil/backend/internal/i18n"
)

// Web is what the web faces need.
type Web struct {
	// Assets is the built front end (backend/web).
	Assets fs.FS
	// Config is GET /ui/config: cities' outlines, basemap settings.
	Config []byte
	// ImgOrigins are extra origins images (map tiles) may come from.
	ImgOrigins []string
	// Tiles answers GET /tiles/... (a local PMTiles basemap); nil without one.
	Tiles fiber.Handler
}

// langCookie holds the language a person chose with the switch.
const langCookie = "tawsil_lang"

// pageLang is the chosen language (cookie), else Accept-Language, else French.
func pageLang(c *fiber.Ctx) string {
	if l := c.Cookies(langCookie); i18n.Supported(l) {
		return l
	}
	return i18n.Negotiate(c.Get(fiber.HeaderAcceptLanguage))
}

// MountWeb serves the dispatcher console (/console/), the courier app
// (/courier/), the customer tracking page (/t/{token}), their assets and
// translations. Pages get lang and dir from the person's language.
func (s *Server) MountWeb(w Web) error {
	page := func(name, titleKey string, extra func(c *fiber.Ctx)) (fiber.Handler, error) {
		raw, err := fs.ReadFile(w.Assets, name)
		if err != nil {
			return nil, err
		}
		csp := "default-src 'self'; img-src 'self' data: blob: " + strings.Join(w.ImgOrigins, " ") +
			"; style-src 'self' 'unsafe-inline'; connect-src 'self'; worker-src 'self'; manifest-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
		return func(c *fiber.Ctx) error {
			lang := pageLang(c)
			body := bytes.ReplaceAll(raw, []byte("{{lang}}"), []byte(lang))
			body = bytes.ReplaceAll(body, []byte("{{dir}}"), []byte(s.tr.Dir(lang)))
			body = bytes.ReplaceAll(body, []byte("{{title}}"), []byte(htmlEscape(s.tr.T(lang, titleKey))))
			c.Set(fiber.HeaderContentType, fiber.MIMETextHTMLCharsetUTF8)
			c.Set(fiber.HeaderContentLanguage, lang)
			c.Vary(fiber.HeaderAcceptLanguage, fiber.HeaderCookie)
			c.Set(fiber.HeaderCacheControl, "no-cache")
			c.Set(fiber.HeaderContentSecurityPolicy, csp)
			c.Set(fiber.HeaderXContentTypeOptions, "nosniff")
			c.Set(fiber.HeaderReferrerPolicy, "no-referrer")
			if extra != nil {
				extra(c)
			}
			return c.Send(body)
		}, nil
	}
	console, err := page("console.html", "console.title", nil)
	if err != nil {
		return err
	}
	courier, err := page("courier.html", "courier.title", nil)
	if err != nil {
		return err
	}
	track, err := page("track.html", "track.title", func(c *fiber.Ctx) { c.Set("X-Robots-Tag", "noindex") })
	if err != nil {
		return err
	}
	file := func(name, cache string) (fiber.Handler, error) {
		raw, err := fs.ReadFile(w.Assets, name)
		if err != nil {
			return nil, err
		}
		ct := mime.TypeByExtension(path.Ext(name))
		if strings.HasSuffix(name, ".webmanifest") {
			ct = "application/manifest+json"
		}
		return func(c *fiber.Ctx) error {
			c.Set(fiber.HeaderContentType, ct)
			c.Set(fiber.HeaderCacheControl, cache)
			c.Set(fiber.HeaderXContentTypeOptions, "nosniff")
			return c.Send(raw)
		}, nil
	}
	sw, err := file("sw.js", "no-cache")
	if err != nil {
		return err
	}
	manifest, err := file("manifest.webmanifest", "no-cache")
	if err != nil {
		return err
	}
	assets, err := fs.Sub(w.Assets, "assets")
	if err != nil {
		return err
	}
	// Compressed: the console's script is 175 kB, 50 kB gzipped; the tracking
	// page must stay light on a 3G phone.
	gz := compress.New(compress.Config{Level: compress.LevelBestSpeed})
	s.app.Get("/", func(c *fiber.Ctx) error { return c.Redirect("/console/", fiber.StatusFound) })
	s.app.Get("/console/", gz, console)
	s.app.Get("/courier/", gz, courier)
	s.app.Get("/courier/sw.js", gz, sw)
	s.app.Get("/courier/manifest.webmanifest", gz, manifest)
	s.app.Get("/t/:token", s.limit(s.opts.PublicRate), gz, track)
	s.app.Get("/assets/:file", gz, func(c *fiber.Ctx) error {
		name := c.Params("file")
		raw, err := fs.ReadFile(assets, name)
		if err != nil || strings.ContainsAny(name, "/\\") {
			return notFound("file")
		}
		c.Set(fiber.HeaderContentType, mime.TypeByExtension(path.Ext(name)))
		c.Set(fiber.HeaderCacheControl, "public, max-age=300")
		c.Set(fiber.HeaderXContentTypeOptions, "nosniff")
		return c.Send(raw)
	})
	s.app.Get("/ui/i18n/:lang", gz, func(c *fiber.Ctx) error {
		lang := strings.TrimSuffix(c.Params("lang"), ".json")
		if !i18n.Supported(lang) {
			return notFound("language")
		}
		c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSONCharsetUTF8)
		c.Set(fiber.HeaderCacheControl, "public, max-age=300")
		return c.Send(s.tr.UI(lang))
	})
	s.app.Get("/ui/config", gz, func(c *fiber.Ctx) error {
		c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSONCharsetUTF8)
		c.Set(fiber.HeaderCacheControl, "public, max-age=300")
		return c.Send(w.Config)
	})
	tiles := w.Tiles
	if tiles == nil {
		tiles = func(*fiber.Ctx) error { return notFound("basemap") }
	}
	s.app.Get("/tiles/:name/:z/:x/:y", tiles)
	s.app.Get("/tiles/:file", tiles)
	return nil
}

func htmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;").Replace(s)
}
