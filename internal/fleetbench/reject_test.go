package fleetbench_test

import (
	"context"
	"errors"
	"testing"

	"github.com/tenantry/tenantry/examples/app/ent"
	"github.com/tenantry/tenantry/examples/app/ent/order"
	"github.com/tenantry/tenantry/internal/fleetbench"
	"github.com/tenantry/tenantry/tenancy"
	"github.com/tenantry/tenantry/tenancy/admission"
	"github.com/tenantry/tenantry/tenancy/ratelimit"
)

// BenchmarkThrottledRequest is what one rejected request of
// BenchmarkNoisyNeighborFleet's aggressor costs the app process: the
// generated client builds the query (interceptors, SQL builder) before the
// driver asks the gate, whose rate limiter refuses it (client), against
// asking admission.Gate.Check first, as the app's middleware does
// (gate_check).
//
//	go test ./internal/fleetbench -run '^$' -bench ThrottledRequest -benchtime 3s
func BenchmarkThrottledRequest(b *testing.B) {
	f := fleetFor(b, fleetbench.Spec{Name: "throttled", Own: 1, Customers: 1})
	pool, err := f.AppPool(context.Background(), 2)
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	ps, err := f.Placements(&tenancy.Shard{Name: "throttled", Pool: pool}, func(int, *fleetbench.Tenant) tenancy.Limits {
		l := tenancy.DefaultLimits
		l.RatePerSec, l.Burst = 0.001, 1
		return l
	})
	if err != nil {
		b.Fatal(err)
	}
	gate := admission.New(admission.Config{RateLimiter: ratelimit.NewLocal()})
	client := ent.NewClient(ent.Driver(tenancy.NewDriver(tenancy.NewStaticResolver(nil, ps...), tenancy.WithGate(gate))))
	ctx := tenancy.WithTenant(context.Background(), f.Tenants[0].ID)
	if _, err := client.Order.Query().Count(ctx); err != nil { // takes the one token
		b.Fatal(err)
	}
	b.Run("client", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, err := client.Order.Query().Where(order.StatusEQ(order.StatusPlaced)).Aggregate(ent.Sum(order.FieldTotalCents)).Int(ctx)
			if !errors.Is(err, ratelimit.ErrThrottled) {
				b.Fatalf("want ErrThrottled, got %v", err)
			}
		}
	})
	// What the app's middleware pays when it asks the gate first.
	b.Run("gate_check", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := gate.Check(f.Tenants[0].ID); !errors.Is(err, ratelimit.ErrThrottled) {
				b.Fatalf("want ErrThrottled, got %v", err)
			}
		}
	})
}
