package fleetbench

import "github.com/tenantry/tenantry/internal/openloop"

// Pressure is a reading of Linux's pressure stall information
// (openloop.Pressure).
type Pressure = openloop.Pressure

// ReadPressure reads /proc/pressure/{cpu,io} (openloop.ReadPressure).
func ReadPressure() Pressure { return openloop.ReadPressure() }
