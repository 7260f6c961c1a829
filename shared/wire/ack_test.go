package wire_test

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"github.com/tawsil/tawsil/shared/wire"
	"github.com/tawsil/tawsil/shared/wire/golden"
)

func TestAckGolden(t *testing.T) {
	for _, tt := range golden.AckVectors() {
		t.Run(tt.Name, func(t *testing.T) {
			got, err := wire.EncodeAck(nil, tt.Ack)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.Payload) {
				t.Fatalf("encode = %x, want %x", got, tt.Payload)
			}
			back, err := wire.DecodeAck(got)
			if err != nil || !reflect.DeepEqual(back, tt.Ack) {
				t.Fatalf("decode = %+v, %v; want %+v", back, err, tt.Ack)
			}
		})
	}
}

func TestAckRejects(t *testing.T) {
	tests := []struct {
		name string
		give []byte
		want error
	}{
		{"empty", nil, wire.ErrTruncated},
		{"version", []byte{2, 1, 1, 1, 0}, wire.ErrVersion},
		{"no range", []byte{1, 1, 0}, wire.ErrAck},
		{"seq zero", []byte{1, 1, 1, 0, 0}, wire.ErrAck},
		{"too many", append([]byte{1, 1, 65}, make([]byte, 130)...), wire.ErrAck},
		{"trailing", []byte{1, 1, 1, 1, 0, 0}, wire.ErrTrailing},
		{"truncated", []byte{1, 1, 2, 1, 0, 0}, wire.ErrAck},
		{"overflow", []byte{1, 1, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x01}, wire.ErrAck},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := wire.DecodeAck(tt.give); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := wire.EncodeAck(nil, wire.Ack{Epoch: 1, Ranges: []wire.SeqRange{{1, 5}, {6, 9}}}); !errors.Is(err, wire.ErrAck) {
		t.Fatalf("adjacent ranges encoded: %v", err)
	}
}

func TestAddRange(t *testing.T) {
	var rs []wire.SeqRange
	for _, r := range []wire.SeqRange{{10, 12}, {1, 3}, {5, 5}, {4, 4}, {20, 30}, {13, 19}} {
		rs = wire.AddRange(rs, r)
	}
	if want := []wire.SeqRange{{1, 5}, {10, 30}}; !reflect.DeepEqual(rs, want) {
		t.Fatalf("ranges = %v, want %v", rs, want)
	}
	rs = wire.AddRange(rs, wire.SeqRange{40, 41})
	rs = wire.AddRange(rs, wire.SeqRange{35, 36})
	if want := []wire.SeqRange{{1, 5}, {10, 30}, {35, 36}, {40, 41}}; !reflect.DeepEqual(rs, want) {
		t.Fatalf("ranges = %v, want %v", rs, want)
	}
	a := wire.Ack{Epoch: 7, Ranges: rs}
	if !a.Contains(7, 36) || a.Contains(7, 37) || a.Contains(8, 36) {
		t.Fatal("Contains")
	}
}

func FuzzDecodeAck(f *testing.F) {
	for _, tt := range golden.AckVectors() {
		f.Add(tt.Payload)
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		a, err := wire.DecodeAck(p)
		if err != nil {
			return
		}
		again, err := wire.EncodeAck(nil, a)
		if err != nil {
			t.Fatalf("decoded ack does not re-encode: %+v: %v", a, err)
		}
		b, err := wire.DecodeAck(again)
		if err != nil || !reflect.DeepEqual(a, b) {
			t.Fatalf("round trip: %+v vs %+v (%v)", a, b, err)
		}
	})
}
