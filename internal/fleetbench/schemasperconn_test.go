package fleetbench_test

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/tenantry/tenantry/examples/app/ent"
	"github.com/tenantry/tenantry/internal/fleetbench"
	"github.com/tenantry/tenantry/tenancy"
)

var spcSchemas = flag.Int("fleetbench.spc.schemas", 600, "BenchmarkSchemasPerConn: tenants in schemas of their own")

// BenchmarkSchemasPerConn measures what tenancy.WithMaxSchemasPerConn
// trades: point reads of tenants drawn at random from 600 own schemas,
// through a pool of one connection, with no bound, a bound below the 600
// (150) and one above them (1200). Each op is one read. It reports
//
//   - backend-MB: the memory of the backend serving the pool at the end
//     (pg_backend_memory_contexts), which without a bound holds the
//     catalog entries of every schema it has met;
//   - conns/kop: connections opened per 1,000 reads;
//
// and ns/op, which with a bound includes the reconnections, and the
// catalog entries and statements each new connection loads again.
//
//	go test ./internal/fleetbench -run '^$' -bench SchemasPerConn -benchtime 6000x
func BenchmarkSchemasPerConn(b *testing.B) {
	f := fleetFor(b, fleetbench.Spec{Name: "spc", Own: *spcSchemas, Customers: 2})
	ctx := context.Background()
	pool := memoryPool(b, f)
	ps, err := f.Placements(&tenancy.Shard{Name: "spc", Pool: pool}, func(int, *fleetbench.Tenant) tenancy.Limits { return tenancy.DefaultLimits })
	if err != nil {
		b.Fatal(err)
	}
	ctxs := tenantContexts(ctx, f)
	for _, bound := range []int{0, *spcSchemas / 4, 2 * *spcSchemas} {
		b.Run(fmt.Sprintf("bound=%d", bound), func(b *testing.B) {
			client := ent.NewClient(ent.Driver(tenancy.NewDriver(tenancy.NewStaticResolver(nil, ps...), tenancy.WithMaxSchemasPerConn(bound))))
			read := newWorkload(client, 0)
			rng := rand.New(rand.NewPCG(3, 4))
			pool.Reset()
			conns0 := pool.Stat().NewConnsCount()
			for b.Loop() {
				i := rng.IntN(len(f.Tenants))
				if _, err := read.op(ctxs[i], rng, &f.Tenants[i]); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			var total int64
			if err := pool.QueryRow(ctx, "SELECT sum(total_bytes) FROM pg_backend_memory_contexts").Scan(&total); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(total)/(1<<20), "backend-MB")
			b.ReportMetric(float64(pool.Stat().NewConnsCount()-conns0)*1000/float64(b.N), "conns/kop")
		})
	}
}
