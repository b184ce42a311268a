package fleetbench_test

import (
	"context"
	"flag"
	"math/rand/v2"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenantry/tenantry/examples/app/ent"
	"github.com/tenantry/tenantry/internal/apptest"
	"github.com/tenantry/tenantry/internal/fleetbench"
	"github.com/tenantry/tenantry/tenancy"
)

var smSchemas = flag.Int("fleetbench.stmtmem.schemas", 200, "BenchmarkStatementCacheMemory: tenants in schemas of their own")

// BenchmarkStatementCacheMemory measures what a statement in the driver's
// cache (tenancy.WithStatementCacheSize) costs the server: the memory of
// one backend that has prepared the example app's point read and order
// insert for each of 200 tenant schemas, read from
// pg_backend_memory_contexts on that connection. It reports
//
//   - plan-bytes/stmt: the plan cache's contexts (CachedPlanSource, its
//     query tree, the generic plan; with the plans of the foreign-key
//     checks the inserts make) over the statements prepared;
//   - backend-bytes/stmt: the backend's whole growth over them, which adds
//     the catalog caches of the schemas' tables (paid by any connection
//     that serves those schemas, cached statements or not).
//
// A pool of P connections with a cache of N statements holds up to
// P × N × plan-bytes/stmt on its shard; this is what keeps the default
// (512) from growing with the number of schemas a connection meets.
//
//	go test ./internal/fleetbench -run '^$' -bench StatementCacheMemory -benchtime 1x -v
func BenchmarkStatementCacheMemory(b *testing.B) {
	f := fleetFor(b, fleetbench.Spec{Name: "stmtmem", Own: *smSchemas, Customers: 5})
	ctx := context.Background()
	pool := memoryPool(b, f)
	shard := &tenancy.Shard{Name: "stmtmem", Pool: pool}
	ps, err := f.Placements(shard, func(int, *fleetbench.Tenant) tenancy.Limits { return tenancy.DefaultLimits })
	if err != nil {
		b.Fatal(err)
	}
	// Room for every statement: nothing is evicted while it is measured.
	client := ent.NewClient(ent.Driver(tenancy.NewDriver(tenancy.NewStaticResolver(nil, ps...),
		tenancy.WithStatementCacheSize(4*len(f.Tenants)))))
	// Both statements of the example app's workload (op): the point read
	// and the order insert.
	read, write := newWorkload(client, 0), newWorkload(client, 1)
	rng := rand.New(rand.NewPCG(1, 2))
	const (
		contexts = `SELECT coalesce(sum(total_bytes) FILTER (WHERE name IN ('CachedPlanSource', 'CachedPlanQuery', 'CachedPlan')), 0), sum(total_bytes) FROM pg_backend_memory_contexts`
		runs     = 6 // past the driver's promotion (3 runs) and PostgreSQL's five custom plans
	)
	measure := func() (plan, total int64) {
		c, err := pool.Acquire(ctx)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Release()
		if err := c.QueryRow(ctx, contexts).Scan(&plan, &total); err != nil {
			b.Fatal(err)
		}
		return plan, total
	}
	for b.Loop() {
		// A fresh backend each time, its memory read before and after.
		pool.Reset()
		plan0, total0 := measure()
		for i := range f.Tenants {
			t := &f.Tenants[i]
			tctx := tenancy.WithTenant(ctx, t.ID)
			for range runs {
				for _, w := range []*workload{read, write} {
					if _, err := w.op(tctx, rng, t); err != nil {
						b.Fatal(err)
					}
				}
			}
		}
		plan1, total1 := measure()
		var stmts int64
		c, err := pool.Acquire(ctx)
		if err != nil {
			b.Fatal(err)
		}
		err = c.QueryRow(ctx, "SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'tenantry\\_%' AND name NOT LIKE 'tenantry\\_scope\\_%'").Scan(&stmts)
		c.Release()
		if err != nil {
			b.Fatal(err)
		}
		if stmts < int64(2*len(f.Tenants)) {
			b.Fatalf("%d statements prepared, want one read and one insert for each of %d schemas", stmts, len(f.Tenants))
		}
		b.ReportMetric(float64(stmts), "stmts")
		b.ReportMetric(float64(plan1-plan0)/float64(stmts), "plan-bytes/stmt")
		b.ReportMetric(float64(total1-total0)/float64(stmts), "backend-bytes/stmt")
	}
}

// memoryPool returns a pool of one connection of f's app role, which may
// read its own backend's memory contexts (pg_backend_memory_contexts is
// superuser-only by default). It is closed with tb.
func memoryPool(tb testing.TB, f *fleetbench.Fleet) *pgxpool.Pool {
	tb.Helper()
	ctx := context.Background()
	su, err := pgx.Connect(ctx, f.Cluster.DSN("postgres", apptest.Database))
	if err != nil {
		tb.Fatal(err)
	}
	defer su.Close(ctx)
	app := pgx.Identifier{f.Roles.App}.Sanitize()
	if _, err := su.Exec(ctx, "GRANT SELECT ON pg_backend_memory_contexts TO "+app+
		"; GRANT EXECUTE ON FUNCTION pg_get_backend_memory_contexts() TO "+app); err != nil {
		tb.Fatal(err)
	}
	pool, err := f.AppPool(ctx, 1)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(pool.Close)
	return pool
}
