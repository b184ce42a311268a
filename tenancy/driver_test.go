package tenancy_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/tenantry/tenantry/examples/app/ent"
	"github.com/tenantry/tenantry/examples/app/ent/customer"
	"github.com/tenantry/tenantry/internal/apptest"
	"github.com/tenantry/tenantry/tenancy"
)

func uniqueEmail() string { return uuid.NewString() + "@example.test" }

func TestRoutingAcrossShards(t *testing.T) {
	env := apptest.New(t)
	emailC, emailD := uniqueEmail(), uniqueEmail()
	_, err := env.Client.Customer.Create().SetName("c").SetEmail(emailC).Save(apptest.Ctx(apptest.C))
	require.NoError(t, err)
	_, err = env.Client.Customer.Create().SetName("d").SetEmail(emailD).Save(apptest.Ctx(apptest.D))
	require.NoError(t, err)

	// Look where the rows landed, bypassing the driver.
	where := func(shard int, email string) []string {
		rows, err := env.Shards[shard].Admin.Query(context.Background(),
			`SELECT n.nspname FROM pg_namespace n WHERE n.nspname LIKE 'tenant\_%' OR n.nspname = $1`, apptest.SharedSchema)
		require.NoError(t, err)
		schemas, err := pgxCollectStrings(rows)
		require.NoError(t, err)
		var found []string
		for _, s := range schemas {
			var n int
			err := env.Shards[shard].Admin.QueryRow(context.Background(),
				`SELECT count(*) FROM `+quoteIdent(s)+`.customers WHERE email = $1`, email).Scan(&n)
			require.NoError(t, err)
			if n > 0 {
				found = append(found, s)
			}
		}
		return found
	}
	require.Equal(t, []string{apptest.C.SchemaName()}, where(0, emailC))
	require.Empty(t, where(1, emailC))
	require.Equal(t, []string{apptest.D.SchemaName()}, where(1, emailD))
	require.Empty(t, where(0, emailD))
}

func TestUnknownTenant(t *testing.T) {
	env := apptest.New(t)
	_, err := env.Client.Customer.Query().All(apptest.Ctx(tenancy.NewID()))
	require.ErrorIs(t, err, tenancy.ErrUnknownTenant)
}

// More arguments than the protocol's 65535 failed with "apply tenant
// settings: too many parameter format codes", blaming the scope statement.
func TestTooManyArguments(t *testing.T) {
	env := apptest.New(t)
	ids := make([]uuid.UUID, 70000)
	for i := range ids {
		ids[i] = uuid.New()
	}
	_, err := env.Client.Customer.Query().Where(customer.IDIn(ids...)).All(apptest.Ctx(apptest.A))
	require.ErrorContains(t, err, "70001 arguments: PostgreSQL takes at most 65535 per statement")
	n, err := env.Client.Customer.Query().Count(apptest.Ctx(apptest.A))
	require.NoError(t, err, "the connection serves the next statement")
	require.GreaterOrEqual(t, n, 0)
}

func TestUnscopedSeesEveryTenantOfTheSharedSchema(t *testing.T) {
	env := apptest.New(t)
	ea, eb := uniqueEmail(), uniqueEmail()
	env.Client.Customer.Create().SetName("a").SetEmail(ea).SaveX(apptest.Ctx(apptest.A))
	env.Client.Customer.Create().SetName("b").SetEmail(eb).SaveX(apptest.Ctx(apptest.B))

	scoped, err := env.Client.Customer.Query().Where(customer.EmailIn(ea, eb)).All(apptest.Ctx(apptest.A))
	require.NoError(t, err)
	require.Len(t, scoped, 1)
	require.Equal(t, ea, scoped[0].Email)

	all, err := env.Client.Customer.Query().Where(customer.EmailIn(ea, eb)).All(tenancy.Unscoped(context.Background(), "test: fleet report"))
	require.NoError(t, err)
	require.Len(t, all, 2)
}

func TestTransactionRefusesAnotherTenant(t *testing.T) {
	env := apptest.New(t)
	tx, err := env.Client.Tx(apptest.Ctx(apptest.A))
	require.NoError(t, err)
	defer tx.Rollback()
	_, err = tx.Customer.Create().SetName("b").SetEmail(uniqueEmail()).Save(apptest.Ctx(apptest.B))
	require.ErrorIs(t, err, tenancy.ErrTenantMismatch)
	_, err = tx.Customer.Query().All(context.Background())
	require.ErrorIs(t, err, tenancy.ErrNoTenant)
}

// singleConnClient returns a client whose tenant C is served by a pool of
// exactly one connection, and that pool.
func singleConnClient(t *testing.T, limits tenancy.Limits) (*ent.Client, *pgxpool.Pool) {
	env := apptest.New(t)
	cfg, err := pgxpool.ParseConfig(env.Clusters[0].DSN(env.Roles.App, apptest.Database))
	require.NoError(t, err)
	cfg.MaxConns, cfg.MinConns = 1, 1
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	shard := &tenancy.Shard{Name: "single", Pool: pool}
	pc, err := tenancy.NewPlacement(apptest.C, shard, apptest.C.SchemaName(), limits)
	require.NoError(t, err)
	pd, err := tenancy.NewPlacement(apptest.D, shard, apptest.D.SchemaName(), limits)
	require.NoError(t, err)
	return ent.NewClient(ent.Driver(tenancy.NewDriver(tenancy.NewStaticResolver(nil, pc, pd)))), pool
}

// TestNothingSurvivesOnTheConnection runs scoped operations of every kind
// and then reads the settings of the very connection that served them.
func TestNothingSurvivesOnTheConnection(t *testing.T) {
	client, pool := singleConnClient(t, tenancy.Limits{StatementTimeout: 7 * time.Second, LockTimeout: 3 * time.Second, IdleInTransactionTimeout: 9 * time.Second, WorkMem: "7MB"})
	ctx := apptest.Ctx(apptest.C)

	var before [6]string
	readSettings := func() [6]string {
		var s [6]string
		err := pool.QueryRow(context.Background(), `SELECT coalesce(current_setting('app.current_tenant_id', true), ''),
			current_setting('search_path'), current_setting('statement_timeout'), current_setting('lock_timeout'),
			current_setting('work_mem'), current_setting('application_name')`).Scan(&s[0], &s[1], &s[2], &s[3], &s[4], &s[5])
		require.NoError(t, err)
		return s
	}
	before = readSettings()
	require.Equal(t, "", before[0])

	ops := []struct {
		name string
		run  func() error
	}{
		{"create", func() error {
			_, err := client.Customer.Create().SetName("x").SetEmail(uniqueEmail()).Save(ctx)
			return err
		}},
		{"query", func() error { _, err := client.Customer.Query().Limit(3).All(ctx); return err }},
		{"failing statement", func() error {
			_, err := client.ExecContext(ctx, "SELECT 1/0")
			if err == nil {
				return errors.New("division by zero succeeded")
			}
			return nil
		}},
		{"committed tx", func() error {
			tx, err := client.Tx(ctx)
			if err != nil {
				return err
			}
			if _, err := tx.Customer.Create().SetName("y").SetEmail(uniqueEmail()).Save(ctx); err != nil {
				return err
			}
			return tx.Commit()
		}},
		{"rolled back tx", func() error {
			tx, err := client.Tx(ctx)
			if err != nil {
				return err
			}
			if _, err := tx.Customer.Query().Count(ctx); err != nil {
				return err
			}
			return tx.Rollback()
		}},
		{"unread rows", func() error {
			rows, err := client.QueryContext(ctx, "SELECT id FROM customers")
			if err != nil {
				return err
			}
			return rows.Close()
		}},
	}
	for _, op := range ops {
		t.Run(op.name, func(t *testing.T) {
			require.NoError(t, op.run())
			require.Equal(t, before, readSettings(), "settings left on the connection after %s", op.name)
		})
	}
}

// TestStatementTimeoutInTransaction checks that a statement over the
// tenant's statement_timeout aborts its transaction with nothing written,
// and that another tenant's limit is its own.
func TestStatementTimeoutInTransaction(t *testing.T) {
	env := apptest.New(t)
	short := tenancy.Limits{StatementTimeout: 200 * time.Millisecond}
	pc, err := tenancy.NewPlacement(apptest.C, env.Shards[0], apptest.C.SchemaName(), short)
	require.NoError(t, err)
	pd, err := tenancy.NewPlacement(apptest.D, env.Shards[1], apptest.D.SchemaName(), tenancy.Limits{StatementTimeout: 5 * time.Second})
	require.NoError(t, err)
	client := ent.NewClient(ent.Driver(tenancy.NewDriver(tenancy.NewStaticResolver(nil, pc, pd))))
	ctx := apptest.Ctx(apptest.C)
	email := uniqueEmail()

	tx, err := client.Tx(ctx)
	require.NoError(t, err)
	_, err = tx.Customer.Create().SetName("partial").SetEmail(email).Save(ctx)
	require.NoError(t, err)
	_, err = tx.Client().ExecContext(ctx, "SELECT pg_sleep(1)")
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr)
	require.Equal(t, "57014", pgErr.Code, "want query_canceled by statement_timeout, got %v", err)
	require.Error(t, tx.Commit(), "commit after a failed statement must fail")

	n, err := client.Customer.Query().Where(customer.Email(email)).Count(ctx)
	require.NoError(t, err)
	require.Zero(t, n, "a write of the aborted transaction survived")

	// Tenant D's plan allows the same statement.
	_, err = client.ExecContext(apptest.Ctx(apptest.D), "SELECT pg_sleep(0.3)")
	require.NoError(t, err)
}

// TestStatementReparsedWhenShapesDiffer runs one query for two tenants whose
// schemas differ in a column type (as during a migration): PostgreSQL
// refuses the cached plan (0A000) and the driver re-prepares once.
func TestStatementReparsedWhenShapesDiffer(t *testing.T) {
	env := apptest.New(t)
	ctx := context.Background()
	super, err := pgxpool.New(ctx, env.Clusters[0].DSN("postgres", apptest.Database))
	require.NoError(t, err)
	defer super.Close()
	schemas := []string{"reparse_1", "reparse_2"}
	for i, s := range schemas {
		colType := []string{"text", "integer"}[i]
		_, err := super.Exec(ctx, `DROP SCHEMA IF EXISTS `+s+` CASCADE; CREATE SCHEMA `+s+`;
			CREATE TABLE `+s+`.things (v `+colType+`); INSERT INTO `+s+`.things VALUES ('1');
			GRANT USAGE ON SCHEMA `+s+` TO `+env.Roles.App+`; GRANT SELECT ON ALL TABLES IN SCHEMA `+s+` TO `+env.Roles.App)
		require.NoError(t, err)
	}
	cfg, err := pgxpool.ParseConfig(env.Clusters[0].DSN(env.Roles.App, apptest.Database))
	require.NoError(t, err)
	cfg.MaxConns = 1
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	defer pool.Close()
	shard := &tenancy.Shard{Name: "single", Pool: pool}
	t1, t2 := tenancy.NewID(), tenancy.NewID()
	p1, err := tenancy.NewPlacement(t1, shard, schemas[0], tenancy.DefaultLimits)
	require.NoError(t, err)
	p2, err := tenancy.NewPlacement(t2, shard, schemas[1], tenancy.DefaultLimits)
	require.NoError(t, err)
	client := ent.NewClient(ent.Driver(tenancy.NewDriver(tenancy.NewStaticResolver(nil, p1, p2))))
	for range 2 {
		for _, id := range []tenancy.ID{t1, t2} {
			rows, err := client.QueryContext(tenancy.WithTenant(ctx, id), "SELECT v FROM things")
			require.NoError(t, err)
			require.True(t, rows.Next(), "no row: %v", rows.Err())
			var v any
			require.NoError(t, rows.Scan(&v))
			require.NoError(t, rows.Close())
			require.EqualValues(t, map[tenancy.ID]any{t1: "1", t2: int64(1)}[id], v) // database/sql's values
		}
	}
}

// TestMaxSchemasPerConn serves tenants through a pool of one connection and
// follows its backend: the connection is replaced right after it has served
// more schemas than the bound, and tenants sharing a schema count once.
func TestMaxSchemasPerConn(t *testing.T) {
	env := apptest.New(t)
	ctx := context.Background()
	pool, err := apptest.NewPool(ctx, env.Clusters[0].DSN(env.Roles.App, apptest.Database), 1)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	shard := &tenancy.Shard{Name: "one-conn", Pool: pool, Admin: env.Shards[0].Admin}
	own := make([]tenancy.ID, 3)
	var ps []*tenancy.Placement
	place := func(id tenancy.ID, schema string) {
		p, err := tenancy.NewPlacement(id, shard, schema, tenancy.DefaultLimits)
		require.NoError(t, err)
		ps = append(ps, p)
	}
	for i := range own {
		own[i] = tenancy.NewID()
		require.NoError(t, env.ApplySchema(ctx, 0, own[i].SchemaName()))
		place(own[i], own[i].SchemaName())
	}
	place(apptest.A, apptest.SharedSchema)
	place(apptest.B, apptest.SharedSchema)
	resolver := tenancy.NewStaticResolver(nil, ps...)

	for _, tt := range []struct {
		name  string
		bound int
		// the tenants served in turn, and whether each one finds a new
		// backend (the previous one was retired after its statement)
		steps []tenancy.ID
		fresh []bool
	}{
		{
			name:  "bound 2",
			bound: 2,
			steps: []tenancy.ID{own[0], own[1], own[0], apptest.A, apptest.B, apptest.A, own[2], own[0], own[1]},
			// A is the third schema: served, then the connection goes.
			// B and A share one schema; own[0] is the third again.
			fresh: []bool{false, false, false, false, true, false, false, false, true},
		},
		{
			name:  "no bound",
			bound: 0,
			steps: []tenancy.ID{own[0], own[1], apptest.A, own[2], apptest.B, own[0]},
			fresh: []bool{false, false, false, false, false, false},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pool.Reset() // a new connection: nothing served yet
			client := ent.NewClient(ent.Driver(tenancy.NewDriver(resolver, tenancy.WithMaxSchemasPerConn(tt.bound))))
			var prev int32
			for i, id := range tt.steps {
				rows, err := client.QueryContext(apptest.Ctx(id), "SELECT pg_backend_pid()")
				require.NoError(t, err)
				var pid int32
				require.True(t, rows.Next())
				require.NoError(t, rows.Scan(&pid))
				require.NoError(t, rows.Close())
				if i > 0 {
					require.Equal(t, tt.fresh[i], pid != prev, "step %d (tenant %s): backend %d after %d", i, id, pid, prev)
				}
				prev = pid
				require.LessOrEqual(t, pool.Stat().TotalConns(), int32(1))
			}
		})
	}
}
