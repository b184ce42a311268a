package openloop

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Pressure is a reading of Linux's pressure stall information: how long,
// in all, at least one runnable task waited for a CPU (CPU) and at least
// one task waited for I/O (IO) since boot. On a shared machine it says how
// much the run was disturbed, by others and by itself.
type Pressure struct {
	At      time.Time
	CPU, IO time.Duration
}

// ReadPressure reads /proc/pressure/{cpu,io}; zero values when the kernel
// does not provide them.
func ReadPressure() Pressure {
	p := Pressure{At: time.Now()}
	p.CPU, _ = pressureTotal("/proc/pressure/cpu")
	p.IO, _ = pressureTotal("/proc/pressure/io")
	return p
}

// pressureTotal returns the "some" line's total (µs) of a pressure file.
func pressureTotal(path string) (time.Duration, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if !strings.HasPrefix(line, "some ") {
			continue
		}
		for f := range strings.FieldsSeq(line) {
			if v, ok := strings.CutPrefix(f, "total="); ok {
				us, err := strconv.ParseInt(v, 10, 64)
				return time.Duration(us) * time.Microsecond, err
			}
		}
	}
	return 0, fmt.Errorf("openloop: %s: no total", path)
}

// Since formats the share of wall time between q and p during which some
// task waited for a CPU and for I/O, e.g. "cpu 45%, io 3%".
func (p Pressure) Since(q Pressure) string {
	wall := p.At.Sub(q.At)
	if wall <= 0 || p.CPU == 0 {
		return "unknown"
	}
	return fmt.Sprintf("cpu %.0f%%, io %.0f%%", 100*float64(p.CPU-q.CPU)/float64(wall), 100*float64(p.IO-q.IO)/float64(wall))
}
