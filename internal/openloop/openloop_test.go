package openloop_test

import (
	"sync"
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
// after the previous ones finish: each request blocks for longer than the
// gap between two starts.
func TestDispatchOnSchedule(t *testing.T) {
	const n, gap = 20, 5 * time.Millisecond
	start := time.Now().Add(5 * time.Millisecond)
	var (
		mu    sync.Mutex
		wg    sync.WaitGroup
		began = make([]time.Duration, n)
	)
	wg.Add(n)
	openloop.Dispatch(start, n, func(i int) time.Duration { return time.Duration(i) * gap }, func(i int) {
		defer wg.Done()
		mu.Lock()
		began[i] = time.Since(start)
		mu.Unlock()
		time.Sleep(50 * time.Millisecond)
	})
	wg.Wait()
	// The last request starts about n*gap after the first whatever the
	// 50 ms each one takes (a closed loop would need n*50 ms).
	if last := began[n-1]; last < time.Duration(n-1)*gap || last > time.Duration(n-1)*gap+200*time.Millisecond {
		t.Errorf("request %d began at %s, scheduled at %s", n-1, last, time.Duration(n-1)*gap)
	}
	for i := 1; i < n; i++ {
		if began[i] < time.Duration(i)*gap {
			t.Errorf("request %d began at %s, before its time %s", i, began[i], time.Duration(i)*gap)
		}
	}
}
