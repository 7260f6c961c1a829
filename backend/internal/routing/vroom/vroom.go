// Package vroom plans a courier's route with a VROOM server
// (github.com/VROOM-Project/vroom) over its HTTP JSON API.
//
// VROOM solves the pickup-and-delivery problem with a road-network travel-time
// matrix (OSRM, Valhalla or ORS behind it), which the built-in planner does
// not have. Its time windows are hard constraints, so a route that cannot be
// served on time comes back with unassigned stops: the client then fails with
// ErrUnassigned and the caller falls back to the built-in planner (see
// routing.WithFallback), which minimises lateness instead.
package vroom

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/tawsil/tawsil/backend/internal/geo"
	"io"
	"net/http"
	"time"

	"github.com/tawsil/tawsil/backend/internal/routing"
)

// Algorithm is the Solution.Algorithm of plans made by VROOM.
const Algorithm = "vroom"

// Defaults for Client.
const (
	DefaultTimeout = 2 * time.Second
	DefaultProfile = "car" // VROOM's routing profile; scooters use the car graph
	maxResponse    = 4 << 20
)

// Errors returned by Plan, besides transport and context errors.
var (
	ErrServer     = errors.New("vroom server error")
	ErrResponse   = errors.New("malformed vroom response")
	ErrUnassigned = errors.New("vroom left stops unassigned")
)

// Client calls a VROOM server. Its zero value is not usable: set URL.
type Client struct {
	URL     string        // e.g. http://vroom:3000/
	HTTP    *http.Client  // nil: a client without its own timeout (Timeout applies)
	Timeout time.Duration // per request; 0: DefaultTimeout
	Profile string        // "": DefaultProfile
}

var _ routing.Planner = (*Client)(nil)

// The request and response shapes of VROOM's API (docs/API.md). Locations are
// [lng, lat]; times are integer seconds from the problem's start time.
type (
	request struct {
		Vehicles  []vehicle  `json:"vehicles"`
		Jobs      []job      `json:"jobs,omitempty"`
		Shipments []shipment `json:"shipments,omitempty"`
	}
	vehicle struct {
		ID      int        `json:"id"`
		Profile string     `json:"profile"`
		Start   [2]float64 `json:"start"`
	}
	job struct {
		ID          int        `json:"id"`
		Description string     `json:"description,omitempty"`
		Location    [2]float64 `json:"location"`
		Service     int64      `json:"service,omitempty"`
		TimeWindows [][2]int64 `json:"time_windows,omitempty"`
	}
	shipment struct {
		Pickup   job `json:"pickup"`
		Delivery job `json:"delivery"`
	}
	response struct {
		Code       int    `json:"code"`
		Error      string `json:"error"`
		Unassigned []struct {
			ID   int    `json:"id"`
			Type string `json:"type"`
		} `json:"unassigned"`
		Routes []struct {
			Vehicle  int      `json:"vehicle"`
			Duration int64    `json:"duration"`
			Distance *float64 `json:"distance"`
			Steps    []struct {
				Type        string `json:"type"`
				ID          int    `json:"id"`
				Arrival     int64  `json:"arrival"`
				WaitingTime int64  `json:"waiting_time"`
				Service     int64  `json:"service"`
			} `json:"steps"`
		} `json:"routes"`
	}
)

// Plan implements routing.Planner. Stop i of p is job or shipment step id i+1.
func (c *Client) Plan(ctx context.Context, p routing.Problem) (routing.Solution, error) {
	if err := p.Validate(); err != nil {
		return routing.Solution{}, err
	}
	if len(p.Stops) == 0 {
		return routing.Evaluate(p, nil)
	}
	body, err := json.Marshal(buildRequest(p, cmp.Or(c.Profile, DefaultProfile)))
	if err != nil {
		return routing.Solution{}, fmt.Errorf("vroom request: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, cmp.Or(c.Timeout, DefaultTimeout))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL, bytes.NewReader(body))
	if err != nil {
		return routing.Solution{}, fmt.Errorf("vroom request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return routing.Solution{}, fmt.Errorf("vroom: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return routing.Solution{}, fmt.Errorf("vroom: read response: %w", err)
	}
	var r response
	if err := json.Unmarshal(data, &r); err != nil {
		return routing.Solution{}, fmt.Errorf("%w: HTTP %d: %w", ErrResponse, resp.StatusCode, err)
	}
	if resp.StatusCode != http.StatusOK || r.Code != 0 {
		return routing.Solution{}, fmt.Errorf("%w: HTTP %d, code %d: %s", ErrServer, resp.StatusCode, r.Code, r.Error)
	}
	return solution(p, r)
}

func buildRequest(p routing.Problem, profile string) request {
	req := request{Vehicles: []vehicle{{ID: 1, Profile: profile, Start: [2]float64{p.Start.Lng, p.Start.Lat}}}}
	pickups := map[string]int{}
	for i, s := range p.Stops {
		if s.Kind == routing.Pickup {
			pickups[s.OrderID] = i
		}
	}
	for i, s := range p.Stops {
		if s.Kind == routing.Pickup {
			continue
		}
		j := toJob(p, i)
		if pu, ok := pickups[s.OrderID]; ok {
			req.Shipments = append(req.Shipments, shipment{Pickup: toJob(p, pu), Delivery: j})
			continue
		}
		req.Jobs = append(req.Jobs, j)
	}
	return req
}

func toJob(p routing.Problem, i int) job {
	s := p.Stops[i]
	j := job{ID: i + 1, Description: s.OrderID + "/" + string(s.Kind),
		Location: [2]float64{s.Loc.Lng, s.Loc.Lat}, Service: int64(s.Service.Seconds())}
	// Hard windows in VROOM: a latest already past cannot be met, so only a
	// future latest is sent; an earliest ("ready at") always is.
	lo, hi := int64(0), int64(-1)
	if !s.Earliest.IsZero() {
		lo = max(0, int64(s.Earliest.Sub(p.StartTime).Seconds()))
	}
	if !s.Latest.IsZero() && s.Latest.After(p.StartTime) {
		hi = int64(s.Latest.Sub(p.StartTime).Seconds())
	}
	switch {
	case hi >= lo:
		j.TimeWindows = [][2]int64{{lo, hi}}
	case lo > 0:
		j.TimeWindows = [][2]int64{{lo, 1 << 31}}
	}
	return j
}

func solution(p routing.Problem, r response) (routing.Solution, error) {
	if len(r.Unassigned) > 0 {
		return routing.Solution{}, fmt.Errorf("%w: %d of %d stops", ErrUnassigned, len(r.Unassigned), len(p.Stops))
	}
	if len(r.Routes) != 1 {
		return routing.Solution{}, fmt.Errorf("%w: %d routes for one vehicle", ErrResponse, len(r.Routes))
	}
	route := r.Routes[0]
	sol := routing.Solution{Algorithm: Algorithm, Finish: p.StartTime}
	seen := make([]bool, len(p.Stops))
	for _, st := range route.Steps {
		switch st.Type {
		case "start", "end", "break":
			continue
		case "job", "pickup", "delivery":
		default:
			return routing.Solution{}, fmt.Errorf("%w: step type %q", ErrResponse, st.Type)
		}
		i := st.ID - 1
		if i < 0 || i >= len(p.Stops) || seen[i] {
			return routing.Solution{}, fmt.Errorf("%w: step id %d", ErrResponse, st.ID)
		}
		seen[i] = true
		s := p.Stops[i]
		v := routing.Visit{Stop: s, Arrival: p.StartTime.Add(time.Duration(st.Arrival) * time.Second)}
		v.Depart = v.Arrival.Add(time.Duration(st.WaitingTime+st.Service) * time.Second)
		if !s.Latest.IsZero() && v.Arrival.After(s.Latest) {
			v.Lateness = v.Arrival.Sub(s.Latest)
			sol.TotalLateness += v.Lateness
			sol.MaxLateness = max(sol.MaxLateness, v.Lateness)
		}
		sol.Visits = append(sol.Visits, v)
		sol.Finish = v.Depart
	}
	if err := routing.Check(p, sol); err != nil {
		return routing.Solution{}, fmt.Errorf("%w: %w", ErrResponse, err)
	}
	sol.TravelTime = time.Duration(route.Duration) * time.Second
	if route.Distance != nil {
		sol.DistanceM = *route.Distance
	} else {
		from := p.Start
		for _, v := range sol.Visits {
			sol.DistanceM += geo.DistanceM(from, v.Loc)
			from = v.Loc
		}
	}
	return sol, nil
}
