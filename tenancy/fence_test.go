package tenancy_test

import (
	"context"
	"database/sql"
	"testing"

	entsql "entgo.io/ent/dialect/sql"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/tenantry/tenantry/examples/app/ent"
	"github.com/tenantry/tenantry/examples/app/ent/customer"
	"github.com/tenantry/tenantry/internal/apptest"
	"github.com/tenantry/tenantry/tenancy"
)

// TestFenceWrites serves tenant C from a fenced placement: reads work, every
// kind of write fails with ErrTenantReadOnly and writes nothing, and the
// connection is not left read-only for the next tenant.
func TestFenceWrites(t *testing.T) {
	env := apptest.New(t)
	ctx := apptest.Ctx(apptest.C)
	email := uniqueEmail()
	env.Client.Customer.Create().SetName("before").SetEmail(email).SaveX(ctx)

	pool, err := pgxpool.New(context.Background(), env.Clusters[0].DSN(env.Roles.App, apptest.Database)+"&pool_max_conns=1")
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	shard := &tenancy.Shard{Name: "single", Pool: pool}
	fenced, err := tenancy.NewPlacement(apptest.C, shard, apptest.C.SchemaName(), tenancy.DefaultLimits, tenancy.FenceWrites("moving"))
	require.NoError(t, err)
	state, ok := fenced.Fenced()
	require.True(t, ok)
	require.Equal(t, "moving", state)
	open, err := tenancy.NewPlacement(apptest.A, shard, apptest.SharedSchema, tenancy.DefaultLimits)
	require.NoError(t, err)
	client := ent.NewClient(ent.Driver(tenancy.NewDriver(tenancy.NewStaticResolver(nil, fenced, open))))

	n, err := client.Customer.Query().Where(customer.Email(email)).Count(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, n, "reads of a fenced tenant are served")

	writes := fencedWrites(t, client, ctx, email)
	for name, write := range writes {
		t.Run(name, func(t *testing.T) {
			err := write()
			require.ErrorIs(t, err, tenancy.ErrTenantReadOnly)
			require.Contains(t, err.Error(), apptest.C.String())
			require.Contains(t, err.Error(), "moving")
			// The same (only) connection serves an unfenced tenant's write.
			_, err = client.Customer.Create().SetName("a").SetEmail(uniqueEmail()).Save(apptest.Ctx(apptest.A))
			require.NoError(t, err, "the fence outlived its transaction")
		})
	}
	cu, err := env.Client.Customer.Query().Where(customer.Email(email)).Only(ctx)
	require.NoError(t, err)
	require.Equal(t, "before", cu.Name, "a fenced write was applied")
	n, err = env.Client.Customer.Query().Count(ctx)
	require.NoError(t, err)
	require.NotZero(t, n, "a fenced delete was applied")
}

// TestReplicaReads routes read-only transactions of a ReplicaReads
// placement to the shard's replica pool (here: the other test cluster, told
// apart by its port) and everything else to the primary.
func TestReplicaReads(t *testing.T) {
	env := apptest.New(t)
	shard := &tenancy.Shard{Name: "with-replica", Pool: env.Shards[0].Pool, Replica: env.Shards[1].Pool}
	withReplica, err := tenancy.NewPlacement(apptest.C, shard, apptest.C.SchemaName(), tenancy.DefaultLimits, tenancy.ReplicaReads())
	require.NoError(t, err)
	require.True(t, withReplica.ReadsFromReplica())
	primaryOnly, err := tenancy.NewPlacement(apptest.A, shard, apptest.SharedSchema, tenancy.DefaultLimits)
	require.NoError(t, err)
	require.False(t, primaryOnly.ReadsFromReplica())
	client := ent.NewClient(ent.Driver(tenancy.NewDriver(tenancy.NewStaticResolver(nil, withReplica, primaryOnly))))

	port := func(ctx context.Context, opts *sql.TxOptions) int {
		t.Helper()
		var (
			rows *entsql.Rows
			err  error
		)
		if opts == nil {
			rows, err = client.QueryContext(ctx, "SELECT inet_server_port()")
		} else {
			tx, terr := client.BeginTx(ctx, opts)
			require.NoError(t, terr)
			defer func() { require.NoError(t, tx.Commit()) }()
			rows, err = tx.QueryContext(ctx, "SELECT inet_server_port()")
		}
		require.NoError(t, err)
		defer rows.Close()
		require.True(t, rows.Next(), "no row: %v", rows.Err())
		var p int
		require.NoError(t, rows.Scan(&p))
		return p
	}
	primary, replica := env.Clusters[0].Port(), env.Clusters[1].Port()
	c, a := apptest.Ctx(apptest.C), apptest.Ctx(apptest.A)
	require.Equal(t, replica, port(c, &sql.TxOptions{ReadOnly: true}))
	require.Equal(t, primary, port(c, &sql.TxOptions{}))
	require.Equal(t, primary, port(c, nil))
	require.Equal(t, primary, port(a, &sql.TxOptions{ReadOnly: true}))
}

// TestStaleRouterMeetsDatabaseFence: a move revokes the app role's writes
// on the source schema after routers were told by the registry; a router
// that has not learned it yet (its placement is not fenced) gets
// ErrTenantReadOnly, retryable, for every kind of write, not a raw
// permission error, while reads are served and a read the role may not do
// keeps its own error.
func TestStaleRouterMeetsDatabaseFence(t *testing.T) {
	env := apptest.New(t)
	bg := context.Background()
	id := tenancy.NewID()
	require.NoError(t, env.ApplySchema(bg, 0, id.SchemaName()))
	super, err := pgxpool.New(bg, env.Clusters[0].DSN("postgres", apptest.Database))
	require.NoError(t, err)
	t.Cleanup(super.Close)
	p, err := tenancy.NewPlacement(id, env.Shards[0], id.SchemaName(), tenancy.DefaultLimits)
	require.NoError(t, err)
	client := ent.NewClient(ent.Driver(tenancy.NewDriver(tenancy.NewStaticResolver(nil, p))))
	ctx := tenancy.WithTenant(bg, id)
	email := uniqueEmail()
	client.Customer.Create().SetName("before").SetEmail(email).SaveX(ctx)

	_, err = super.Exec(bg, "REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA "+id.SchemaName()+" FROM "+env.Roles.App)
	require.NoError(t, err)
	writes := fencedWrites(t, client, ctx, email)
	for name, write := range writes {
		t.Run(name, func(t *testing.T) {
			err := write()
			require.ErrorIs(t, err, tenancy.ErrTenantReadOnly)
			require.Contains(t, err.Error(), "check the grants of schema "+id.SchemaName())
		})
	}
	n, err := client.Customer.Query().Where(customer.Email(email)).Count(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, n, "reads are served, nothing was written")
	_, err = client.QueryContext(ctx, "SELECT * FROM pg_authid")
	require.Error(t, err)
	require.NotErrorIs(t, err, tenancy.ErrTenantReadOnly, "a read the role may not do is not a fence")

	_, err = super.Exec(bg, "GRANT INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "+id.SchemaName()+" TO "+env.Roles.App)
	require.NoError(t, err)
	_, err = client.Customer.Create().SetName("after").SetEmail(uniqueEmail()).Save(ctx)
	require.NoError(t, err, "writes resume with the grants")
}

// fencedWrites returns every kind of write of a tenant whose writes are
// fenced, by name: each must fail and write nothing (the transaction's read
// before its write must be served).
func fencedWrites(t *testing.T, client *ent.Client, ctx context.Context, email string) map[string]func() error {
	return map[string]func() error{
		"create (INSERT RETURNING, query path)": func() error {
			_, err := client.Customer.Create().SetName("x").SetEmail(uniqueEmail()).Save(ctx)
			return err
		},
		"update (exec path)": func() error {
			_, err := client.Customer.Update().Where(customer.Email(email)).SetName("changed").Save(ctx)
			return err
		},
		"raw delete": func() error {
			_, err := client.ExecContext(ctx, "DELETE FROM customers")
			return err
		},
		"write in a transaction": func() error {
			tx, err := client.Tx(ctx)
			if err != nil {
				return err
			}
			defer tx.Rollback()
			if _, err := tx.Customer.Query().Count(ctx); err != nil {
				t.Fatalf("read in a fenced transaction: %v", err)
			}
			_, err = tx.Customer.Create().SetName("x").SetEmail(uniqueEmail()).Save(ctx)
			return err
		},
	}
}
