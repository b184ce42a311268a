package pitr_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"entgo.io/ent/dialect/sql/schema"
	"entgo.io/ent/schema/field"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tenantry/tenantry/examples/app/ent"
	appmigrate "github.com/tenantry/tenantry/examples/app/ent/migrate"
	"github.com/tenantry/tenantry/internal/apptest"
	"github.com/tenantry/tenantry/internal/pgtest"
	"github.com/tenantry/tenantry/migrate"
	"github.com/tenantry/tenantry/tenancy"
	"github.com/tenantry/tenantry/tenancy/backup"
	"github.com/tenantry/tenantry/tenancy/pitr"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// Tenants of the fixture: X and Y in schemas of their own, A and B sharing
// shared_0, all on one archiving shard.
var (
	X = tenancy.MustParseID("eeeeeeee-0000-4000-8000-00000000000e")
	Y = tenancy.MustParseID("ffffffff-0000-4000-8000-00000000000f")
	A = apptest.A
	B = apptest.B
)

const shardName = "pitr0"

// desiredTables is the example app plus a table with an identity sequence,
// so that sequence values are restored to the point in time too.
func desiredTables() []*schema.Table {
	cols := []*schema.Column{
		{Name: "id", Type: field.TypeInt64, Increment: true},
		{Name: "tenant_id", Type: field.TypeUUID, Default: schema.Expr(tenancy.TenantIDDefault)},
		{Name: "kind", Type: field.TypeString, Size: 40},
		{Name: "at", Type: field.TypeTime},
	}
	events := &schema.Table{Name: "events", Columns: cols, PrimaryKey: cols[:1],
		Indexes: []*schema.Index{{Name: "event_tenant_id", Columns: cols[1:2]}}}
	return append(slices.Clone(appmigrate.Tables), events)
}

// tenantTables are the tables in the order rows can be deleted.
var tenantTables = []string{"order_tags", "line_items", "orders", "events", "tags", "customers"}

type fixture struct {
	cluster    *pgtest.Cluster
	shard      *tenancy.Shard
	owner      *pgxpool.Pool // owner role: backups and restores
	super      *pgxpool.Pool // superuser: seeding and comparing, past row-level security
	client     *ent.Client   // scoped client over the shard
	backups    *backup.Manager
	baseDir    string
	scratchDir string
	base       *pitr.BaseBackupInfo
}

func schemaOf(id tenancy.ID) string {
	if id == A || id == B {
		return apptest.SharedSchema
	}
	return id.SchemaName()
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := t.Context()
	// autovacuum off: its commits are transactions after any T the tests
	// take, and "recovery ends before T" needs a WAL with none.
	c, err := pgtest.Start(ctx, pgtest.Options{Name: "pitr", Archive: true, ArchiveTimeout: 5 * time.Second,
		Settings: map[string]string{"autovacuum": "off"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	f := &fixture{cluster: c, baseDir: t.TempDir()}
	// Scratch clusters run as the postgres user when we are root: their
	// parent directory must be reachable by it (t.TempDir's is not).
	if f.scratchDir, err = os.MkdirTemp("", "pitr-test-scratch-"); err != nil {
		t.Fatal(err)
	}
	os.Chmod(f.scratchDir, 0o755)
	t.Cleanup(func() { os.RemoveAll(f.scratchDir) })

	roles := migrate.DefaultRoles()
	if f.shard, err = apptest.PrepareShard(ctx, c, roles, shardName); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.shard.Pool.Close(); f.shard.Admin.Close() })
	desired, err := migrate.NewDesired(desiredTables())
	if err != nil {
		t.Fatal(err)
	}
	var placements []*tenancy.Placement
	for _, id := range []tenancy.ID{X, Y, A, B} {
		if _, err := apptest.ApplySchema(ctx, c, roles, desired, schemaOf(id)); err != nil {
			t.Fatal(err)
		}
		p, err := tenancy.NewPlacement(id, f.shard, schemaOf(id), tenancy.DefaultLimits)
		if err != nil {
			t.Fatal(err)
		}
		placements = append(placements, p)
	}
	unscoped, err := tenancy.NewPlacement(tenancy.ID{}, f.shard, apptest.SharedSchema, tenancy.DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	f.client = ent.NewClient(ent.Driver(tenancy.NewDriver(tenancy.NewStaticResolver(unscoped, placements...))))
	f.owner = newPool(t, c.DSN(roles.Owner, apptest.Database))
	f.super = newPool(t, c.DSN("postgres", apptest.Database))
	store, err := backup.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if f.backups, err = backup.New(backup.Config{Store: store, Desired: desired}); err != nil {
		t.Fatal(err)
	}
	return f
}

func newPool(t *testing.T, dsn string) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 8
	p, err := pgxpool.NewWithConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// seed writes batch `batch` of a tenant's rows: n customers, two orders
// each, two line items per order, tags, order tags and events.
func (f *fixture) seed(t *testing.T, id tenancy.ID, batch string, n int) {
	t.Helper()
	q := func(table string) string { return schemaOf(id) + "." + table }
	stmts := []string{
		`INSERT INTO ` + q("customers") + ` (id, tenant_id, name, email, created_at)
		 SELECT gen_random_uuid(), $1, e'name\t' || $2 || ' ' || i, $2 || '-' || i || '@example.test', now() FROM generate_series(1, $3::int) i`,
		`INSERT INTO ` + q("orders") + ` (id, tenant_id, number, status, total_cents, note, created_at, customer_id)
		 SELECT gen_random_uuid(), $1, 'O-' || c.email || '-' || k, 'placed', k * 100, NULL, now(), c.id
		 FROM ` + q("customers") + ` c, generate_series(1, 2) k WHERE c.tenant_id = $1 AND c.email LIKE $2 || '-%'`,
		`INSERT INTO ` + q("line_items") + ` (id, tenant_id, sku, quantity, unit_price_cents, order_id)
		 SELECT gen_random_uuid(), $1, 'SKU-' || k, k, 100 * k, o.id
		 FROM ` + q("orders") + ` o, generate_series(1, 2) k WHERE o.tenant_id = $1 AND o.number LIKE 'O-' || $2 || '-%'`,
		`INSERT INTO ` + q("tags") + ` (id, tenant_id, name) SELECT gen_random_uuid(), $1, $2 || ' tag ' || k FROM generate_series(1, 3) k`,
		`INSERT INTO ` + q("order_tags") + ` (tenant_id, created_at, order_id, tag_id)
		 SELECT $1, now(), o.id, tg.id FROM ` + q("orders") + ` o JOIN ` + q("tags") + ` tg ON tg.tenant_id = $1 AND tg.name LIKE $2 || ' tag %'
		 WHERE o.tenant_id = $1 AND o.number LIKE 'O-' || $2 || '-%' AND o.number LIKE '%-1'`,
		`INSERT INTO ` + q("events") + ` (tenant_id, kind, at) SELECT $1, $2, now() FROM generate_series(1, $3::int)`,
	}
	args := [][]any{{id, batch, n}, {id, batch}, {id, batch}, {id, batch}, {id, batch}, {id, batch, n}}
	tx, err := f.super.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(t.Context())
	for i, s := range stmts {
		if _, err := tx.Exec(t.Context(), s, args[i]...); err != nil {
			t.Fatalf("seed %s %s: %v", id, batch, err)
		}
	}
	if err := tx.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// deleteAll deletes every row of a tenant.
func (f *fixture) deleteAll(t *testing.T, id tenancy.ID) {
	t.Helper()
	for _, table := range tenantTables {
		if _, err := f.super.Exec(t.Context(), "DELETE FROM "+schemaOf(id)+"."+table+" WHERE tenant_id = $1", id); err != nil {
			t.Fatal(err)
		}
	}
}

// state is a tenant's rows, table by table, as sorted row texts, and the
// sequences of its schema.
type state struct {
	tables    map[string][]string
	sequences map[string]int64
}

func (f *fixture) dump(t *testing.T, id tenancy.ID) state {
	t.Helper()
	ctx := t.Context()
	s := state{tables: map[string][]string{}, sequences: map[string]int64{}}
	for _, table := range tenantTables {
		rows, err := f.super.Query(ctx, "SELECT ROW(t.*)::text FROM "+schemaOf(id)+"."+table+" t WHERE tenant_id = $1 ORDER BY 1", id)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var r string
			if err := rows.Scan(&r); err != nil {
				t.Fatal(err)
			}
			s.tables[table] = append(s.tables[table], r)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := f.super.Query(ctx, "SELECT sequencename::text, coalesce(last_value, 0) FROM pg_sequences WHERE schemaname = $1", schemaOf(id))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		var v int64
		if err := rows.Scan(&name, &v); err != nil {
			t.Fatal(err)
		}
		s.sequences[name] = v
	}
	return s
}

func (s state) rows() int {
	n := 0
	for _, r := range s.tables {
		n += len(r)
	}
	return n
}

// compareTables reports every table whose rows differ.
func compareTables(t *testing.T, what string, got, want state) {
	t.Helper()
	for _, table := range tenantTables {
		if !slices.Equal(got.tables[table], want.tables[table]) {
			t.Errorf("%s: table %s: %d rows, want %d; first got %q, first want %q", what, table,
				len(got.tables[table]), len(want.tables[table]), first(got.tables[table]), first(want.tables[table]))
		}
	}
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

// serverNow returns the server's clock.
func (f *fixture) serverNow(t *testing.T) time.Time {
	t.Helper()
	var now time.Time
	if err := f.super.QueryRow(t.Context(), "SELECT clock_timestamp()").Scan(&now); err != nil {
		t.Fatal(err)
	}
	return now
}

// switchAndWait closes the current WAL segment and waits until it is
// archived, as archive_timeout would at the latest.
func (f *fixture) switchAndWait(t *testing.T) {
	t.Helper()
	ctx := t.Context()
	var seg string
	if err := f.super.QueryRow(ctx, "SELECT pg_walfile_name(pg_switch_wal())").Scan(&seg); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		var last *string
		if err := f.super.QueryRow(ctx, "SELECT last_archived_wal FROM pg_stat_archiver").Scan(&last); err != nil {
			t.Fatal(err)
		}
		if last != nil && len(*last) == 24 && *last >= seg {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("segment %s not archived within a minute (last archived: %v)", seg, last)
		}
	}
}

// reader reads other tenants through the scoped client until stopped, and
// counts reads and errors.
type reader struct {
	reads, errs atomic.Int64
	lastErr     atomic.Value
	stop        chan struct{}
	done        sync.WaitGroup
}

func (f *fixture) startReader(ids ...tenancy.ID) *reader {
	r := &reader{stop: make(chan struct{})}
	for _, id := range ids {
		r.done.Go(func() {
			ctx := tenancy.WithTenant(context.Background(), id)
			for {
				select {
				case <-r.stop:
					return
				default:
				}
				qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				_, err := f.client.Customer.Query().Count(qctx)
				if err == nil {
					_, err = f.client.Order.Query().Limit(20).All(qctx)
				}
				cancel()
				if err != nil {
					r.errs.Add(1)
					r.lastErr.Store(fmt.Sprintf("tenant %s: %v", id, err))
				} else {
					r.reads.Add(1)
				}
				time.Sleep(2 * time.Millisecond)
			}
		})
	}
	return r
}

func (r *reader) finish(t *testing.T) {
	t.Helper()
	close(r.stop)
	r.done.Wait()
	if r.errs.Load() > 0 || r.reads.Load() == 0 {
		t.Errorf("other tenants during the restores: %d reads, %d errors (last: %v)", r.reads.Load(), r.errs.Load(), r.lastErr.Load())
	}
	t.Logf("other tenants served during the restores: %d scoped reads, no errors", r.reads.Load())
}

func (f *fixture) restorer(t *testing.T, reg prometheus.Registerer) *pitr.Restorer {
	t.Helper()
	metrics, err := pitr.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	r, err := pitr.New(pitr.Config{
		Backups: f.backups, BaseBackups: f.baseDir, WALArchive: f.cluster.ArchiveDir(),
		ScratchDir: f.scratchDir, Metrics: metrics,
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func source(id tenancy.ID) pitr.Source {
	mode := backup.ModeSchema
	if schemaOf(id) == apptest.SharedSchema {
		mode = backup.ModeShared
	}
	return pitr.Source{Shard: shardName, Database: apptest.Database, Schema: schemaOf(id), Mode: mode}
}

func (f *fixture) target(id tenancy.ID) backup.Target {
	s := source(id)
	return backup.Target{Shard: shardName, DB: f.owner, Schema: s.Schema, Mode: s.Mode}
}

func (f *fixture) assertScratchGone(t *testing.T) {
	t.Helper()
	entries, err := os.ReadDir(f.scratchDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) > 0 {
		t.Errorf("scratch directory not removed: %v", entries)
	}
}

// TestRestoreAt is the acceptance test of issue 6's point-in-time item:
// write, note T, write more, delete everything, restore to T: exactly the
// rows present at T come back, for an own-schema tenant and for a tenant
// of a shared schema (only its rows: its neighbour's are untouched), while
// other tenants keep being served.
func TestRestoreAt(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	f.seed(t, Y, "y", 20)
	f.seed(t, B, "b1", 20)

	base, err := pitr.BaseBackup(ctx, pitr.BaseBackupOptions{Shard: shardName, DSN: f.cluster.SuperuserDSN(), Dir: f.baseDir})
	if err != nil {
		t.Fatal(err)
	}
	if base.StartLSN == "" || base.EndLSN == "" || base.Bytes == 0 || !base.FinishedAt.After(base.StartedAt) {
		t.Fatalf("base backup manifest incomplete: %+v", base)
	}
	if list, err := pitr.BaseBackups(f.baseDir, shardName); err != nil || len(list) != 1 || list[0].Label != base.Label {
		t.Fatalf("BaseBackups = %v, %v; want the one just taken", list, err)
	}

	// Rows present at T: some written before the base backup would not
	// do, so all of them come after it, from WAL.
	f.seed(t, X, "x1", 30)
	f.seed(t, A, "a1", 25)
	f.seed(t, X, "x2", 10)
	time.Sleep(20 * time.Millisecond)
	at := f.serverNow(t)
	time.Sleep(20 * time.Millisecond)
	wantX, wantA := f.dump(t, X), f.dump(t, A)
	if wantX.rows() == 0 || wantA.rows() == 0 {
		t.Fatal("nothing seeded")
	}

	// After T: more rows, then everything of X and A deleted; B writes on.
	f.seed(t, X, "x3", 15)
	f.seed(t, A, "a2", 15)
	f.seed(t, B, "b2", 10)
	afterT := f.dump(t, X)
	f.deleteAll(t, X)
	f.deleteAll(t, A)
	wantB, wantY := f.dump(t, B), f.dump(t, Y)
	if got := f.dump(t, X); got.rows() != 0 {
		t.Fatalf("X still has %d rows", got.rows())
	}
	// RPO: the production path relies on archive_timeout (≤ 60 s) to ship
	// the WAL up to T; the test does not wait for it.
	f.switchAndWait(t)

	reg := prometheus.NewRegistry()
	r := f.restorer(t, reg)
	rd := f.startReader(B, Y)

	t.Run("own schema", func(t *testing.T) {
		var phases []string
		res, err := r.RestoreAt(ctx, X, at, source(X), f.target(X), pitr.Options{
			Restore:  backup.RestoreOptions{Replace: true},
			Progress: func(p pitr.Progress) { phases = append(phases, p.Phase) },
		})
		if err != nil {
			t.Fatal(err)
		}
		compareTables(t, "X restored to T", f.dump(t, X), wantX)
		got := f.dump(t, X)
		// Sequences: at least the value at T (no id at T is handed out
		// again), at most one WAL-logged batch of 32 above it (PostgreSQL
		// logs sequence values ahead), and below the value after T.
		for name, v := range wantX.sequences {
			if g := got.sequences[name]; g < v || g > v+32 {
				t.Errorf("sequence %s = %d, want %d..%d (value at T; after T it was %d)", name, g, v, v+32, afterT.sequences[name])
			}
		}
		if res.BaseBackup.Label != base.Label || res.Restore.Retired == "" || res.Restore.Rows != int64(wantX.rows()) {
			t.Errorf("result: base %s, retired %q, rows %d (want %d)", res.BaseBackup.Label, res.Restore.Retired, res.Restore.Rows, wantX.rows())
		}
		if res.RecoveredTo.IsZero() || res.RecoveredTo.After(at) || at.Sub(res.RecoveredTo) > time.Second {
			t.Errorf("recovered to %s, want the last commit before T = %s", res.RecoveredTo, at)
		}
		if want := []string{pitr.PhaseExtract, pitr.PhaseRecover, pitr.PhaseExport, pitr.PhaseCleanup, pitr.PhaseRestore}; !slices.Equal(phases, want) {
			t.Errorf("progress phases %v, want %v", phases, want)
		}
		t.Logf("own schema: %d rows restored to %s in %s (phases %v)", res.Restore.Rows, at.Format(time.RFC3339Nano), res.Duration.Round(time.Millisecond), res.Phases)
		f.assertScratchGone(t)
	})

	t.Run("shared schema", func(t *testing.T) {
		seqBefore := f.dump(t, A).sequences
		res, err := r.RestoreAt(ctx, A, at, source(A), f.target(A), pitr.Options{Restore: backup.RestoreOptions{Replace: true}})
		if err != nil {
			t.Fatal(err)
		}
		compareTables(t, "A restored to T", f.dump(t, A), wantA)
		compareTables(t, "B, sharing A's schema", f.dump(t, B), wantB)
		// Shared sequences are never lowered: other tenants use them.
		for name, v := range f.dump(t, A).sequences {
			if v < seqBefore[name] {
				t.Errorf("shared sequence %s lowered from %d to %d", name, seqBefore[name], v)
			}
		}
		if res.Export.Rows() != int64(wantA.rows()) {
			t.Errorf("export holds %d rows, want A's %d at T", res.Export.Rows(), wantA.rows())
		}
		f.assertScratchGone(t)
	})
	t.Run("clone", func(t *testing.T) {
		z := tenancy.MustParseID("12121212-0000-4000-8000-000000000012")
		_, err := r.RestoreAt(ctx, X, at, source(X), backup.Target{Shard: shardName, DB: f.owner, Schema: z.SchemaName(), Mode: backup.ModeSchema},
			pitr.Options{Restore: backup.RestoreOptions{Tenant: z}})
		if err != nil {
			t.Fatal(err)
		}
		want := state{tables: map[string][]string{}}
		for table, rows := range wantX.tables {
			for _, row := range rows {
				want.tables[table] = append(want.tables[table], strings.ReplaceAll(row, X.String(), z.String()))
			}
			slices.Sort(want.tables[table])
		}
		compareTables(t, "clone of X at T", f.dump(t, z), want)
		f.assertScratchGone(t)
	})

	t.Run("panic", func(t *testing.T) {
		before := f.dump(t, X)
		func() {
			defer func() {
				if p := recover(); p != "boom" {
					t.Errorf("recovered %v, want the callback's panic", p)
				}
			}()
			r.RestoreAt(ctx, X, at, source(X), f.target(X), pitr.Options{
				Restore: backup.RestoreOptions{Replace: true},
				Progress: func(p pitr.Progress) {
					if p.Phase == pitr.PhaseExport { // the scratch cluster is up
						panic("boom")
					}
				},
			})
		}()
		f.assertScratchGone(t)
		compareTables(t, "X after a panic", f.dump(t, X), before)
		if got := counterValue(t, reg, "tenantry_pitr_restores_total", "panic"); got != 1 {
			t.Errorf("tenantry_pitr_restores_total{result=panic} = %v, want 1", got)
		}
	})
	rd.finish(t)
	compareTables(t, "Y, in its own schema", f.dump(t, Y), wantY)
	if got := counterValue(t, reg, "tenantry_pitr_restores_total", "ok"); got != 3 {
		t.Errorf("tenantry_pitr_restores_total{result=ok} = %v, want 3", got)
	}

	t.Run("errors", func(t *testing.T) {
		// The times are taken right before each restore: "now", taken
		// earlier, could be archived by archive_timeout (5 s) while the
		// other cases run on a slow machine.
		for _, tt := range []struct {
			name string
			at   func(*testing.T) time.Time
			want error
		}{
			{"future", func(*testing.T) time.Time { return time.Now().Add(time.Hour) }, pitr.ErrFuture},
			{"before the first base backup", func(*testing.T) time.Time { return base.StartedAt.Add(-time.Second) }, pitr.ErrNoBaseBackup},
			// Nothing archived after now: refused before any recovery.
			{"not archived yet", f.serverNow, pitr.ErrNotArchived},
		} {
			t.Run(tt.name, func(t *testing.T) {
				before := f.dump(t, X)
				_, err := r.RestoreAt(ctx, X, tt.at(t), source(X), f.target(X), pitr.Options{Restore: backup.RestoreOptions{Replace: true}})
				if !errors.Is(err, tt.want) {
					t.Fatalf("err = %v, want %v", err, tt.want)
				}
				compareTables(t, "X after a refused restore", f.dump(t, X), before)
			})
		}
		// WAL archived after T but no transaction after T in it: recovery
		// runs, ends before the target, and says so.
		t.Run("recovery ends before T", func(t *testing.T) {
			at := f.serverNow(t)
			time.Sleep(20 * time.Millisecond)
			if _, err := f.super.Exec(ctx, "SELECT pg_logical_emit_message(false, 'pitr-test', 'no transaction')"); err != nil {
				t.Fatal(err)
			}
			f.switchAndWait(t)
			_, err := r.RestoreAt(ctx, X, at, source(X), f.target(X), pitr.Options{Restore: backup.RestoreOptions{Replace: true}})
			var rerr *pitr.RecoveryError
			if !errors.Is(err, pitr.ErrNotArchived) || !errors.As(err, &rerr) || !strings.Contains(rerr.Log, "recovery ended before configured recovery target was reached") {
				t.Fatalf("err = %v, want a RecoveryError matching ErrNotArchived with the server log", err)
			}
			f.assertScratchGone(t)
		})
	})
}

func counterValue(t *testing.T, reg *prometheus.Registry, name, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("metric %s{result=%q} not found", name, result)
	return 0
}
