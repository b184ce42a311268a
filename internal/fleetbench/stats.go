package fleetbench

import (
	"time"

	"github.com/tenantry/tenantry/internal/openloop"
)

// Latencies is a set of measured latencies (openloop.Latencies).
type Latencies = openloop.Latencies

// Ms formats a duration in milliseconds with two decimals' precision.
func Ms(d time.Duration) float64 { return openloop.Ms(d) }
