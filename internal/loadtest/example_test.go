package loadtest_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/tenantry/tenantry/internal/loadtest"
	"github.com/tenantry/tenantry/tenancy"
	"github.com/tenantry/tenantry/tenancy/ratelimit"
)

// targetFunc adapts a function to loadtest.Target.
type targetFunc func(context.Context, loadtest.Request) error

func (f targetFunc) Do(ctx context.Context, r loadtest.Request) error { return f(ctx, r) }

// A Target is one request of one tenant; an HTTP target would send it to
// the app and map 429 and 503 back to the errors Classify knows. This one
// throttles every aggressor request after its first ten.
func ExampleRun() {
	victims := []tenancy.ID{tenancy.NewID(), tenancy.NewID()}
	aggressor := tenancy.NewID()
	var served atomic.Int64
	target := targetFunc(func(_ context.Context, r loadtest.Request) error {
		if r.Tenant == aggressor {
			if served.Add(1) > 10 { // Do runs concurrently
				return &ratelimit.ThrottledError{Tenant: r.Tenant}
			}
		}
		return nil
	})
	rep, err := loadtest.Run(context.Background(), target, loadtest.Config{
		Victims: victims, Aggressor: aggressor,
		Rate: 2, Factor: 10, // victims at 2 req/s each, the aggressor at 20 req/s
		Duration: time.Second, Warmup: -1,
	})
	if err != nil {
		panic(err)
	}
	fmt.Println("victims:", rep.Victims.Offered, "offered,", rep.Victims.Count(loadtest.OK), "ok")
	fmt.Println("aggressor:", rep.Agg.Offered, "offered,", rep.Agg.Count(loadtest.OK), "ok,", rep.Agg.Count(loadtest.Throttled), "throttled")
	// Output:
	// victims: 4 offered, 4 ok
	// aggressor: 20 offered, 10 ok, 10 throttled
}
