package migrate_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	entschema "entgo.io/ent/dialect/sql/schema"
	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	appmigrate "github.com/tenantry/tenantry/examples/app/ent/migrate"
	"github.com/tenantry/tenantry/internal/pgtest"
	"github.com/tenantry/tenantry/migrate"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// env is one test's own database on the shared cluster, roles in place.
type env struct {
	cluster  *pgtest.Cluster
	database string
	roles    migrate.Roles
	super    *sql.DB // superuser
	owner    *sql.DB // the owner role, which Apply normally runs as
}

var (
	databases atomic.Int64
	nonIdent  = regexp.MustCompile(`[^a-z0-9_]+`)
)

func newEnv(t *testing.T) *env {
	t.Helper()
	c := pgtest.Shards(t, 1)[0]
	name := nonIdent.ReplaceAllString(strings.ToLower(t.Name()), "_")
	name = fmt.Sprintf("%.40s_%d", name, databases.Add(1))
	require.NoError(t, c.CreateDatabase(t.Context(), name))
	e := &env{cluster: c, database: name, roles: migrate.DefaultRoles()}
	e.super = e.open(t, "postgres")
	require.NoError(t, migrate.EnsureRoles(t.Context(), e.super, e.roles))
	e.owner = e.open(t, e.roles.Owner)
	return e
}

// open returns a database/sql handle connecting as user to the test database.
func (e *env) open(t *testing.T, user string) *sql.DB {
	t.Helper()
	db, err := sql.Open("pgx", e.cluster.DSN(user, e.database))
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	require.NoError(t, db.PingContext(t.Context()))
	return db
}

// apply applies d and fails the test on error.
func (e *env) apply(t *testing.T, d *migrate.Desired, db *sql.DB, schema string, opts ...migrate.Options) *migrate.Result {
	t.Helper()
	res, err := d.Apply(t.Context(), db, schema, e.roles, opts...)
	require.NoError(t, err)
	require.Equal(t, schema, res.Schema)
	return res
}

// queryStrings runs a query returning one text column as the superuser.
func (e *env) queryStrings(t *testing.T, query string, args ...any) []string {
	t.Helper()
	rows, err := e.super.QueryContext(t.Context(), query, args...)
	require.NoError(t, err)
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		require.NoError(t, rows.Scan(&s))
		out = append(out, s)
	}
	require.NoError(t, rows.Err())
	return out
}

func (e *env) exec(t *testing.T, stmts ...string) {
	t.Helper()
	for _, s := range stmts {
		_, err := e.super.ExecContext(t.Context(), s)
		require.NoError(t, err, s)
	}
}

func newDesired(t *testing.T, tables []*entschema.Table) *migrate.Desired {
	t.Helper()
	d, err := migrate.NewDesired(tables)
	require.NoError(t, err)
	return d
}

func tableNames(tables []*entschema.Table) []string {
	var names []string
	for _, t := range tables {
		names = append(names, t.Name)
	}
	slices.Sort(names)
	return names
}

// dump returns pg_dump --schema-only of one schema, with the schema name
// replaced by SCHEMA.
func (e *env) dump(t *testing.T, schema string) string {
	t.Helper()
	bin := filepath.Join(e.cluster.BinDir(), "pg_dump")
	if e.cluster.BinDir() == "" {
		bin = "pg_dump"
	}
	out, err := exec.CommandContext(t.Context(), bin, "--schema-only", "--schema="+schema,
		"--dbname="+e.cluster.DSN("postgres", e.database)).Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		t.Fatalf("pg_dump: %v\n%s", err, ee.Stderr)
	}
	require.NoError(t, err)
	var lines []string
	for line := range strings.Lines(string(out)) {
		// pg_dump 17.6/16.10/15.14 and later guard the script with a random key.
		if strings.HasPrefix(line, `\restrict `) || strings.HasPrefix(line, `\unrestrict `) {
			continue
		}
		lines = append(lines, line)
	}
	return strings.ReplaceAll(strings.Join(lines, ""), schema, "SCHEMA")
}

func TestApply(t *testing.T) {
	e := newEnv(t)
	d := newDesired(t, appmigrate.Tables)

	first := e.apply(t, d, e.owner, "tenant_a")
	require.True(t, first.Changed())
	assert.Equal(t, `CREATE SCHEMA IF NOT EXISTS "tenant_a" AUTHORIZATION "tenantry_owner"`, first.Statements[0])
	assert.Equal(t, tableNames(appmigrate.Tables),
		e.queryStrings(t, `SELECT tablename FROM pg_tables WHERE schemaname = 'tenant_a' ORDER BY 1`))
	assert.Equal(t, d.Tables(), d.TenantTables(), "every table of the example app is tenant-scoped")
	// The tenant_id default round-trips exactly (else Atlas would compare
	// it in the database, and fail: it evaluates to NULL).
	assert.Equal(t, []string{string(appmigrate.CustomersColumns[1].Default.(entschema.Expr))}, e.queryStrings(t,
		`SELECT DISTINCT column_default::text FROM information_schema.columns WHERE table_schema = 'tenant_a' AND column_name = 'tenant_id'`))
	for _, s := range first.Statements {
		assert.NotContains(t, s, "public", "statements land in the schema only")
	}

	// Every foreign key, Ent's and the guards, has an index leading with
	// one of its own columns (not tenant_id, which selects nothing in a
	// tenant's schema): deleting a customer must not scan every order.
	assert.Empty(t, e.queryStrings(t, `
		SELECT c.conrelid::regclass::text || '.' || c.conname FROM pg_constraint c
		WHERE c.contype = 'f' AND c.connamespace = 'tenant_a'::regnamespace
		AND NOT EXISTS (
			SELECT FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
			WHERE i.indrelid = c.conrelid AND a.attnum = ANY (c.conkey) AND a.attname <> 'tenant_id')
		ORDER BY 1`), "foreign keys without an index on their columns")

	second := e.apply(t, d, e.owner, "tenant_a")
	assert.Empty(t, second.Statements, "second Apply must change nothing")
	assert.False(t, second.Changed())

	// A second schema, this time through a superuser connection: Apply
	// switches to the owner role, so the dumps match after renaming.
	e.apply(t, d, e.super, "tenant_b")
	assert.Empty(t, e.apply(t, d, e.super, "tenant_b").Statements)
	assert.Equal(t, []string{"tenantry_owner"},
		e.queryStrings(t, `SELECT DISTINCT tableowner::text FROM pg_tables WHERE schemaname IN ('tenant_a', 'tenant_b')`))
	dumpA, dumpB := e.dump(t, "tenant_a"), e.dump(t, "tenant_b")
	assert.Contains(t, dumpA, `CREATE POLICY tenant_isolation ON SCHEMA.orders`)
	assert.Contains(t, dumpA, `orders_customers_orders_tenant FOREIGN KEY (tenant_id, customer_id) REFERENCES SCHEMA.customers(tenant_id, id)`)
	assert.Equal(t, dumpA, dumpB)

	// Nothing leaked into public.
	assert.Empty(t, e.queryStrings(t, `SELECT tablename FROM pg_tables WHERE schemaname = 'public'`))

	// DryRun reports and rolls back.
	dry := e.apply(t, d, e.owner, "tenant_c", migrate.Options{DryRun: true})
	assert.True(t, dry.DryRun)
	assert.Equal(t, len(first.Statements), len(dry.Statements))
	assert.Empty(t, e.queryStrings(t, `SELECT nspname::text FROM pg_namespace WHERE nspname = 'tenant_c'`))

	// DropSchema removes it all, and is idempotent.
	require.NoError(t, migrate.DropSchema(t.Context(), e.owner, "tenant_b"))
	require.NoError(t, migrate.DropSchema(t.Context(), e.owner, "tenant_b"))
	assert.Empty(t, e.queryStrings(t, `SELECT nspname::text FROM pg_namespace WHERE nspname = 'tenant_b'`))
}

func TestApplyConcurrent(t *testing.T) {
	e := newEnv(t)
	d := newDesired(t, appmigrate.Tables)
	var wg sync.WaitGroup
	results := make([]*migrate.Result, 4)
	errs := make([]error, len(results))
	for i := range results {
		wg.Go(func() {
			results[i], errs[i] = d.Apply(t.Context(), e.owner, "tenant_same", e.roles)
		})
	}
	wg.Wait()
	changed := 0
	for i := range results {
		require.NoError(t, errs[i])
		if results[i].Changed() {
			changed++
		}
	}
	assert.Equal(t, 1, changed, "the advisory lock serializes Apply; only the first changes anything")
}

func createPolicy(table string) string {
	return fmt.Sprintf(`CREATE POLICY "tenant_isolation" ON %q AS PERMISSIVE FOR ALL TO PUBLIC USING (%s) WITH CHECK (%s)`,
		table, migrate.PolicyExpr, migrate.PolicyExpr)
}

func TestApplyReconcilesDrift(t *testing.T) {
	e := newEnv(t)
	d := newDesired(t, appmigrate.Tables)
	e.apply(t, d, e.owner, "tenant_drift")
	e.exec(t,
		`DROP POLICY tenant_isolation ON tenant_drift.orders`,
		`ALTER TABLE tenant_drift.customers NO FORCE ROW LEVEL SECURITY`,
		`ALTER TABLE tenant_drift.order_tags DISABLE ROW LEVEL SECURITY`,
		`DROP INDEX tenant_drift.order_tenant_id_created_at`,
		`ALTER POLICY tenant_isolation ON tenant_drift.tags USING (true)`,
		`CREATE POLICY leak ON tenant_drift.line_items USING (true)`,
		`CREATE POLICY narrow ON tenant_drift.line_items AS RESTRICTIVE USING (quantity < 1000)`,
		`GRANT TRUNCATE ON tenant_drift.tags TO tenantry_app`,
		`GRANT SELECT ON tenant_drift.tags TO tenantry_admin WITH GRANT OPTION`,
		`REVOKE DELETE ON tenant_drift.customers FROM tenantry_app`,
		`GRANT CREATE ON SCHEMA tenant_drift TO tenantry_app`,
	)
	res := e.apply(t, d, e.owner, "tenant_drift")
	assert.ElementsMatch(t, []string{
		`CREATE INDEX "order_tenant_id_created_at" ON "orders" ("tenant_id", "created_at")`,
		`ALTER TABLE "customers" FORCE ROW LEVEL SECURITY`,
		`DROP POLICY "leak" ON "line_items"`,
		`ALTER TABLE "order_tags" ENABLE ROW LEVEL SECURITY`,
		createPolicy("orders"),
		`DROP POLICY "tenant_isolation" ON "tags"`,
		createPolicy("tags"),
		`REVOKE CREATE ON SCHEMA "tenant_drift" FROM "tenantry_app"`,
		`GRANT DELETE ON TABLE "customers" TO "tenantry_app"`,
		`REVOKE TRUNCATE ON TABLE "tags" FROM "tenantry_app"`,
		`REVOKE GRANT OPTION FOR SELECT ON TABLE "tags" FROM "tenantry_admin"`,
	}, res.Statements)
	assert.Empty(t, e.apply(t, d, e.owner, "tenant_drift").Statements, "a further Apply is a no-op")
	assert.Equal(t, []string{"narrow", "tenant_isolation"}, e.queryStrings(t,
		`SELECT polname::text FROM pg_policy WHERE polrelid = 'tenant_drift.line_items'::regclass ORDER BY 1`),
		"restrictive policies only narrow access and are kept")
}

func TestApplyLockTimeout(t *testing.T) {
	e := newEnv(t)
	d := newDesired(t, appmigrate.Tables)
	e.apply(t, d, e.owner, "tenant_busy")
	e.exec(t, `DROP POLICY tenant_isolation ON tenant_busy.orders`)

	// A long transaction holds a lock on orders; the policy DDL must give up.
	busy, err := e.super.BeginTx(t.Context(), nil)
	require.NoError(t, err)
	defer busy.Rollback()
	_, err = busy.ExecContext(t.Context(), `LOCK TABLE tenant_busy.orders IN ACCESS SHARE MODE`)
	require.NoError(t, err)

	start := time.Now()
	_, err = d.Apply(t.Context(), e.owner, "tenant_busy", e.roles, migrate.Options{LockTimeout: 100 * time.Millisecond})
	require.ErrorIs(t, err, migrate.ErrLockTimeout)
	assert.Less(t, time.Since(start), 5*time.Second)
	require.NoError(t, busy.Rollback())
	assert.Len(t, e.apply(t, d, e.owner, "tenant_busy").Statements, 1)
}

func TestApplyDestructive(t *testing.T) {
	e := newEnv(t)
	e.apply(t, newDesired(t, appmigrate.Tables), e.owner, "tenant_x")

	// The same graph without orders.note.
	tables := slices.Clone(appmigrate.Tables)
	for i, tbl := range tables {
		if tbl.Name == appmigrate.OrdersTable.Name {
			c := *tbl
			c.Columns = slices.DeleteFunc(slices.Clone(c.Columns), func(c *entschema.Column) bool { return c.Name == "note" })
			tables[i] = &c
		}
	}
	d := newDesired(t, tables)
	columns := func() []string {
		return e.queryStrings(t, `SELECT column_name::text FROM information_schema.columns
			WHERE table_schema = 'tenant_x' AND table_name = 'orders' AND column_name = 'note'`)
	}

	_, err := d.Apply(t.Context(), e.owner, "tenant_x", e.roles)
	require.ErrorIs(t, err, migrate.ErrDestructive)
	var de *migrate.DestructiveError
	require.ErrorAs(t, err, &de)
	assert.Equal(t, []string{`drop column "note" of table "orders" (DS103)`}, de.Changes)
	assert.Equal(t, []string{"note"}, columns(), "nothing changed")

	res := e.apply(t, d, e.owner, "tenant_x", migrate.Options{AllowDestructive: true})
	assert.Equal(t, []string{`ALTER TABLE "orders" DROP COLUMN "note"`}, res.Statements)
	assert.Empty(t, columns())
	assert.Empty(t, e.apply(t, d, e.owner, "tenant_x").Statements)
}

func TestInvalidSchemaName(t *testing.T) {
	d := newDesired(t, appmigrate.Tables)
	for _, name := range []string{
		"", "Tenant", "1abc", "tenant-a", `a"b`, "tenant a", "pg_catalog", "pg_x", "information_schema",
		"a" + strings.Repeat("b", 63), "tenant_ä",
	} {
		assert.ErrorIs(t, migrate.ValidateSchemaName(name), migrate.ErrInvalidSchemaName, name)
		// No database is needed: the name is refused before any connection.
		_, err := d.Apply(context.Background(), nil, name, migrate.DefaultRoles())
		assert.ErrorIs(t, err, migrate.ErrInvalidSchemaName, name)
		assert.ErrorIs(t, migrate.DropSchema(context.Background(), nil, name), migrate.ErrInvalidSchemaName, name)
	}
	for _, name := range []string{"tenant_0123456789abcdef0123456789abcdef", "_x", "shared", "a" + strings.Repeat("b", 62)} {
		assert.NoError(t, migrate.ValidateSchemaName(name), name)
	}
}

func TestNewDesiredErrors(t *testing.T) {
	_, err := migrate.NewDesired(nil)
	assert.ErrorIs(t, err, migrate.ErrNoTables)
	// A foreign key to a table that is not in the set.
	_, err = migrate.NewDesired([]*entschema.Table{appmigrate.LineItemsTable})
	assert.ErrorContains(t, err, `references table "orders"`)
}

func TestEnsureRoles(t *testing.T) {
	e := newEnv(t)
	// Idempotent, and concurrent callers do not fail each other.
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() { assert.NoError(t, migrate.EnsureRoles(t.Context(), e.super, e.roles)) })
	}
	wg.Wait()
	assert.Equal(t, []string{
		"tenantry_admin login=t super=f bypassrls=t",
		"tenantry_app login=t super=f bypassrls=f",
		"tenantry_owner login=t super=f bypassrls=f",
	}, e.queryStrings(t, `SELECT format('%s login=%s super=%s bypassrls=%s', rolname, rolcanlogin, rolsuper, rolbypassrls)
		FROM pg_roles WHERE rolname LIKE 'tenantry\_%' ORDER BY 1`))
	assert.Equal(t, []string{`{"search_path=\"\""}`}, e.queryStrings(t,
		`SELECT rolconfig::text FROM pg_roles WHERE rolname = 'tenantry_app'`))
	_, err := e.super.ExecContext(t.Context(), `ALTER ROLE tenantry_app BYPASSRLS`)
	require.NoError(t, err)
	require.NoError(t, migrate.EnsureRoles(t.Context(), e.super, e.roles))
	assert.Equal(t, []string{"false"}, e.queryStrings(t, `SELECT rolbypassrls::text FROM pg_roles WHERE rolname = 'tenantry_app'`),
		"EnsureRoles takes BYPASSRLS away from the app role again")

	assert.Error(t, migrate.EnsureRoles(t.Context(), e.super, migrate.Roles{Owner: "a", App: "a", Admin: "b"}))
}

// pgCode returns the SQLSTATE of err, "" if none.
func pgCode(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}
