package openloop

import (
	"runtime"
	"slices"
	"time"
)

// Dispatch calls run(i) in a goroutine of its own at start+at(i), for i in
// [0, n), in index order; at must not decrease with i. It returns once the
// last request has been started (not finished): the caller waits for run
// to be done, e.g. with a sync.WaitGroup. A request whose time has passed
// starts at once.
func Dispatch(start time.Time, n int, at func(i int) time.Duration, run func(i int)) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		setTimerSlack()
		for i := range n {
			if d := time.Until(start.Add(at(i))); d > 0 {
				sleepPrecise(d)
			}
			go run(i)
		}
	}()
	<-done
}

// Latencies is a set of measured latencies.
type Latencies []time.Duration

// Sorted sorts the latencies in place and returns them.
func (l Latencies) Sorted() Latencies {
	slices.Sort(l)
	return l
}

// Quantile returns the nearest-rank q-quantile (0 < q ≤ 1) of sorted
// latencies, 0 for none.
func (l Latencies) Quantile(q float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	i := int(float64(len(l))*q+0.999999) - 1
	return l[min(max(i, 0), len(l)-1)]
}

// Ms formats a duration in milliseconds with two decimals' precision.
func Ms(d time.Duration) float64 { return float64(d.Round(10*time.Microsecond)) / 1e6 }
