package tenancy_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/tenantry/tenantry/examples/app/ent"
	"github.com/tenantry/tenantry/internal/apptest"
	"github.com/tenantry/tenantry/tenancy"
)

// shapeFixture is one connection serving tenants whose schemas each hold a
// table things of the given column list, as schemas do mid-migration when
// they differ in shape.
type shapeFixture struct {
	super   *pgxpool.Pool // superuser: DDL
	client  *ent.Client
	ids     []tenancy.ID
	schemas []string
}

func newShapeFixture(t *testing.T, columns []string, opts ...tenancy.DriverOption) *shapeFixture {
	t.Helper()
	env := apptest.New(t)
	ctx := context.Background()
	super, err := pgxpool.New(ctx, env.Clusters[0].DSN("postgres", apptest.Database))
	require.NoError(t, err)
	t.Cleanup(super.Close)
	pool, err := apptest.NewPool(ctx, env.Clusters[0].DSN(env.Roles.App, apptest.Database), 1)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	shard := &tenancy.Shard{Name: "shape", Pool: pool, Admin: env.Shards[0].Admin}
	f := &shapeFixture{super: super}
	var ps []*tenancy.Placement
	for _, cols := range columns {
		id := tenancy.NewID()
		schema := "shape_" + strings.ReplaceAll(id.String(), "-", "")[:12]
		_, err := super.Exec(ctx, `CREATE SCHEMA "`+schema+`"; CREATE TABLE "`+schema+`".things (`+cols+`);
			INSERT INTO "`+schema+`".things (v) VALUES ('1');
			GRANT USAGE ON SCHEMA "`+schema+`" TO `+env.Roles.App+`; GRANT SELECT ON ALL TABLES IN SCHEMA "`+schema+`" TO `+env.Roles.App)
		require.NoError(t, err)
		p, err := tenancy.NewPlacement(id, shard, schema, tenancy.DefaultLimits)
		require.NoError(t, err)
		f.ids, f.schemas = append(f.ids, id), append(f.schemas, schema)
		ps = append(ps, p)
	}
	f.client = ent.NewClient(ent.Driver(tenancy.NewDriver(tenancy.NewStaticResolver(nil, ps...), opts...)))
	return f
}

// count runs a raw count of things with v = arg for tenant i, in a
// transaction when tx is set.
func (f *shapeFixture) count(i int, arg any, tx bool) (int, error) {
	ctx := apptest.Ctx(f.ids[i])
	c := f.client
	if tx {
		t, err := f.client.Tx(ctx)
		if err != nil {
			return 0, err
		}
		defer t.Rollback()
		c = t.Client()
	}
	rows, err := c.QueryContext(ctx, "SELECT count(*) FROM things WHERE v = $1", arg)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	var n int
	for rows.Next() {
		if err := rows.Scan(&n); err != nil {
			return 0, err
		}
	}
	return n, rows.Close()
}

// TestStatementAfterColumnTypeChange: a migration changes the type of a
// column a cached statement's parameter was inferred from. The driver drops
// the statement that no longer fits and prepares it again: outside a
// transaction the caller never sees the error; inside one, at most the
// first transaction fails, and the next ones run.
func TestStatementAfterColumnTypeChange(t *testing.T) {
	for _, tx := range []bool{false, true} {
		name := "statement"
		if tx {
			name = "transaction"
		}
		t.Run(name, func(t *testing.T) {
			f := newShapeFixture(t, []string{"v text"})
			for range 4 { // prepared, then run from the cache
				n, err := f.count(0, "1", tx)
				require.NoError(t, err)
				require.Equal(t, 1, n)
			}
			_, err := f.super.Exec(context.Background(), `ALTER TABLE "`+f.schemas[0]+`".things ALTER COLUMN v TYPE integer USING v::integer`)
			if err != nil {
				t.Fatal(err)
			}
			var failed int
			for i := range 5 {
				n, err := f.count(0, 1, tx)
				if err != nil {
					require.True(t, tx && i == 0, "run %d after the migration: %v", i, err)
					require.False(t, errors.Is(err, tenancy.ErrShardUnavailable), "a statement that no longer fits is not an outage: %v", err)
					failed++
					continue
				}
				require.Equal(t, 1, n)
			}
			t.Logf("failed runs after the migration: %d", failed)
		})
	}
}

// TestBorrowedDescriptionOfOtherShape: a tenant borrows the statement
// description of a schema of another shape (mid-migration), which fails on
// the server; the driver runs it again with a statement of the tenant's
// own, and keeps that one, whatever the cache holds.
func TestBorrowedDescriptionOfOtherShape(t *testing.T) {
	t.Run("parameter type", func(t *testing.T) {
		f := newShapeFixture(t, []string{"v text", "v integer"})
		for range 10 {
			n, err := f.count(0, "1", false)
			require.NoError(t, err)
			require.Equal(t, 1, n)
		}
		for i := range 5 {
			n, err := f.count(1, "1", false)
			require.NoError(t, err, "run %d of the tenant whose column is an integer", i)
			require.Equal(t, 1, n)
		}
	})
	t.Run("result columns", func(t *testing.T) {
		f := newShapeFixture(t, []string{"v text, x int", "v text, x int, w int"})
		all := func(i int) (int, error) {
			rows, err := f.client.QueryContext(apptest.Ctx(f.ids[i]), "SELECT * FROM things")
			if err != nil {
				return 0, err
			}
			cols, err := rows.Columns()
			if err != nil {
				return 0, err
			}
			for rows.Next() {
			}
			return len(cols), rows.Close()
		}
		for i, want := range []int{2, 3, 2, 3} {
			n, err := all(i % 2)
			require.NoError(t, err, "tenant %d", i%2)
			require.Equal(t, want, n)
		}
	})
	t.Run("full cache", func(t *testing.T) {
		f := newShapeFixture(t, []string{"v text", "v integer"}, tenancy.WithStatementCacheSize(1))
		for i := range 20 {
			for range 2 {
				_, err := f.count(0, "1", false)
				require.NoError(t, err)
			}
			for _, tx := range []bool{false, true} {
				n, err := f.count(1, "1", tx)
				require.NoError(t, err, "round %d, in a transaction: %v", i, tx)
				require.Equal(t, 1, n)
			}
		}
	})
}

// TestStatementsDeallocated: admin code deallocates every prepared
// statement of a connection (DEALLOCATE ALL through Unscoped raw SQL). The
// driver prepares its statements, the scope statements included, again.
func TestStatementsDeallocated(t *testing.T) {
	client, uctx := oneAdminConn(t)
	for i := range 3 {
		_, err := client.Customer.Query().Count(uctx)
		require.NoError(t, err, "round %d", i)
		_, err = client.ExecContext(uctx, "DEALLOCATE ALL")
		require.NoError(t, err, "round %d", i)
		for j := range 3 {
			_, err := client.Customer.Query().Count(uctx)
			require.NoError(t, err, "round %d, statement %d after DEALLOCATE ALL", i, j)
		}
	}
}
