package app

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/gofiber/fiber/v2"
)

func TestZXYToID(t *testing.T) {
	// Vectors from the PMTiles v3 specification's reference implementations.
	tests := []struct {
		z    uint8
		x, y uint64
		want uint64
	}{
		{0, 0, 0, 0}, {1, 0, 0, 1}, {1, 0, 1, 2}, {1, 1, 1, 3}, {1, 1, 0, 4}, {2, 0, 0, 5}, {3, 0, 0, 21}, {3, 7, 0, 84},
	}
	for _, tt := range tests {
		if got := zxyToID(tt.z, tt.x, tt.y); got != tt.want {
			t.Errorf("zxyToID(%d,%d,%d) = %d, want %d", tt.z, tt.x, tt.y, got, tt.want)
		}
	}
}

// mustArchive writes a PMTiles v3 file with a gzip-compressed root
// directory holding tiles 0/0/0 and (a run of two) 1/0/0, 1/0/1.
func mustArchive(tb testing.TB) (path string, tile0, tile1 []byte) {
	tb.Helper()
	tile0, tile1 = []byte("\x89PNG-zero"), []byte("\x89PNG-one")
	var dir []byte
	put := func(v uint64) { dir = binary.AppendUvarint(dir, v) }
	put(2)                  // entries
	put(0)                  // tile id 0
	put(1)                  // tile id 1 (delta)
	put(1)                  // run 1
	put(2)                  // run 2 (ids 1 and 2 share the bytes)
	put(uint64(len(tile0))) // length
	put(uint64(len(tile1))) //
	put(1)                  // offset 0 (+1)
	put(0)                  // contiguous
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	_, _ = zw.Write(dir)
	_ = zw.Close()
	root := z.Bytes()
	h := make([]byte, 127)
	copy(h, "PMTiles")
	h[7] = 3
	le := func(i int, v uint64) { binary.LittleEndian.PutUint64(h[8+8*i:], v) }
	le(0, 127)                   // root offset
	le(1, uint64(len(root)))     // root length
	le(2, uint64(127+len(root))) // metadata offset
	le(3, 0)                     // metadata length
	le(4, uint64(127+len(root))) // leaf directories
	le(5, 0)                     //
	le(6, uint64(127+len(root))) // tile data
	le(7, uint64(len(tile0)+len(tile1)))
	h[97], h[98], h[99], h[100], h[101] = 2, 1, 2, 0, 1 // gzip dirs, tiles uncompressed, PNG, zoom 0..1
	file := append(append(append(h, root...), tile0...), tile1...)
	path = filepath.Join(tb.TempDir(), "basemap.pmtiles")
	if err := os.WriteFile(path, file, 0o600); err != nil {
		tb.Fatal(err)
	}
	return path, tile0, tile1
}

func TestPMTilesHandler(t *testing.T) {
	path, tile0, tile1 := mustArchive(t)
	h, info, err := pmtilesHandler(path, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if info.url != "/tiles/basemap/{z}/{x}/{y}.png" || info.maxZoom != 1 || info.tileType != "png" {
		t.Fatalf("info %+v", info)
	}
	app := fiber.New()
	app.Get("/tiles/:name/:z/:x/:y", h)
	app.Get("/tiles/:file", h)
	size := int64(127)
	if st, err := os.Stat(path); err == nil {
		size = st.Size()
	}
	tests := []struct {
		path, rng  string
		wantStatus int
		wantBody   []byte
	}{
		{"/tiles/basemap/0/0/0.png", "", 200, tile0},
		{"/tiles/basemap/1/0/0.png", "", 200, tile1},
		{"/tiles/basemap/1/0/1.png", "", 200, tile1}, // same run
		{"/tiles/basemap/1/1/1.png", "", 404, nil},
		{"/tiles/basemap/1/0/0.jpg", "", 404, nil},
		{"/tiles/other/0/0/0.png", "", 404, nil},
		{"/tiles/basemap/0/1/0.png", "", 404, nil},
		{"/tiles/basemap.pmtiles", "bytes=0-6", 206, []byte("PMTiles")},
		{"/tiles/basemap.pmtiles", "bytes=99999-", 416, nil},
		{"/tiles/basemap.pmtiles", "", 200, nil},
		{"/tiles/x.pmtiles", "", 404, nil},
	}
	for _, tt := range tests {
		req := httptest.NewRequest("GET", tt.path, nil)
		if tt.rng != "" {
			req.Header.Set("Range", tt.rng)
		}
		res, err := app.Test(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		if res.StatusCode != tt.wantStatus || (tt.wantBody != nil && !bytes.Equal(body, tt.wantBody)) {
			t.Errorf("GET %s (%s) = %d %q, want %d %q", tt.path, tt.rng, res.StatusCode, body, tt.wantStatus, tt.wantBody)
		}
		if tt.path == "/tiles/basemap.pmtiles" && tt.rng == "" && int64(len(body)) != size {
			t.Errorf("whole archive: %d bytes, want %d", len(body), size)
		}
	}
	if _, _, err := pmtilesHandler(filepath.Join(t.TempDir(), "missing.pmtiles"), slog.Default()); err == nil {
		t.Error("a missing archive is accepted")
	}
	bad := filepath.Join(t.TempDir(), "bad.pmtiles")
	_ = os.WriteFile(bad, bytes.Repeat([]byte("x"), 200), 0o600)
	if _, _, err := pmtilesHandler(bad, slog.Default()); err == nil {
		t.Error("a file that is not PMTiles is accepted")
	}
}
