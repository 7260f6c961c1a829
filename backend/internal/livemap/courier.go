// Package livemap is the live index of couriers: last position, H3 cells,
// work status, vehicle and load, kept in memory and asked for the nearest
// couriers matching a filter.
//
// It does no I/O. Ingest feeds it fixes (Update) and state changes
// (SetOnline, SetStatus, SetShift, SetProfile); dispatch and the HTTP API
// ask it (Nearest, Get, Each); persistence snapshots it (Snapshot) and
// rebuilds it on start (Restore). Density per cell learns of couriers
// entering, leaving or changing supply in a cell through an Observer, without
// scanning.
//
// Consumers declare the small interface they need; the method set offered
// for dispatch is:
//
//	Nearest(lat, lng float64, f livemap.Filter, k int, radiusM float64) []livemap.Hit
//	Get(id string) (livemap.Courier, bool)
//
// Every method is safe for concurrent use.
package livemap

import (
	"errors"
	"fmt"
	"time"

	"github.com/uber/h3-go/v4"

	"github.com/tawsil/tawsil/shared/wire"
)

// Resolutions of the cells kept per courier.
const (
	DispatchRes = 9 // ring search for Nearest
	DensityRes  = 8 // default density hexes
	CityRes     = 7 // city-wide density view
)

// Errors returned by the index; callers branch on them with errors.Is.
var (
	ErrInvalidFix = errors.New("livemap: invalid fix")
	ErrInvalid    = errors.New("livemap: invalid argument")
)

// Status is a courier's work status, as dispatch sees it. Whether the device
// is connected is separate (Courier.Online).
type Status uint8

// Work statuses.
const (
	StatusOffline   Status = iota // not working (signed off)
	StatusAvailable               // can take orders
	StatusBusy                    // carrying Load orders
	StatusOnBreak                 // working but not taking orders now
	numStatuses
)

var statusNames = [numStatuses]string{"offline", "available", "busy", "on_break"}

// String returns the API name of the status.
func (s Status) String() string {
	if s < numStatuses {
		return statusNames[s]
	}
	return fmt.Sprintf("status(%d)", uint8(s))
}

// ParseStatus returns the status named s (as String writes it).
func ParseStatus(s string) (Status, error) {
	for i, n := range statusNames {
		if n == s {
			return Status(i), nil
		}
	}
	return 0, fmt.Errorf("%w: status %q", ErrInvalid, s)
}

// Courier is a snapshot of one courier in the index.
type Courier struct {
	ID string
	// Fix is the last applied fix; HasFix is false until the first one.
	Fix    wire.Fix
	HasFix bool
	// Cells of Fix at the dispatch and density resolutions; zero without a fix.
	Cell9, Cell8, Cell7 h3.Cell
	Status              Status
	Load                int // orders carried
	Capacity            int // most orders carried at once
	Vehicle             string
	OnShift             bool
	Online              bool      // device connected (state topic, Last Will, staleness)
	LastSeen            time.Time // server receive time of the last message from the device
}

// Spare is how many more orders the courier can take.
func (c Courier) Spare() int { return c.Capacity - c.Load }

// Supply is how a courier counts in the supply of its cell.
type Supply uint8

// Supply kinds.
const (
	SupplyNone      Supply = iota // no position, disconnected, off shift, on break or signed off
	SupplyAvailable               // online, on shift, status available
	SupplyBusy                    // online, status busy
)

// Presence is where and how a courier counts for density.
type Presence struct {
	Cell8, Cell7 h3.Cell // zero when the courier has no position
	Supply       Supply
}

// Observer learns of every change of a courier's Presence. The index calls
// it synchronously, in order per courier, while holding that courier's
// lock (not the spatial locks): it must be quick and must not call back into
// the index.
type Observer interface {
	CourierChanged(id string, prev, next Presence)
}

// UpdateResult says what an Update did.
type UpdateResult struct {
	Created     bool // first time this courier was seen
	Applied     bool // the fix is now the live position
	OutOfOrder  bool // seq or device time not after the live fix: stored in history only
	CellChanged bool // the res-9 cell changed
}

// Filter selects couriers in Nearest. The zero Filter matches everyone with
// a position.
type Filter struct {
	Statuses []Status // any of these; empty means any status
	Vehicles []string // any of these; empty means any vehicle
	MinSpare int      // Capacity-Load at least this (when > 0)
	OnShift  bool     // only couriers on shift
	Online   bool     // only connected couriers
	Exclude  map[string]struct{}
}

// Hit is one answer of Nearest.
type Hit struct {
	Courier
	DistanceM float64 // great-circle distance (DistanceM) from the query point
}
