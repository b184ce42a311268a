package backup

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"log/slog"
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

	appmigrate "github.com/tenantry/tenantry/examples/app/ent/migrate"
	"github.com/tenantry/tenantry/internal/apptest"
	"github.com/tenantry/tenantry/internal/pgtest"
	"github.com/tenantry/tenantry/migrate"
	"github.com/tenantry/tenantry/tenancy"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// The fixture: apptest's two shards (A, B in shared_0 and C in its own
// schema on shard 0; D in its own schema on shard 1), with shared_0 and C's
// schema migrated to an extended desired state that adds a table with an
// identity sequence and many column types (events) and a global table
// (settings). D stays at the example app's state, to restore an archive
// that is behind.
type fixture struct {
	env      *apptest.Env
	desired  *migrate.Desired // example app + events + settings
	appOnly  *migrate.Desired // example app
	owner    []*pgxpool.Pool  // owner role, per shard
	seeded   map[tenancy.ID]int
	workload *workload
}

var (
	fxOnce sync.Once
	fx     *fixture
	fxErr  error
)

func extendedTables() []*schema.Table {
	customers := appmigrate.CustomersTable
	eventCols := []*schema.Column{
		{Name: "id", Type: field.TypeInt64, Increment: true},
		{Name: "tenant_id", Type: field.TypeUUID, Default: schema.Expr(tenancy.TenantIDDefault)},
		{Name: "kind", Type: field.TypeString, Size: 40},
		{Name: "payload", Type: field.TypeJSON, Nullable: true},
		{Name: "amount", Type: field.TypeFloat64},
		{Name: "data", Type: field.TypeBytes, Nullable: true},
		{Name: "at", Type: field.TypeTime},
		{Name: "note", Type: field.TypeString, Nullable: true, Size: 100000},
		{Name: "customer_id", Type: field.TypeUUID, Nullable: true},
	}
	events := &schema.Table{
		Name: "events", Columns: eventCols, PrimaryKey: eventCols[:1],
		ForeignKeys: []*schema.ForeignKey{{
			Symbol: "events_customers_events", Columns: eventCols[8:9], RefTable: customers,
			RefColumns: customers.Columns[:1], OnDelete: schema.SetNull,
		}},
		Indexes: []*schema.Index{{Name: "event_tenant_id", Columns: eventCols[1:2]}},
	}
	settingCols := []*schema.Column{
		{Name: "key", Type: field.TypeString, Size: 64},
		{Name: "value", Type: field.TypeString, Nullable: true},
	}
	settings := &schema.Table{Name: "settings", Columns: settingCols, PrimaryKey: settingCols[:1]}
	return append(slices.Clone(appmigrate.Tables), events, settings)
}

func getFixture(t *testing.T) *fixture {
	t.Helper()
	env := apptest.New(t)
	fxOnce.Do(func() { fx, fxErr = newFixture(env) })
	if fxErr != nil {
		t.Fatalf("fixture: %v", fxErr)
	}
	return fx
}

func newFixture(env *apptest.Env) (*fixture, error) {
	ctx := context.Background()
	desired, err := migrate.NewDesired(extendedTables())
	if err != nil {
		return nil, err
	}
	f := &fixture{env: env, desired: desired, appOnly: env.Desired, seeded: map[tenancy.ID]int{}}
	for _, s := range []string{apptest.SharedSchema, apptest.C.SchemaName()} {
		if _, err := apptest.ApplySchema(ctx, env.Clusters[0], env.Roles, desired, s); err != nil {
			return nil, err
		}
	}
	for _, c := range env.Clusters {
		cfg, err := pgxpool.ParseConfig(c.DSN(env.Roles.Owner, apptest.Database))
		if err != nil {
			return nil, err
		}
		cfg.MaxConns = 10
		p, err := pgxpool.NewWithConfig(ctx, cfg)
		if err != nil {
			return nil, err
		}
		f.owner = append(f.owner, p)
	}
	for _, s := range []struct {
		id     tenancy.ID
		n      int
		events bool
	}{{apptest.A, 300, true}, {apptest.B, 60, true}, {apptest.C, 300, true}, {apptest.D, 40, false}} {
		p := env.Placements[s.id]
		shard := 0
		if p.Shard == env.Shards[1] {
			shard = 1
		}
		if err := seed(ctx, f.owner[shard], p.Schema, s.id, s.n, s.events); err != nil {
			return nil, fmt.Errorf("seed %s: %w", s.id, err)
		}
		f.seeded[s.id] = s.n
	}
	// A global table in C's own schema.
	if _, err := f.owner[0].Exec(ctx, `INSERT INTO `+qualified(apptest.C.SchemaName(), "settings")+
		` VALUES ('theme', 'dark'), ('tab', e'a\tb'), ('null', NULL)`); err != nil {
		return nil, err
	}
	return f, nil
}

// seed writes n customers with orders, line items, tags and (optionally)
// events for a tenant, with values that stress COPY's text format.
func seed(ctx context.Context, pool *pgxpool.Pool, schemaName string, tenant tenancy.ID, n int, events bool) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	if err := prepareTx(ctx, tx, tenant.String(), 5000); err != nil {
		return err
	}
	q := func(t string) string { return qualified(schemaName, t) }
	stmts := []string{
		`INSERT INTO ` + q("customers") + ` (id, tenant_id, name, email, created_at)
		 SELECT gen_random_uuid(), $1, CASE i % 7 WHEN 0 THEN e'tab\there, newline\nthere, back\\slash "quoted" ''single'''
		   WHEN 1 THEN 'Zoë Ünïcødé 🚀' ELSE 'customer ' || i END,
		   'c' || i || '@example.test', timestamptz '2025-01-01 00:00:00+00' + i * interval '1 minute 0.123456 second'
		 FROM generate_series(1, $2::int) i`,
		`INSERT INTO ` + q("orders") + ` (id, tenant_id, number, status, total_cents, note, created_at, customer_id)
		 SELECT gen_random_uuid(), $1, 'O-' || c.email || '-' || k,
		   (ARRAY['draft','placed','shipped','cancelled'])[1 + (k + length(c.email)) % 4], (k * 1999 + length(c.email))::bigint,
		   CASE WHEN k = 1 THEN NULL ELSE e'note\\N not null' END, c.created_at + k * interval '1 hour', CASE WHEN k = 2 AND length(c.email) % 3 = 0 THEN NULL ELSE c.id END
		 FROM ` + q("customers") + ` c, generate_series(1, 2) k WHERE c.tenant_id = $1`,
		`INSERT INTO ` + q("line_items") + ` (id, tenant_id, sku, quantity, unit_price_cents, order_id)
		 SELECT gen_random_uuid(), $1, 'SKU-' || k, k, 100 * k, o.id
		 FROM ` + q("orders") + ` o, generate_series(1, 2) k WHERE o.tenant_id = $1`,
		`INSERT INTO ` + q("tags") + ` (id, tenant_id, name) SELECT gen_random_uuid(), $1, 'tag ' || k FROM generate_series(1, 5) k`,
		`INSERT INTO ` + q("order_tags") + ` (tenant_id, created_at, order_id, tag_id)
		 SELECT $1, o.created_at, o.id, t.id FROM ` + q("orders") + ` o JOIN ` + q("tags") + ` t ON t.tenant_id = $1
		 WHERE o.tenant_id = $1 AND (hashtext(o.number)::bigint + hashtext(t.name)) % 3 = 0`,
	}
	args := [][]any{{tenant, n}, {tenant}, {tenant}, {tenant}, {tenant}}
	if events {
		stmts = append(stmts, `INSERT INTO `+q("events")+` (tenant_id, kind, payload, amount, data, at, note, customer_id)
		 SELECT $1, 'kind-' || (i % 5), CASE WHEN i % 4 = 0 THEN NULL ELSE jsonb_build_object('i', i, 'nested', jsonb_build_array(1.5, 'x', NULL), 's', e'q"\\') END,
		   CASE WHEN i = 1 THEN 2.5 ELSE i / 7.0 + 0.1 END, CASE WHEN i % 3 = 0 THEN NULL ELSE decode(md5(i::text), 'hex') || '\x00ff'::bytea END,
		   timestamptz '2025-06-01 12:00:00.123456+02' + i * interval '1 second', repeat('n', i % 50),
		   (SELECT id FROM `+q("customers")+` c WHERE c.tenant_id = $1 ORDER BY c.email OFFSET (i % 10) LIMIT 1)
		 FROM generate_series(1, $2::int) i`)
		args = append(args, []any{tenant, n})
	}
	for i, s := range stmts {
		if _, err := tx.Exec(ctx, s, args[i]...); err != nil {
			return fmt.Errorf("%s: %w", firstWords(s), err)
		}
	}
	return tx.Commit(ctx)
}

// snapshotOf is a tenant's data, table by table, as row texts ordered by
// primary key, and the sequences of the schema.
type snapshotOf struct {
	tables    map[string][]string
	sequences map[string]string
}

// dump reads a tenant's rows in a schema (only its rows of tenant tables;
// all rows of global tables unless onlyTenant), ordered by primary key (by
// the whole row where there is none). withoutTenant leaves tenant_id out,
// to compare a clone with its source.
func dump(t *testing.T, pool *pgxpool.Pool, schemaName string, tenant tenancy.ID, onlyTenant, withoutTenant bool) snapshotOf {
	t.Helper()
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if err := prepareTx(ctx, tx, tenant.String(), 5000); err != nil {
		t.Fatal(err)
	}
	tables, err := readTables(ctx, tx, schemaName)
	if err != nil {
		t.Fatal(err)
	}
	out := snapshotOf{tables: map[string][]string{}, sequences: map[string]string{}}
	for _, tb := range tables {
		if onlyTenant && !tb.tenant {
			continue
		}
		var cols []Column
		for _, c := range tb.columns {
			if !(withoutTenant && c.Name == tenantColumn) {
				cols = append(cols, c)
			}
		}
		var pk []string
		rows, err := tx.Query(ctx, `SELECT a.attname::text FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
			JOIN pg_namespace n ON n.oid = c.relnamespace JOIN unnest(i.indkey) WITH ORDINALITY k(attnum, ord) ON true
			JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
			WHERE i.indisprimary AND n.nspname = $1 AND c.relname = $2 ORDER BY k.ord`, schemaName, tb.name)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var c string
			rows.Scan(&c)
			pk = append(pk, ident(c))
		}
		rows.Close()
		order := "1"
		if len(pk) > 0 {
			order = strings.Join(pk, ", ")
		}
		q := "SELECT ROW(" + columnList(cols) + ")::text FROM " + qualified(schemaName, tb.name)
		if tb.tenant {
			q += " WHERE tenant_id = " + tenantExpr
		}
		rows, err = tx.Query(ctx, q+" ORDER BY "+order)
		if err != nil {
			t.Fatalf("dump %s: %v", tb.name, err)
		}
		var texts []string
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			texts = append(texts, s)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		out.tables[tb.name] = texts
	}
	seqs, err := readSequences(ctx, tx, schemaName)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range seqs {
		out.sequences[s.Name] = fmt.Sprintf("%d/%t", s.LastValue, s.IsCalled)
	}
	return out
}

// equalTables compares two dumps table by table, row by row.
func equalTables(t *testing.T, what string, want, got map[string][]string) {
	t.Helper()
	names := map[string]bool{}
	for n := range want {
		names[n] = true
	}
	for n := range got {
		names[n] = true
	}
	for n := range names {
		w, g := want[n], got[n]
		if len(w) != len(g) {
			t.Errorf("%s: table %s: %d rows, want %d", what, n, len(g), len(w))
			continue
		}
		for i := range w {
			if w[i] != g[i] {
				t.Errorf("%s: table %s row %d:\n got  %s\n want %s", what, n, i, g[i], w[i])
				break
			}
		}
	}
}

// sortedRows returns the dump's tables with their rows sorted as text.
func sortedRows(tables map[string][]string) map[string][]string {
	out := make(map[string][]string, len(tables))
	for n, rows := range tables {
		out[n] = slices.Sorted(slices.Values(rows))
	}
	return out
}

func rowCount(s snapshotOf) int {
	n := 0
	for _, r := range s.tables {
		n += len(r)
	}
	return n
}

// schemasLike lists the schemas of a shard whose name starts with prefix
// (but PostgreSQL's own, pg_*, whose temporary ones come and go).
func schemasLike(t *testing.T, pool *pgxpool.Pool, prefix string) []string {
	t.Helper()
	rows, err := pool.Query(context.Background(), "SELECT nspname::text FROM pg_namespace WHERE starts_with(nspname, $1) AND NOT starts_with(nspname, 'pg_') ORDER BY 1", prefix)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		rows.Scan(&s)
		out = append(out, s)
	}
	return out
}

// readData returns a data file of an archive, decompressed.
func readData(t *testing.T, store Store, archive, file string) []byte {
	t.Helper()
	r, err := store.Open(context.Background(), archive+"/"+file)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	gz, err := gzip.NewReader(r)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(gz)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func gzipBytes(b []byte) []byte {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	gz.Write(b)
	gz.Close()
	return buf.Bytes()
}

func newManager(t *testing.T, f *fixture, desired *migrate.Desired) (*Manager, *Dir) {
	t.Helper()
	store, err := NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(Config{Store: store, Desired: desired, Roles: f.env.Roles, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	return m, store
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// workloadSeq numbers the workload's customers across workloads.
var workloadSeq atomic.Int64

// workload keeps other tenants busy through the app's Ent client (the app
// role, the tenancy driver, RLS) and counts every failure.
type workload struct {
	f       *fixture
	stopped atomic.Bool
	wg      sync.WaitGroup
	ops     atomic.Int64
	mu      sync.Mutex
	errs    []error
	made    map[tenancy.ID][]string // ids of the customers it created
}

func startWorkload(t *testing.T, f *fixture, tenants ...tenancy.ID) *workload {
	w := &workload{f: f, made: map[tenancy.ID][]string{}}
	for _, id := range tenants {
		w.wg.Go(func() {
			// Operations are never cancelled midway: one that committed
			// must be recorded, so that without() can tell its rows.
			for !w.stopped.Load() {
				if err := w.op(context.Background(), id); err != nil {
					w.mu.Lock()
					w.errs = append(w.errs, fmt.Errorf("tenant %s: %w", id, err))
					w.mu.Unlock()
				}
				time.Sleep(2 * time.Millisecond)
			}
		})
	}
	t.Cleanup(func() { w.stopped.Store(true); w.wg.Wait() })
	return w
}

// op creates a customer, reads it back, counts and lists.
func (w *workload) op(ctx context.Context, id tenancy.ID) error {
	ctx, cancel := context.WithTimeout(tenancy.WithTenant(ctx, id), 5*time.Second)
	defer cancel()
	client := w.f.env.Client
	c, err := client.Customer.Create().SetName("workload").SetEmail(fmt.Sprintf("wl-%d@example.test", workloadSeq.Add(1))).Save(ctx)
	if err != nil {
		return err
	}
	w.mu.Lock()
	w.made[id] = append(w.made[id], c.ID.String())
	w.mu.Unlock()
	if _, err := client.Customer.Get(ctx, c.ID); err != nil {
		return err
	}
	if _, err := client.Customer.Query().Count(ctx); err != nil {
		return err
	}
	if _, err := client.Order.Query().Limit(5).All(ctx); err != nil {
		return err
	}
	w.ops.Add(1)
	return nil
}

// burst runs a few operations for each tenant now, and fails the test if
// one fails: the tenants are being served while the caller holds its
// locks. The caller waits for burst, so an operation blocked by those
// locks can only end by its 5 s timeout, an error; how long the others
// took is logged, not bounded (a loaded machine is slow for reasons of
// its own).
func (w *workload) burst(t *testing.T, tenants ...tenancy.ID) {
	for _, id := range tenants {
		for range 3 {
			start := time.Now()
			if err := w.op(context.Background(), id); err != nil {
				t.Errorf("tenant %s not served while the operation held its locks: %v", id, err)
				return
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Logf("tenant %s: an operation took %s while the operation held its locks (a slow machine?)", id, d)
			}
		}
	}
}

// stop ends the workload and fails the test on any error.
func (w *workload) stop(t *testing.T) {
	w.stopped.Store(true)
	w.wg.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, err := range w.errs {
		t.Errorf("workload: %v", err)
	}
	if w.ops.Load() == 0 {
		t.Errorf("workload ran no operation")
	}
	t.Logf("workload: %d operations of other tenants, %d errors", w.ops.Load(), len(w.errs))
}

// without drops the rows of customers the workload created (their text
// starts with the id) from a dump.
func (w *workload) without(id tenancy.ID, s snapshotOf) snapshotOf {
	w.mu.Lock()
	made := slices.Clone(w.made[id])
	w.mu.Unlock()
	out := snapshotOf{tables: map[string][]string{}, sequences: s.sequences}
	for n, rows := range s.tables {
		for _, r := range rows {
			if n == "customers" && slices.ContainsFunc(made, func(m string) bool { return strings.HasPrefix(r, "("+m+",") }) {
				continue
			}
			out.tables[n] = append(out.tables[n], r)
		}
	}
	return out
}
