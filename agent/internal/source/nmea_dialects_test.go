package source

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"strings"
	"testing"
	"time"
)

// nmeaLine completes a sentence body with '$' and its checksum.
func nmeaLine(body string) string {
	var sum byte
	for i := 0; i < len(body); i++ {
		sum ^= body[i]
	}
	return fmt.Sprintf("$%s*%02X", body, sum)
}

func decodeLines(lines []string) ([]Sample, *NMEADecoder) {
	d := NewNMEADecoder()
	var got []Sample
	for _, l := range lines {
		if s, ok := d.Line(l); ok {
			got = append(got, s)
		}
	}
	if s, ok := d.Flush(); ok {
		got = append(got, s)
	}
	return got, d
}

// wantFix is an expected epoch: a fix at t (lat, lng), or no fix.
type wantFix struct {
	noFix    bool
	t        string // 15:04:05.000 on 2026-11-21
	lat, lng float64
	speed    float64 // m/s, -1 unknown
	accuracy float64 // m, -1 unknown
}

// TestNMEADialects feeds the receiver dialects that the plain go-nmea
// decoding got wrong (each line written from the receivers' documented
// output and gpsd's regression logs of them) and checks every epoch.
func TestNMEADialects(t *testing.T) {
	const lat, lng = 33.5833333333, -7.6
	tests := []struct {
		name  string
		lines []string
		want  []wantFix
	}{
		{
			// ST Teseo III: only GNS, GLL and ZDA, no RMC; the date from ZDA.
			name: "teseo GNS GLL ZDA",
			lines: []string{
				nmeaLine("GPZDA,101010.000,21,11,2026,00,00"),
				nmeaLine("GNGNS,101011.000,3335.0000,N,00736.0000,W,AAN,12,0.8,50.0,20.0,,"),
				nmeaLine("GNGLL,3335.0000,N,00736.0000,W,101011.000,A,A"),
				nmeaLine("GPZDA,101011.000,21,11,2026,00,00"),
				nmeaLine("GNGNS,101012.000,3335.0060,N,00736.0000,W,ADN,11,0.9,50.0,20.0,,V"),
				nmeaLine("GNGLL,3335.0060,N,00736.0000,W,101012.000,A,D"),
				nmeaLine("GNGNS,101013.000,,,,,NNN,00,,,,,V"), // lost the fix
				nmeaLine("GNGLL,,,,,101013.000,V,N"),
			},
			want: []wantFix{
				{t: "10:10:11.000", lat: lat, lng: lng, speed: -1, accuracy: 0.8 * UERE},
				{t: "10:10:12.000", lat: lat + 0.0001, lng: lng, speed: -1, accuracy: 0.9 * UERE},
				{noFix: true},
			},
		},
		{
			name: "GLL only, NMEA 2.0 without mode",
			lines: []string{
				nmeaLine("GPZDA,101010.00,21,11,2026,,"),
				nmeaLine("GPGLL,3335.0000,N,00736.0000,W,101011.00,A"),
				nmeaLine("GPGLL,3335.0060,N,00736.0000,W,101012.00,A"),
			},
			want: []wantFix{
				{t: "10:10:11.000", lat: lat, lng: lng, speed: -1, accuracy: -1},
				{t: "10:10:12.000", lat: lat + 0.0001, lng: lng, speed: -1, accuracy: -1},
			},
		},
		{
			// Motorola T805: RMC without the magnetic-variation E/W field.
			name: "RMC without variation direction",
			lines: []string{
				"$GPRMC,181207,A,3335.0000,N,00736.0000,W,0.0,0.0,211126,0,A*" + checksumOf("GPRMC,181207,A,3335.0000,N,00736.0000,W,0.0,0.0,211126,0,A"),
				nmeaLine("GPGGA,181208,3335.0000,N,00736.0000,W,1,05,1.4,40.0,M,,,,"),
			},
			want: []wantFix{
				{t: "18:12:07.000", lat: lat, lng: lng, speed: 0, accuracy: -1},
				{t: "18:12:08.000", lat: lat, lng: lng, speed: -1, accuracy: 1.4 * UERE},
			},
		},
		{
			// ST Teseo LIV4F: line noise before '$' and a doubled "$$".
			name: "junk and $$ prefixes",
			lines: []string{
				"\x00\xff\xfe" + nmeaLine("GPRMC,101011.000,A,3335.0000,N,00736.0000,W,1.94,45.0,211126,,,A"),
				"$" + nmeaLine("GPGGA,101011.000,3335.0000,N,00736.0000,W,1,08,1.0,50.0,M,20.0,M,,"),
				"garbage" + nmeaLine("GPRMC,101012.000,A,3335.0060,N,00736.0000,W,1.94,45.0,211126,,,A"),
				"$$$" + nmeaLine("GPVTG,45.0,T,,M,1.94,N,3.6,K,A"),
			},
			want: []wantFix{
				{t: "10:10:11.000", lat: lat, lng: lng, speed: 1.94 * KnotsToMPS, accuracy: 1.0 * UERE},
				{t: "10:10:12.000", lat: lat + 0.0001, lng: lng, speed: 1.94 * KnotsToMPS, accuracy: -1},
			},
		},
		{
			// Saab R4 AIS: RMC and GGA cut after the fields it fills in.
			name: "short RMC and GGA",
			lines: []string{
				nmeaLine("GPRMC,101011.00,A,3335.0000,N,00736.0000,W,0.0,0.0,211126"),
				nmeaLine("GPGGA,101011.00,3335.0000,N,00736.0000,W,2,09,0.9"),
				nmeaLine("GPRMC,101012.00,A,3335.0060,N,00736.0000,W,,,211126,,"),
				nmeaLine("GPGGA,101012.00,3335.0060,N,00736.0000,W,2"),
			},
			want: []wantFix{
				{t: "10:10:11.000", lat: lat, lng: lng, speed: 0, accuracy: 0.9 * UERE},
				{t: "10:10:12.000", lat: lat + 0.0001, lng: lng, speed: -1, accuracy: -1},
			},
		},
		{
			// Quectel L70/L76 on losing the fix: sentences with an empty time.
			// The last good epoch is kept; the no-fix is one epoch of its own.
			name: "quectel empty-time no fix",
			lines: []string{
				nmeaLine("GPRMC,101011.000,A,3335.0000,N,00736.0000,W,0.50,90.00,211126,,,A"),
				nmeaLine("GPGGA,101011.000,3335.0000,N,00736.0000,W,1,7,1.10,50.0,M,20.0,M,,"),
				"$GPGGA,,,,,,0,,,,,,,,*66",
				"$GPRMC,,V,,,,,,,,,,N*53",
				nmeaLine("GPVTG,,T,,M,,N,,K,N"),
				nmeaLine("GPGGA,,,,,,0,00,99.99,,,,,,"),
				nmeaLine("GPRMC,101015.000,A,3335.0000,N,00736.0000,W,0.10,90.00,211126,,,A"),
				nmeaLine("GPGGA,101015.000,3335.0000,N,00736.0000,W,1,5,1.30,50.0,M,20.0,M,,"),
			},
			want: []wantFix{
				{t: "10:10:11.000", lat: lat, lng: lng, speed: 0.5 * KnotsToMPS, accuracy: 1.1 * UERE},
				{noFix: true},
				{t: "10:10:15.000", lat: lat, lng: lng, speed: 0.1 * KnotsToMPS, accuracy: 1.3 * UERE},
			},
		},
		{
			name: "VTG of the NMEA 2.0 form",
			lines: []string{
				nmeaLine("GPGGA,101011.00,3335.0000,N,00736.0000,W,1,09,0.9,50.0,M,,,,"),
				nmeaLine("GPVTG,054.7,034.4,005.5,010.2"),
				nmeaLine("GPZDA,101011.00,21,11,2026,,"),
			},
			want: []wantFix{
				{t: "10:10:11.000", lat: lat, lng: lng, speed: 5.5 * KnotsToMPS, accuracy: 0.9 * UERE},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, d := decodeLines(tt.lines)
			if len(got) != len(tt.want) {
				t.Fatalf("got %d epochs %+v, want %d (skipped %v)", len(got), got, len(tt.want), d.Counters())
			}
			for i, w := range tt.want {
				g := got[i]
				if g.NoFix != w.noFix {
					t.Fatalf("epoch %d: %+v, want no-fix %v", i, g, w.noFix)
				}
				if w.noFix {
					continue
				}
				wt, err := time.Parse("2006-01-02 15:04:05.000", "2026-11-21 "+w.t)
				if err != nil {
					t.Fatal(err)
				}
				f := g.Fix
				if !f.Time.Equal(wt) || math.Abs(f.Lat-w.lat) > 1e-9 || math.Abs(f.Lng-w.lng) > 1e-9 ||
					math.Abs(f.Speed-w.speed) > 1e-9 || math.Abs(f.Accuracy-w.accuracy) > 1e-9 {
					t.Errorf("epoch %d: %s %.9f,%.9f speed %v acc %v; want %+v", i, f.Time.Format(time.RFC3339Nano), f.Lat, f.Lng, f.Speed, f.Accuracy, w)
				}
			}
			for k, n := range d.Counters() {
				if n != 0 {
					t.Errorf("skipped %s: %d", k, n)
				}
			}
		})
	}
}

func checksumOf(body string) string {
	return nmeaLine(body)[len(body)+2:]
}

// TestNMEAQuectelChecksums: the literal Quectel sentences carry
// valid checksums (so the test above feeds them as the module sends them).
func TestNMEAQuectelChecksums(t *testing.T) {
	for _, l := range []string{"$GPGGA,,,,,,0,,,,,,,,*66", "$GPRMC,,V,,,,,,,,,,N*53"} {
		if got := nmeaLine(l[1:strings.IndexByte(l, '*')]); got != l {
			t.Errorf("%s: checksum should be %s", l, got)
		}
	}
}

// TestNMEARejectsBadFields: malformed fields are counted, never a fix.
func TestNMEARejectsBadFields(t *testing.T) {
	for _, body := range []string{
		"GPRMC,101011.00,A,3335.0000,X,00736.0000,W,0.0,0.0,211126",   // hemisphere
		"GPRMC,101011.00,A,33x5.0000,N,00736.0000,W,0.0,0.0,211126",   // latitude
		"GPRMC,101011.00,A,3375.0000,N,00736.0000,W,0.0,0.0,211126",   // 75 minutes
		"GPRMC,1010,A,3335.0000,N,00736.0000,W,0.0,0.0,211126",        // time
		"GPRMC,101011.00,A,3335.0000,N,00736.0000,W,0.0,0.0,2111",     // date
		"GPRMC,101011.00,A,3335.0000,N,00736.0000,W,NaN,0.0,211126",   // speed
		"GPGGA,101011.00,3335.0000,N,00736.0000,W,x,09,0.9",           // quality
		"GNGNS,101011.00,3335.0000,N,00736.0000,W,AQ,09,0.9",          // mode
		"GPRMC,101011.00,A,9035.0000,N,00736.0000,W,0.0,0.0,211126",   // > 90°
		"GPRMC,101011.00,A,3335.0000,N,18136.0000,W,0.0,0.0,211126",   // > 180°
		"GPRMC,101011.00,A,3335.0000,N,-0736.0000,W,0.0,0.0,211126",   // sign
		"GPRMC,101011.00,A,3335.0000,N,0x1p3,W,0.0,0.0,211126",        // hex float
		"GPRMC,101011.00,A,3335.0000,N,00736.0000,W,1e400,0.0,211126", // infinite
	} {
		got, d := decodeLines([]string{nmeaLine(body)})
		if len(got) != 0 || d.Counters()[SkipDecode] != 1 {
			t.Errorf("%s: %+v, skipped %v", body, got, d.Counters())
		}
	}
}

// TestGPSDBackoffResets: reconnections back off while gpsd is away, and
// start again from the minimum after a session that delivered reports.
func TestGPSDBackoffResets(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// dials 1-3 fail, 4 is a good session (one TPV, then gpsd goes away), 5-6 fail.
	var dials int
	g := NewGPSD("gpsd.test:2947", slog.New(slog.DiscardHandler))
	g.dial = func(ctx context.Context, _, _ string) (net.Conn, error) {
		dials++
		if dials != 4 {
			return nil, errors.New("connection refused")
		}
		srv, cl := net.Pipe()
		go func() {
			buf := make([]byte, 256)
			if _, err := srv.Read(buf); err != nil { // ?WATCH
				return
			}
			fmt.Fprintln(srv, `{"class":"TPV","mode":3,"time":"2026-11-21T10:10:11.000Z","lat":33.58,"lon":-7.6}`)
			srv.Close()
		}()
		return cl, nil
	}
	var waits []time.Duration
	g.sleep = func(_ context.Context, d time.Duration) error {
		waits = append(waits, d)
		if len(waits) == 6 {
			cancel()
			return context.Canceled
		}
		return nil
	}
	var fixes int
	err := g.Run(ctx, func(Sample) error { fixes++; return nil })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
	want := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 500 * time.Millisecond, time.Second, 2 * time.Second}
	if fmt.Sprint(waits) != fmt.Sprint(want) || fixes != 1 {
		t.Fatalf("waits %v (fixes %d), want %v", waits, fixes, want)
	}
}
