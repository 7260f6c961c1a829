// Package golden holds the committed test vectors of the position wire format.
// The wire package's tests check its codec against them, and the agent's and
// backend's tests decode the same bytes, so both sides agree on the contract.
package golden

import (
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/tawsil/tawsil/shared/wire"
)

//go:embed testdata
var files embed.FS

// Vector is one payload and the fixes it encodes.
type Vector struct {
	Name    string
	File    string // under testdata/
	Version byte   // the payload version (wire.EncodeBatchVersion)
	Payload []byte
	Fixes   []wire.Fix
}

type vectorFile struct {
	Name  string    `json:"name"`
	File  string    `json:"file"`
	Epoch uint64    `json:"epoch"`   // 0: a version-1 payload
	Ver   byte      `json:"version"` // 0: 1 without epoch, 2 with one
	Fixes []fixJSON `json:"fixes"`
}

type fixJSON struct {
	Seq      uint64  `json:"seq"`
	TimeMS   int64   `json:"t_ms"`
	Lat      float64 `json:"lat"`
	Lng      float64 `json:"lng"`
	Accuracy float64 `json:"accuracy_m"`
	Speed    float64 `json:"speed_mps"`
	Heading  float64 `json:"heading_deg"`
	Battery  int     `json:"battery"`
}

// Vectors returns the committed position vectors.
func Vectors() ([]Vector, error) {
	raw, err := files.ReadFile("testdata/vectors.json")
	if err != nil {
		return nil, err
	}
	var vfs []vectorFile
	if err := json.Unmarshal(raw, &vfs); err != nil {
		return nil, fmt.Errorf("vectors.json: %w", err)
	}
	out := make([]Vector, 0, len(vfs))
	for _, vf := range vfs {
		p, err := files.ReadFile("testdata/" + vf.File)
		if err != nil {
			return nil, err
		}
		v := Vector{Name: vf.Name, File: vf.File, Version: vf.Ver, Payload: p}
		if v.Version == 0 {
			v.Version = wire.PosVersion1
			if vf.Epoch != wire.EpochNone {
				v.Version = wire.PosVersion2
			}
		}
		for _, f := range vf.Fixes {
			v.Fixes = append(v.Fixes, wire.Fix{Epoch: vf.Epoch, Seq: f.Seq, Time: time.UnixMilli(f.TimeMS).UTC(), Lat: f.Lat, Lng: f.Lng,
				Accuracy: f.Accuracy, Speed: f.Speed, Heading: f.Heading, Battery: f.Battery})
		}
		out = append(out, v)
	}
	return out, nil
}

// OwnTracksSample is a real-shaped OwnTracks location message and the fix it
// must decode to (Seq: wire.DerivedSeq, the seconds shifted left 20 bits,
// the milliseconds (0) left 10, plus a 10-bit hash of the position).
func OwnTracksSample() ([]byte, wire.Fix, error) {
	p, err := files.ReadFile("testdata/owntracks_location.json")
	if err != nil {
		return nil, wire.Fix{}, err
	}
	return p, wire.Fix{Epoch: wire.EpochOwnTracks, Seq: 1795000000<<20 | 875, Time: time.Unix(1795000000, 0).UTC(), Lat: 33.589886, Lng: -7.603869,
		Accuracy: 12, Speed: 18.0 / 3.6, Heading: 270, Battery: 83}, nil
}

// OwnTracksMessages returns one message of every OwnTracks _type, with every
// field the OwnTracks booklet documents, as the Android and iOS apps send
// them (plus location_lenient: numbers as strings and floats, as some ports
// and older app versions send them). Keys are the file names without .json.
func OwnTracksMessages() (map[string][]byte, error) {
	entries, err := files.ReadDir("testdata/owntracks")
	if err != nil {
		return nil, err
	}
	out := make(map[string][]byte, len(entries))
	for _, e := range entries {
		p, err := files.ReadFile("testdata/owntracks/" + e.Name())
		if err != nil {
			return nil, err
		}
		name, _ := strings.CutSuffix(e.Name(), ".json")
		out[name] = p
	}
	return out, nil
}

// AckVector is one storage acknowledgement payload and what it says.
type AckVector struct {
	Name    string
	Payload []byte
	Ack     wire.Ack
}

// AckVectors returns the committed storage acknowledgement vectors.
func AckVectors() []AckVector {
	mk := func(name, h string, a wire.Ack) AckVector {
		p, err := hex.DecodeString(h)
		if err != nil {
			panic(err) // a constant below is broken
		}
		return AckVector{Name: name, Payload: p, Ack: a}
	}
	return []AckVector{
		mk("one range", "01808ece1c01e80713", wire.Ack{Epoch: 60_000_000, Ranges: []wire.SeqRange{{From: 1000, To: 1019}}}),
		mk("two ranges", "01808ece1c020104050a", wire.Ack{Epoch: 60_000_000, Ranges: []wire.SeqRange{{From: 1, To: 5}, {From: 12, To: 22}}}),
		mk("owntracks-sized seq", "01010180b9938b0600", wire.Ack{Epoch: wire.EpochOwnTracks, Ranges: []wire.SeqRange{{From: 1634000000, To: 1634000000}}}),
	}
}
