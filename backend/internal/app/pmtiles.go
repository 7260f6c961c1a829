package app

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/gofiber/fiber/v2"
)

// A local PMTiles (v3) basemap: https://github.com/protomaps/PMTiles/blob/main/spec/v3/spec.md.
// The backend answers z/x/y tile requests from the archive (Leaflet draws
// raster tiles) and serves the archive itself with HTTP range requests for
// clients that read PMTiles directly. Reading is a few positioned reads on
// one open file; directories are cached.

type pmtilesInfo struct {
	url      string
	maxZoom  int
	tileType string
}

type pmHeader struct {
	rootOff, rootLen, leafOff, tileOff uint64
	internalComp, tileComp, tileType   byte
	minZoom, maxZoom                   byte
}

type pmEntry struct {
	tileID, offset uint64
	length, run    uint32
}

type pmtilesArchive struct {
	f    *os.File
	size int64
	h    pmHeader
	mu   sync.Mutex
	dirs map[[2]uint64][]pmEntry // (offset, length) → entries
}

var pmTileTypes = map[byte]struct{ name, ext, mime string }{
	1: {"mvt", "mvt", "application/vnd.mapbox-vector-tile"},
	2: {"png", "png", "image/png"},
	3: {"jpeg", "jpg", "image/jpeg"},
	4: {"webp", "webp", "image/webp"},
	5: {"avif", "avif", "image/avif"},
}

func openPMTiles(path string) (*pmtilesArchive, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	buf := make([]byte, 127)
	if _, err := f.ReadAt(buf, 0); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("%s: not a PMTiles archive: %w", path, err)
	}
	if string(buf[:7]) != "PMTiles" || buf[7] != 3 {
		_ = f.Close()
		return nil, fmt.Errorf("%s: not a PMTiles v3 archive", path)
	}
	u := func(i int) uint64 { return binary.LittleEndian.Uint64(buf[8+8*i:]) }
	h := pmHeader{rootOff: u(0), rootLen: u(1), leafOff: u(4), tileOff: u(6),
		internalComp: buf[97], tileComp: buf[98], tileType: buf[99], minZoom: buf[100], maxZoom: buf[101]}
	if _, ok := pmTileTypes[h.tileType]; !ok {
		_ = f.Close()
		return nil, fmt.Errorf("%s: unknown tile type %d", path, h.tileType)
	}
	if h.internalComp > 2 {
		_ = f.Close()
		return nil, fmt.Errorf("%s: directory compression %d is not supported (none or gzip)", path, h.internalComp)
	}
	a := &pmtilesArchive{f: f, size: st.Size(), h: h, dirs: map[[2]uint64][]pmEntry{}}
	if _, err := a.dir(h.rootOff, h.rootLen); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("%s: root directory: %w", path, err)
	}
	return a, nil
}

func (a *pmtilesArchive) dir(off, n uint64) ([]pmEntry, error) {
	a.mu.Lock()
	d, ok := a.dirs[[2]uint64{off, n}]
	a.mu.Unlock()
	if ok {
		return d, nil
	}
	if n > 16<<20 || int64(off+n) > a.size {
		return nil, errors.New("directory out of the file")
	}
	raw := make([]byte, n)
	if _, err := a.f.ReadAt(raw, int64(off)); err != nil {
		return nil, err
	}
	if a.h.internalComp == 2 {
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			return nil, err
		}
		if raw, err = io.ReadAll(io.LimitReader(zr, 64<<20)); err != nil {
			return nil, err
		}
	}
	d, err := decodeDirectory(raw)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	if len(a.dirs) > 4096 {
		clear(a.dirs)
	}
	a.dirs[[2]uint64{off, n}] = d
	a.mu.Unlock()
	return d, nil
}

func decodeDirectory(raw []byte) ([]pmEntry, error) {
	r := bytes.NewReader(raw)
	next := func() (uint64, error) { return binary.ReadUvarint(r) }
	n, err := next()
	if err != nil || n > 1<<22 {
		return nil, errors.New("bad directory")
	}
	es := make([]pmEntry, n)
	var last uint64
	for i := range es {
		v, err := next()
		if err != nil {
			return nil, err
		}
		last += v
		es[i].tileID = last
	}
	for i := range es {
		v, err := next()
		if err != nil {
			return nil, err
		}
		es[i].run = uint32(v)
	}
	for i := range es {
		v, err := next()
		if err != nil {
			return nil, err
		}
		es[i].length = uint32(v)
	}
	for i := range es {
		v, err := next()
		if err != nil {
			return nil, err
		}
		if v == 0 && i > 0 {
			es[i].offset = es[i-1].offset + uint64(es[i-1].length)
		} else {
			es[i].offset = v - 1
		}
	}
	return es, nil
}

// zxyToID is the tile's position on PMTiles' Hilbert curve.
func zxyToID(z uint8, x, y uint64) uint64 {
	var acc uint64
	for t := uint8(0); t < z; t++ {
		acc += (uint64(1) << t) * (uint64(1) << t)
	}
	n := uint64(1) << z
	var d uint64
	for s := n / 2; s > 0; s /= 2 {
		var rx, ry uint64
		if x&s > 0 {
			rx = 1
		}
		if y&s > 0 {
			ry = 1
		}
		d += s * s * ((3 * rx) ^ ry)
		if ry == 0 {
			if rx == 1 {
				x, y = s-1-x, s-1-y
			}
			x, y = y, x
		}
	}
	return acc + d
}

// tile returns a tile's bytes, nil when the archive has none.
func (a *pmtilesArchive) tile(z uint8, x, y uint64) ([]byte, error) {
	id := zxyToID(z, x, y)
	off, n := a.h.rootOff, a.h.rootLen
	for depth := 0; depth < 4; depth++ {
		es, err := a.dir(off, n)
		if err != nil {
			return nil, err
		}
		i := sort.Search(len(es), func(i int) bool { return es[i].tileID > id }) - 1
		if i < 0 {
			return nil, nil
		}
		e := es[i]
		if e.run == 0 { // a leaf directory
			off, n = a.h.leafOff+e.offset, uint64(e.length)
			continue
		}
		if id >= e.tileID+uint64(e.run) {
			return nil, nil
		}
		start := a.h.tileOff + e.offset
		if int64(start)+int64(e.length) > a.size {
			return nil, errors.New("tile out of the file")
		}
		b := make([]byte, e.length)
		if _, err := a.f.ReadAt(b, int64(start)); err != nil {
			return nil, err
		}
		return b, nil
	}
	return nil, errors.New("directories nested too deep")
}

// pmtilesHandler serves /tiles/basemap/{z}/{x}/{y}.{ext} and, with ranges,
// /tiles/basemap.pmtiles.
func pmtilesHandler(path string, log *slog.Logger) (fiber.Handler, pmtilesInfo, error) {
	a, err := openPMTiles(path)
	if err != nil {
		return nil, pmtilesInfo{}, err
	}
	tt := pmTileTypes[a.h.tileType]
	info := pmtilesInfo{url: "/tiles/basemap/{z}/{x}/{y}." + tt.ext, maxZoom: int(a.h.maxZoom), tileType: tt.name}
	notFound := func(c *fiber.Ctx) error { return fiber.NewError(fiber.StatusNotFound, "basemap not found") }
	h := func(c *fiber.Ctx) error {
		if file := c.Params("file"); file != "" {
			if file != "basemap.pmtiles" {
				return notFound(c)
			}
			return a.serveRange(c)
		}
		if c.Params("name") != "basemap" {
			return notFound(c)
		}
		ys, ext, _ := strings.Cut(c.Params("y"), ".")
		z, errZ := strconv.ParseUint(c.Params("z"), 10, 8)
		x, errX := strconv.ParseUint(c.Params("x"), 10, 32)
		y, errY := strconv.ParseUint(ys, 10, 32)
		if errZ != nil || errX != nil || errY != nil || ext != tt.ext || z > 30 || x >= 1<<z || y >= 1<<z {
			return notFound(c)
		}
		b, err := a.tile(uint8(z), x, y)
		if err != nil {
			log.Warn("basemap tile unreadable", "z", z, "x", x, "y", y, "err", err)
			return err
		}
		if b == nil {
			return notFound(c)
		}
		c.Set(fiber.HeaderContentType, tt.mime)
		if a.h.tileComp == 2 {
			c.Set(fiber.HeaderContentEncoding, "gzip")
		}
		c.Set(fiber.HeaderCacheControl, "public, max-age=86400")
		return c.Send(b)
	}
	return h, info, nil
}

// serveRange answers the archive itself: 206 for one "bytes=a-b" range,
// 416 for an unsatisfiable one, 200 for the whole file.
func (a *pmtilesArchive) serveRange(c *fiber.Ctx) error {
	c.Set(fiber.HeaderAcceptRanges, "bytes")
	c.Set(fiber.HeaderContentType, "application/vnd.pmtiles")
	rng := c.Get(fiber.HeaderRange)
	start, end := int64(0), a.size-1
	partial := false
	if spec, ok := strings.CutPrefix(rng, "bytes="); ok && !strings.Contains(spec, ",") {
		from, to, _ := strings.Cut(spec, "-")
		var err1, err2 error
		switch {
		case from == "": // the last N bytes
			var n int64
			n, err1 = strconv.ParseInt(to, 10, 64)
			start = a.size - n
		default:
			start, err1 = strconv.ParseInt(from, 10, 64)
			if to != "" {
				end, err2 = strconv.ParseInt(to, 10, 64)
			}
		}
		end = min(end, a.size-1)
		if err1 != nil || err2 != nil || start < 0 || start > end {
			c.Set(fiber.HeaderContentRange, fmt.Sprintf("bytes */%d", a.size))
			return c.SendStatus(fiber.StatusRequestedRangeNotSatisfiable)
		}
		partial = true
	}
	if end-start+1 > 64<<20 {
		end = start + 64<<20 - 1 // clients ask for directories and tiles, never megabytes
		partial = true
	}
	b := make([]byte, end-start+1)
	if _, err := a.f.ReadAt(b, start); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if partial {
		c.Set(fiber.HeaderContentRange, fmt.Sprintf("bytes %d-%d/%d", start, end, a.size))
		c.Status(fiber.StatusPartialContent)
	}
	return c.Send(b)
}
