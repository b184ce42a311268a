package tenancy_test

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net/url"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	entsql "entgo.io/ent/dialect/sql"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenantry/tenantry/examples/app/ent"
	"github.com/tenantry/tenantry/internal/apptest"
	"github.com/tenantry/tenantry/tenancy"
)

// pointReadSQL is the statement Ent generates for Customer.Get under the
// tenant interceptor; raw_pgx runs it directly.
const pointReadSQL = `SELECT "customers"."id", "customers"."tenant_id", "customers"."name", "customers"."email", "customers"."created_at" FROM "customers" WHERE "customers"."id" = $1 AND "customers"."tenant_id" = $2 LIMIT 2`

// pointReadEnv is a customer of tenant C (own schema on shard 0) and the
// ways to read it: raw pgx, Ent on pgx's database/sql adapter (no tenancy,
// search_path in the connection string), the tenancy-scoped client, and the
// same driver through the escape hatch (admin role, no row-level security).
type pointReadEnv struct {
	ctx    context.Context
	id     uuid.UUID
	raw    *pgxpool.Pool
	stdlib *ent.Client
	scoped *ent.Client
	admin  *ent.Client     // scoped driver, unscoped context: admin role
	uctx   context.Context // Unscoped(ctx) keeping tenant C for routing
}

func newPointReadEnv(b *testing.B, conns int) *pointReadEnv {
	env := apptest.New(b)
	ctx := apptest.Ctx(apptest.C)
	cu, err := env.Client.Customer.Create().SetName("bench").SetEmail(uuid.NewString() + "@bench.test").Save(ctx)
	if err != nil {
		b.Fatal(err)
	}
	// Baselines connect as the admin role (row-level security bypassed) with
	// the schema on the connection: what an unscoped app would do.
	dsn, err := url.Parse(env.Clusters[0].DSN(env.Roles.Admin, apptest.Database))
	if err != nil {
		b.Fatal(err)
	}
	q := dsn.Query()
	q.Set("search_path", apptest.C.SchemaName())
	dsn.RawQuery = q.Encode()
	cfg, err := pgxpool.ParseConfig(dsn.String())
	if err != nil {
		b.Fatal(err)
	}
	cfg.MaxConns = int32(conns)
	raw, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(raw.Close)
	db, err := sql.Open("pgx", dsn.String())
	if err != nil {
		b.Fatal(err)
	}
	db.SetMaxOpenConns(conns)
	db.SetMaxIdleConns(conns)
	b.Cleanup(func() { db.Close() })

	app, err := apptest.NewPool(ctx, env.Clusters[0].DSN(env.Roles.App, apptest.Database), int32(conns))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(app.Close)
	adm, err := apptest.NewPool(ctx, env.Clusters[0].DSN(env.Roles.Admin, apptest.Database), int32(conns))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(adm.Close)
	p, err := tenancy.NewPlacement(apptest.C, &tenancy.Shard{Name: "bench", Pool: app, Admin: adm}, apptest.C.SchemaName(), tenancy.DefaultLimits)
	if err != nil {
		b.Fatal(err)
	}
	return &pointReadEnv{
		ctx:    ctx,
		id:     cu.ID,
		raw:    raw,
		stdlib: ent.NewClient(ent.Driver(entsql.OpenDB("postgres", db))),
		scoped: ent.NewClient(ent.Driver(tenancy.NewDriver(tenancy.NewStaticResolver(nil, p)))),
		uctx:   quietUnscoped(ctx),
		admin:  ent.NewClient(ent.Driver(tenancy.NewDriver(tenancy.NewStaticResolver(nil, p)))),
	}
}

func (e *pointReadEnv) variants() []struct {
	name string
	read func() error
} {
	readEnt := func(c *ent.Client) func() error {
		return func() error {
			cu, err := c.Customer.Get(e.ctx, e.id)
			if err == nil && cu.ID != e.id {
				err = fmt.Errorf("read %s, want %s", cu.ID, e.id)
			}
			return err
		}
	}
	return []struct {
		name string
		read func() error
	}{
		{"raw_pgx", func() error {
			var (
				id, tenant  uuid.UUID
				name, email string
				created     sql.NullTime
			)
			return e.raw.QueryRow(e.ctx, pointReadSQL, e.id, apptest.C).Scan(&id, &tenant, &name, &email, &created)
		}},
		{"ent_stdlib", readEnt(e.stdlib)},
		{"tenancy", readEnt(e.scoped)},
		// The scoped driver on the admin role (BYPASSRLS): what row-level
		// security costs is tenancy minus this.
		{"tenancy_bypassrls", func() error {
			_, err := e.admin.Customer.Get(e.uctx, e.id)
			return err
		}},
	}
}

// BenchmarkPointRead reads one row by primary key, sequentially, through
// raw pgx, Ent on database/sql and the tenancy-scoped client.
func BenchmarkPointRead(b *testing.B) {
	e := newPointReadEnv(b, 1)
	for _, v := range e.variants() {
		b.Run(v.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := v.read(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPointReadParallel is BenchmarkPointRead from GOMAXPROCS*4
// goroutines over a pool of 8 connections.
func BenchmarkPointReadParallel(b *testing.B) {
	e := newPointReadEnv(b, 8)
	for _, v := range e.variants() {
		b.Run(v.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(4)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := v.read(); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkPointReadRatio interleaves the variants of BenchmarkPointRead in
// one loop, so that all of them meet the same machine noise, and reports each
// one's mean latency and the ratios the targets are stated in:
// tenancy/ent_stdlib (target ≤ 1.15), tenancy/raw_pgx, and
// bypassrls/ent_stdlib (the driver without row-level security).
func BenchmarkPointReadRatio(b *testing.B) {
	e := newPointReadEnv(b, 1)
	reportRatios(b, e, 1)
}

// BenchmarkPointReadParallelRatio is BenchmarkPointReadRatio from 8
// goroutines over 8 connections per variant.
func BenchmarkPointReadParallelRatio(b *testing.B) {
	e := newPointReadEnv(b, 8)
	reportRatios(b, e, 8)
}

func reportRatios(b *testing.B, e *pointReadEnv, goroutines int) {
	vs := e.variants()
	var (
		mu    sync.Mutex
		total = make([]time.Duration, len(vs))
		n     atomic.Int64
	)
	work := func(pb func() bool) {
		local := make([]time.Duration, len(vs))
		for pb() {
			for i, v := range vs {
				t0 := time.Now()
				if err := v.read(); err != nil {
					b.Error(err)
					return
				}
				local[i] += time.Since(t0)
			}
			n.Add(1)
		}
		mu.Lock()
		for i := range local {
			total[i] += local[i]
		}
		mu.Unlock()
	}
	if goroutines == 1 {
		work(b.Loop)
	} else {
		b.SetParallelism((goroutines + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
		b.RunParallel(func(pb *testing.PB) { work(pb.Next) })
	}
	if n.Load() == 0 {
		return
	}
	for i, v := range vs {
		b.ReportMetric(float64(total[i].Nanoseconds())/float64(n.Load()), v.name+"-ns/read")
	}
	b.ReportMetric(float64(total[2])/float64(total[1]), "tenancy/ent_stdlib")
	b.ReportMetric(float64(total[3])/float64(total[1]), "bypassrls/ent_stdlib")
	b.ReportMetric(float64(total[2])/float64(total[0]), "tenancy/raw_pgx")
}

// quietUnscoped returns an Unscoped context without the log line, which
// would land in the middle of the benchmark output.
func quietUnscoped(ctx context.Context) context.Context {
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.DiscardHandler))
	defer slog.SetDefault(prev)
	return tenancy.Unscoped(ctx, "benchmark: row-level security cost")
}
