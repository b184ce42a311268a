package migrate_test

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	entschema "entgo.io/ent/dialect/sql/schema"
	"entgo.io/ent/schema/field"

	appmigrate "github.com/tenantry/tenantry/examples/app/ent/migrate"
	"github.com/tenantry/tenantry/internal/pgtest"
	"github.com/tenantry/tenantry/migrate"
)

// BenchmarkFleetMigrate is the fleet benchmark of BENCHMARKS.md. It is not
// part of go test ./... (benchmarks run only with -bench):
//
//	go test ./migrate -run '^$' -bench BenchmarkFleetMigrate -benchtime 1x -timeout 60m \
//		-fleet.schemas 10000 -fleet.shards 2
//
// It starts the shards, provisions the schemas of the example app (one
// plan cloned to every schema), applies an ADD COLUMN + CREATE INDEX change
// to all of them, reruns it (a no-op), and runs the naive approach (Apply:
// inspect + diff + apply, each schema in turn) on a sample of extra schemas
// in the same run, for the speed-up ratio.
var (
	benchSchemas     = flag.Int("fleet.schemas", 10000, "BenchmarkFleetMigrate: tenant schemas in all")
	benchShards      = flag.Int("fleet.shards", 2, "BenchmarkFleetMigrate: shards")
	benchSample      = flag.Int("fleet.sample", 40, "BenchmarkFleetMigrate: schemas migrated the naive way")
	benchConcurrency = flag.Int("fleet.concurrency", 2, "BenchmarkFleetMigrate: schemas at once per shard")
	benchChange      = flag.String("fleet.change", "optional", "BenchmarkFleetMigrate: the new column: optional (nullable, like an Ent Optional field) or default (NOT NULL DEFAULT 0)")
)

// benchV2 is the example app's graph plus orders.priority and an index on
// (tenant_id, priority): an ADD COLUMN + CREATE INDEX change. The column is
// nullable (an Ent Optional field), or NOT NULL DEFAULT 0 with withDefault.
func benchV2(withDefault bool) []*entschema.Table {
	var out []*entschema.Table
	for _, t := range appmigrate.Tables {
		c := *t
		if t.Name == appmigrate.OrdersTable.Name {
			prio := &entschema.Column{Name: "priority", Type: field.TypeInt, Nullable: true}
			if withDefault {
				prio = &entschema.Column{Name: "priority", Type: field.TypeInt, Default: 0}
			}
			c.Columns = append(slices.Clone(t.Columns), prio)
			c.Indexes = append(slices.Clone(t.Indexes), &entschema.Index{Name: "order_tenant_id_priority", Columns: []*entschema.Column{c.Columns[1], prio}})
		}
		out = append(out, &c)
	}
	return out
}

func BenchmarkFleetMigrate(b *testing.B) {
	ctx := context.Background()
	n, nShards, sample := *benchSchemas, *benchShards, *benchSample
	roles := migrate.DefaultRoles()
	v1, err := migrate.NewDesired(appmigrate.Tables)
	if err != nil {
		b.Fatal(err)
	}
	if *benchChange != "optional" && *benchChange != "default" {
		b.Fatalf("-fleet.change: want optional or default, got %q", *benchChange)
	}
	v2, err := migrate.NewDesired(benchV2(*benchChange == "default"))
	if err != nil {
		b.Fatal(err)
	}
	logf := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
	}

	clusters := make([]*pgtest.Cluster, nShards)
	var wg sync.WaitGroup
	for i := range clusters {
		wg.Go(func() {
			c, err := pgtest.Start(ctx, pgtest.Options{Name: fmt.Sprintf("bench%d", i), Settings: map[string]string{"shared_buffers": "256MB"}})
			if err != nil {
				b.Error(err)
				return
			}
			clusters[i] = c
		})
	}
	wg.Wait()
	defer func() {
		for _, c := range clusters {
			if c != nil {
				c.Close()
			}
		}
	}()
	if b.Failed() {
		b.FailNow()
	}
	var shards []migrate.Shard
	for i, c := range clusters {
		super, err := sql.Open("pgx", c.SuperuserDSN())
		if err != nil {
			b.Fatal(err)
		}
		if err := migrate.EnsureRoles(ctx, super, roles); err != nil {
			b.Fatal(err)
		}
		// As in production: the owner role owns the shard database.
		if _, err := super.ExecContext(ctx, "CREATE DATABASE fleet OWNER "+roles.Owner); err != nil {
			b.Fatal(err)
		}
		super.Close()
		s, err := migrate.OpenShard(fmt.Sprintf("shard%d", i), c.DSN(roles.Owner, "fleet"), max(*benchConcurrency, 4))
		if err != nil {
			b.Fatal(err)
		}
		defer s.DB.Close()
		shards = append(shards, s)
	}

	// Provision: n tenant schemas across the shards, plus the naive sample
	// (named naive_..., outside the fleet's pattern) on shard 0.
	var all migrate.TargetList
	for k := range n {
		all = append(all, migrate.Target{Shard: shards[k%nShards].Name, Schema: fmt.Sprintf("tenant_%032x", k+1)})
	}
	for k := range sample {
		all = append(all, migrate.Target{Shard: shards[0].Name, Schema: fmt.Sprintf("naive_%06d", k)})
	}
	quiet := testLogger
	if os.Getenv("FLEET_BENCH_LOG") != "" {
		level := slog.LevelInfo
		level.UnmarshalText([]byte(os.Getenv("FLEET_BENCH_LOG")))
		quiet = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	}
	provision := &migrate.Fleet{Shards: shards, Targets: all, Desired: v1, Roles: roles, Logger: quiet}
	start := time.Now()
	rep, err := provision.Run(ctx, migrate.RunOptions{Concurrency: 4})
	if err != nil {
		b.Fatal(err)
	}
	if err := rep.Err(); err != nil {
		b.Fatal(err)
	}
	provisioned := time.Since(start)
	logf("provisioned %d schemas on %d shards in %v (%d plan(s))", len(all), nShards, provisioned.Round(time.Millisecond), rep.Groups)

	fleet := &migrate.Fleet{Shards: shards, Targets: migrate.Discover{Patterns: []string{`tenant\_%`}}, Desired: v2, Roles: roles, Logger: quiet}
	opts := migrate.RunOptions{Concurrency: *benchConcurrency, FailureBudget: -1}
	b.ResetTimer()
	start = time.Now()
	rep, err = fleet.Run(ctx, opts)
	applied := time.Since(start)
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	if err := rep.Err(); err != nil || rep.Total.Applied != n {
		b.Fatalf("apply: %d applied of %d: %v", rep.Total.Applied, n, err)
	}
	var table strings.Builder
	rep.WriteTable(&table)
	logf("change (%s column + index) applied to %d schemas in %v\n%s", *benchChange, n, applied.Round(time.Millisecond), table.String())

	start = time.Now()
	rep, err = fleet.Run(ctx, opts)
	noop := time.Since(start)
	if err != nil {
		b.Fatal(err)
	}
	if err := rep.Err(); err != nil || rep.Total.UpToDate != n {
		b.Fatalf("no-op: %d up to date of %d: %v", rep.Total.UpToDate, n, err)
	}
	table.Reset()
	rep.WriteTable(&table)
	logf("no-op rerun over %d schemas in %v\n%s", n, noop.Round(time.Millisecond), table.String())

	// The naive way, same run, same catalog size: Apply each sample schema
	// in turn (inspect, diff, apply), then again (inspect, diff: no-op).
	db := shards[0].DB
	start = time.Now()
	for k := range sample {
		if _, err := v2.Apply(ctx, db, fmt.Sprintf("naive_%06d", k), roles); err != nil {
			b.Fatal(err)
		}
	}
	naiveApply := time.Since(start) / time.Duration(max(sample, 1))
	start = time.Now()
	for k := range sample {
		res, err := v2.Apply(ctx, db, fmt.Sprintf("naive_%06d", k), roles)
		if err != nil {
			b.Fatal(err)
		}
		if res.Changed() {
			b.Fatalf("naive no-op changed %s", res.Schema)
		}
	}
	naiveNoop := time.Since(start) / time.Duration(max(sample, 1))
	naiveApplyAll := naiveApply * time.Duration(n)
	naiveNoopAll := naiveNoop * time.Duration(n)
	logf("naive, %d schemas in turn: apply %v/schema (%v for %d), no-op %v/schema (%v for %d)",
		sample, naiveApply.Round(10*time.Microsecond), naiveApplyAll.Round(time.Second), n,
		naiveNoop.Round(10*time.Microsecond), naiveNoopAll.Round(time.Second), n)
	logf("speed-up: apply %.1fx, no-op %.1fx", naiveApplyAll.Seconds()/applied.Seconds(), naiveNoopAll.Seconds()/noop.Seconds())

	b.ReportMetric(provisioned.Seconds(), "provision-s")
	b.ReportMetric(applied.Seconds(), "apply-s")
	b.ReportMetric(noop.Seconds(), "noop-s")
	b.ReportMetric(float64(naiveApply.Microseconds())/1000, "naive-apply-ms/schema")
	b.ReportMetric(float64(naiveNoop.Microseconds())/1000, "naive-noop-ms/schema")
	b.ReportMetric(naiveApplyAll.Seconds()/applied.Seconds(), "apply-speedup")
	b.ReportMetric(naiveNoopAll.Seconds()/noop.Seconds(), "noop-speedup")
}
