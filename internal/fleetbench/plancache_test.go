package fleetbench_test

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tenantry/tenantry/internal/apptest"
	"github.com/tenantry/tenantry/internal/fleetbench"
)

var pcSchemas = flag.Int("fleetbench.plancache.schemas", 100, "BenchmarkPlanCacheSchemaSwitch: tenants in schemas of their own")

// BenchmarkPlanCacheSchemaSwitch explains BenchmarkFleetThroughput's
// server cost for tenants in schemas of their own. It runs the scoped
// point read the way tenancy.Driver does (a prepared set_config statement
// and the prepared query, one batch, one Sync) on raw pgconn connections,
// over tenants in 100 schemas, two ways, interleaved:
//
//   - shared: one prepared query per connection for every schema, as the
//     driver's statement cache (keyed by SQL) does. PostgreSQL re-analyses
//     and re-plans a prepared statement whenever search_path differs from
//     the one it was planned under (plancache.c, RevalidateCachedQuery);
//
//   - per-schema: one prepared query per connection and schema, so that a
//     statement always runs under the search_path it was planned for.
//
//     go test ./internal/fleetbench -run '^$' -bench PlanCacheSchemaSwitch -benchtime 1x -v
func BenchmarkPlanCacheSchemaSwitch(b *testing.B) {
	f := fleetFor(b, fleetbench.Spec{Name: "plancache", Own: *pcSchemas, Customers: 20})
	ctx := context.Background()
	const (
		conns    = 8
		scopeSQL = "SELECT set_config('search_path', $1, true), set_config('app.current_tenant_id', $2, true)"
		readSQL  = `SELECT "customers"."id", "customers"."tenant_id", "customers"."name", "customers"."email", "customers"."created_at" FROM "customers" WHERE "customers"."id" = $1 AND "customers"."tenant_id" = $2 LIMIT 2`
	)
	type conn struct {
		pc       *pgconn.PgConn
		prepared map[string]bool
	}
	cs := make([]*conn, conns)
	for i := range cs {
		pc, err := pgconn.Connect(ctx, f.Cluster.DSN(f.Roles.App, apptest.Database))
		if err != nil {
			b.Fatal(err)
		}
		defer pc.Close(ctx)
		if _, err := pc.Prepare(ctx, "scope", scopeSQL, nil); err != nil {
			b.Fatal(err)
		}
		cs[i] = &conn{pc: pc, prepared: map[string]bool{}}
	}
	// prepare prepares the read as name under schema's search_path.
	prepare := func(c *conn, name, schema string) error {
		if c.prepared[name] {
			return nil
		}
		if err := c.pc.Exec(ctx, "BEGIN; SET LOCAL search_path = "+pgx.Identifier{schema}.Sanitize()).Close(); err != nil {
			return err
		}
		if _, err := c.pc.Prepare(ctx, name, readSQL, nil); err != nil {
			return err
		}
		c.prepared[name] = true
		return c.pc.Exec(ctx, "COMMIT").Close()
	}
	run := func(perSchema bool, d time.Duration) (qps, serverUS float64, err error) {
		var (
			n     atomic.Int64
			wg    sync.WaitGroup
			errMu sync.Mutex
		)
		s0 := serverCPU(f)
		deadline := time.Now().Add(d)
		for g, c := range cs {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(g)))
				for time.Now().Before(deadline) {
					t := &f.Tenants[rng.IntN(len(f.Tenants))]
					name := "read"
					if perSchema {
						name = "read_" + t.Schema
					}
					e := prepare(c, name, t.Schema)
					if e == nil {
						cid := t.Customers[rng.IntN(len(t.Customers))]
						var batch pgconn.Batch
						batch.ExecPrepared("scope", [][]byte{[]byte(t.Schema), []byte(t.ID.String())}, nil, nil)
						batch.ExecPrepared(name, [][]byte{[]byte(cid.String()), []byte(t.ID.String())}, nil, nil)
						var res []*pgconn.Result
						if res, e = c.pc.ExecBatch(ctx, &batch).ReadAll(); e == nil && len(res[1].Rows) != 1 {
							e = fmt.Errorf("tenant %s customer %s: %d rows", t.ID, cid, len(res[1].Rows))
						}
					}
					if e != nil {
						errMu.Lock()
						err = e
						errMu.Unlock()
						return
					}
					n.Add(1)
				}
			})
		}
		wg.Wait()
		srv := serverCPU(f) - s0
		return float64(n.Load()) / d.Seconds(), float64(srv.Microseconds()) / float64(max(n.Load(), 1)), err
	}
	for b.Loop() {
		for _, perSchema := range []bool{false, true} { // warm up: prepare, fill caches
			if _, _, err := run(perSchema, time.Second); err != nil {
				b.Fatal(err)
			}
		}
		var qps, us [2]float64
		const rounds = 3
		for range rounds {
			for i, perSchema := range []bool{false, true} {
				q, u, err := run(perSchema, 4*time.Second)
				if err != nil {
					b.Fatal(err)
				}
				qps[i] += q / rounds
				us[i] += u / rounds
			}
		}
		b.Logf("%d schemas, %d connections, closed loop, %d rounds x 4 s interleaved", len(f.Tenants), conns, rounds)
		b.Logf("one prepared read for all schemas (the driver today): %6.0f reads/s, server %4.0f µs/read", qps[0], us[0])
		b.Logf("one prepared read per schema:                         %6.0f reads/s, server %4.0f µs/read", qps[1], us[1])
		b.ReportMetric(qps[0], "qps-shared-stmt")
		b.ReportMetric(qps[1], "qps-per-schema-stmt")
		b.ReportMetric(us[0], "server-us-shared-stmt")
		b.ReportMetric(us[1], "server-us-per-schema-stmt")
	}
}
