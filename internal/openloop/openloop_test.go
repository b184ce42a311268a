package openloop_test

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tenantry/tenantry/internal/openloop"
)

func TestQuantile(t *testing.T) {
	l := openloop.Latencies{5, 1, 4, 2, 3, 10, 9, 8, 7, 6}.Sorted()
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 5}, {0.9, 9}, {0.99, 10}, {1, 10}, {0.01, 1}} {
		if got := l.Quantile(tc.q); got != tc.want {
			t.Errorf("Quantile(%g) = %d, want %d", tc.q, got, tc.want)
		}
	}
	if got := openloop.Latencies(nil).Quantile(0.5); got != 0 {
		t.Errorf("Quantile of none = %d", got)
	}
}

// TestDispatchOnSchedule checks that requests start at their times, not
// after the previous ones finish: each request blocks until every request
// has begun, which only an open loop lets happen.
func TestDispatchOnSchedule(t *testing.T) {
	const n, gap = 20, 5 * time.Millisecond
	start := time.Now().Add(5 * time.Millisecond)
	var (
		mu      sync.Mutex
		wg      sync.WaitGroup
		began   = make([]time.Duration, n)
		started int
		all     = make(chan struct{}) // closed when every request has begun
		giveUp  = make(chan struct{}) // closed when one waited too long
		once    sync.Once
		stuck   atomic.Int64
	)
	wg.Add(n)
	openloop.Dispatch(start, n, func(i int) time.Duration { return time.Duration(i) * gap }, func(i int) {
		defer wg.Done()
		mu.Lock()
		began[i] = time.Since(start)
		if started++; started == n {
			close(all)
		}
		mu.Unlock()
		select {
		case <-all:
		case <-giveUp:
		case <-time.After(10 * time.Second): // only a closed loop waits this long
			stuck.Add(1)
			once.Do(func() { close(giveUp) })
		}
	})
	wg.Wait()
	if stuck.Load() > 0 {
		t.Fatal("a request waited 10 s for the others to begin: Dispatch waits for requests to finish")
	}
	// The last request starts about n*gap after the first. A loaded
	// machine starts it late, so the bound is loose: the check above is
	// the one that tells an open loop from a closed one.
	if last := began[n-1]; last < time.Duration(n-1)*gap || last > time.Duration(n-1)*gap+time.Second {
		t.Errorf("request %d began at %s, scheduled at %s", n-1, last, time.Duration(n-1)*gap)
	}
	for i := 1; i < n; i++ {
		if began[i] < time.Duration(i)*gap {
			t.Errorf("request %d began at %s, before its time %s", i, began[i], time.Duration(i)*gap)
		}
	}
}
