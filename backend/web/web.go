// Package web holds the built web faces of Tawsil — the dispatcher
// console, the courier app and the customer tracking page — embedded in the
// binary. The sources are in src/ (TypeScript, bundled by esbuild with
// `npm run build`, see build.mjs); dist/ is the committed build output, so a
// clean clone builds with Go alone, and `npm run check` (run by the browser
// test) fails when dist/ does not match the sources.
package web

import (
	"embed"
	"io/fs"
)

//go:embed all:dist
var dist embed.FS

// Assets is the built front end: console.html, courier.html, track.html,
// sw.js, manifest.webmanifest and assets/.
func Assets() fs.FS {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		panic(err) // a constant path into an embedded tree
	}
	return sub
}
