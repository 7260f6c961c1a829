package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// ErrStatus is an HTTP answer with an unexpected status.
var ErrStatus = errors.New("unexpected HTTP status")

// api is a small client of the Tawsil HTTP API.
type api struct {
	base string
	hc   *http.Client
}

// newAPI returns a client of base (http://host:port). With a non-empty
// source address, connections leave from that loopback address: the
// login limiter counts per client address, and a real fleet logs in from
// many addresses, not one.
func newAPI(base, source string) *api {
	d := &net.Dialer{Timeout: 5 * time.Second}
	if source != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(source)}
	}
	// No gzip: /metrics is scraped often, and compressing it costs the backend CPU.
	tr := &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 64, DisableCompression: true}
	return &api{base: strings.TrimRight(base, "/"), hc: &http.Client{Timeout: 30 * time.Second, Transport: tr}}
}

// do sends a JSON request and decodes a JSON answer into out (if not nil).
// A 429 answer is retried after its Retry-After while ctx allows.
func (a *api) do(ctx context.Context, method, path, token string, in, out any, want int) error {
	for {
		var body io.Reader
		if in != nil {
			raw, err := json.Marshal(in)
			if err != nil {
				return fmt.Errorf("%s %s: %w", method, path, err)
			}
			body = bytes.NewReader(raw)
		}
		req, err := http.NewRequestWithContext(ctx, method, a.base+path, body)
		if err != nil {
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
		if in != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := a.hc.Do(req)
		if err != nil {
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
		raw, err := io.ReadAll(io.LimitReader(res.Body, 64<<20))
		res.Body.Close()
		if err != nil {
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
		if res.StatusCode == http.StatusTooManyRequests {
			wait, _ := strconv.Atoi(res.Header.Get("Retry-After"))
			select {
			case <-time.After(time.Duration(max(wait, 1)) * time.Second):
				continue
			case <-ctx.Done():
				return fmt.Errorf("%s %s: rate limited: %w", method, path, ctx.Err())
			}
		}
		if res.StatusCode != want {
			return fmt.Errorf("%s %s: %w %d (want %d): %.300s", method, path, ErrStatus, res.StatusCode, want, raw)
		}
		if out != nil {
			if err := json.Unmarshal(raw, out); err != nil {
				return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
			}
		}
		return nil
	}
}

func (a *api) login(ctx context.Context, email, password string) (string, error) {
	var out struct {
		AccessToken string `json:"access_token"`
	}
	err := a.do(ctx, http.MethodPost, "/v1/auth/login", "", map[string]string{"email": email, "password": password}, &out, http.StatusOK)
	if err == nil && out.AccessToken == "" {
		err = errors.New("login: no access token in the answer")
	}
	return out.AccessToken, err
}

// storedFix is one position of GET /v1/couriers/{id}/track.
type storedFix struct {
	Seq uint64    `json:"seq"`
	T   time.Time `json:"t"`
}

// track returns a courier's stored fixes with device time in [from, to],
// following the API's limit page by page.
func (a *api) track(ctx context.Context, token, courierID string, from, to time.Time) ([]storedFix, error) {
	const page = 20_000
	var all []storedFix
	for {
		q := url.Values{"from": {from.UTC().Format(time.RFC3339Nano)}, "to": {to.UTC().Format(time.RFC3339Nano)}, "limit": {strconv.Itoa(page)}}
		var out struct {
			Positions []storedFix `json:"positions"`
		}
		if err := a.do(ctx, http.MethodGet, "/v1/couriers/"+url.PathEscape(courierID)+"/track?"+q.Encode(), token, nil, &out, http.StatusOK); err != nil {
			return nil, err
		}
		all = append(all, out.Positions...)
		if len(out.Positions) < page {
			return all, nil
		}
		// The track is the latest `limit` fixes of the window, oldest
		// first: the next page ends where this one begins. Fixes at that
		// millisecond repeat; the caller counts distinct sequence numbers.
		first := out.Positions[0].T
		if !first.Before(to) {
			return all, nil // a whole page in one millisecond: no way further back
		}
		to = first
	}
}

// nearCourier is one courier of GET /v1/couriers?near=.
type nearCourier struct {
	ID        string  `json:"id"`
	Lat       float64 `json:"lat"`
	Lng       float64 `json:"lng"`
	UpdatedAt string  `json:"updated_at"`
}

func (a *api) near(ctx context.Context, token string, lat, lng float64, radiusM, limit int) ([]nearCourier, error) {
	q := url.Values{"near": {strconv.FormatFloat(lat, 'f', 6, 64) + "," + strconv.FormatFloat(lng, 'f', 6, 64)},
		"radius_m": {strconv.Itoa(radiusM)}, "limit": {strconv.Itoa(limit)}}
	var out struct {
		Couriers []nearCourier `json:"couriers"`
	}
	err := a.do(ctx, http.MethodGet, "/v1/couriers?"+q.Encode(), token, nil, &out, http.StatusOK)
	return out.Couriers, err
}

// metrics scrapes /metrics and returns the samples whose name is in names,
// summed over their labels unless a label filter like
// `tawsil_ingest_fixes_total{result="accepted"}` is given.
func (a *api) metrics(ctx context.Context, names ...string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.base+"/metrics", nil)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	res, err := a.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metrics: %w %d", ErrStatus, res.StatusCode)
	}
	return parseMetrics(res.Body, names...)
}

// parseMetrics reads the Prometheus text format. A wanted name without
// labels matches every series of that metric (summed); a wanted name with
// labels matches series that carry all of those labels.
func parseMetrics(r io.Reader, names ...string) (map[string]float64, error) {
	type want struct {
		key, name string
		labels    []string
	}
	wants := make([]want, 0, len(names))
	for _, n := range names {
		name, rest, _ := strings.Cut(n, "{")
		w := want{key: n, name: name}
		if rest = strings.TrimSuffix(rest, "}"); rest != "" {
			w.labels = strings.Split(rest, ",")
		}
		wants = append(wants, w)
	}
	out := make(map[string]float64, len(names))
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		series, val, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		name, labels, _ := strings.Cut(series, "{")
		labels = strings.TrimSuffix(labels, "}")
		for _, w := range wants {
			if w.name != name || !hasLabels(labels, w.labels) {
				continue
			}
			fields := strings.Fields(val)
			if len(fields) == 0 {
				continue
			}
			v, err := strconv.ParseFloat(fields[0], 64)
			if err != nil {
				return nil, fmt.Errorf("metrics: %s: %w", series, err)
			}
			out[w.key] += v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return out, nil
}

func hasLabels(labels string, want []string) bool {
	have := strings.Split(labels, ",")
	for _, w := range want {
		found := false
		for _, h := range have {
			if h == w {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}
