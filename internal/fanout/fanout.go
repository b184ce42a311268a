package fanout

import (
	"context"
	"sync"
)

// Run hands jobs to n workers, each running work over the channel of jobs
// until it is closed, and returns the first worker's error (the others'
// context is then cancelled) or the context's.
func Run[T any](ctx context.Context, n int, jobs []T, work func(ctx context.Context, next <-chan T) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan T)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			if err := work(ctx, next); err != nil {
				cancel(err)
			}
		})
	}
feed:
	for _, j := range jobs {
		select {
		case next <- j:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	return context.Cause(ctx)
}
