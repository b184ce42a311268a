package fanout_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/tenantry/tenantry/internal/fanout"
)

func TestRun(t *testing.T) {
	boom := errors.New("boom")
	jobs := make([]int, 100)
	for i := range jobs {
		jobs[i] = i
	}
	tests := []struct {
		name    string
		workers int
		failAt  int // job that fails; -1 for none
		want    error
	}{
		{"all jobs, one worker", 1, -1, nil},
		{"all jobs, four workers", 4, -1, nil},
		{"first error stops the others", 4, 10, boom},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var sum, ran atomic.Int64
			var cancelled atomic.Int64
			err := fanout.Run(context.Background(), tt.workers, jobs, func(ctx context.Context, next <-chan int) error {
				for j := range next {
					ran.Add(1)
					if j == tt.failAt {
						return boom
					}
					if tt.failAt >= 0 && j > tt.failAt {
						<-ctx.Done() // handed out after the failing job: wait for its cancellation
					}
					sum.Add(int64(j))
				}
				if ctx.Err() != nil {
					cancelled.Add(1)
				}
				return nil
			})
			if !errors.Is(err, tt.want) {
				t.Fatalf("Run = %v, want %v", err, tt.want)
			}
			if tt.want == nil {
				if sum.Load() != 99*100/2 || ran.Load() != 100 {
					t.Errorf("ran %d jobs summing %d, want 100 summing 4950", ran.Load(), sum.Load())
				}
				return
			}
			if ran.Load() == 100 {
				t.Errorf("every job ran after the failure")
			}
			if cancelled.Load() != int64(tt.workers-1) {
				t.Errorf("%d of the other %d workers saw their context cancelled", cancelled.Load(), tt.workers-1)
			}
		})
	}
}

func TestRunCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := fanout.Run(ctx, 2, []int{1, 2, 3}, func(ctx context.Context, next <-chan int) error {
		for range next {
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
}
