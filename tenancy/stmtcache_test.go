package tenancy_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tenantry/tenantry/examples/app/ent"
	"github.com/tenantry/tenantry/examples/app/ent/customer"
	"github.com/tenantry/tenantry/internal/apptest"
	"github.com/tenantry/tenantry/tenancy"
)

// TestStatementPerSearchPath checks the driver's statement cache on one
// connection: a schema borrows another schema's statement description (and
// reads its own rows with an unnamed statement, leaving the lender's plan
// alone) until it has run the SQL a few times, then gets a statement of its
// own, so PostgreSQL stops re-planning on every schema switch.
func TestStatementPerSearchPath(t *testing.T) {
	env := apptest.New(t)
	ctx := context.Background()
	pool, err := apptest.NewPool(ctx, env.Clusters[0].DSN(env.Roles.App, apptest.Database), 1)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	shard := &tenancy.Shard{Name: "shard0-one-conn", Pool: pool, Admin: env.Shards[0].Admin}
	pa, err := tenancy.NewPlacement(apptest.A, shard, apptest.SharedSchema, tenancy.DefaultLimits)
	require.NoError(t, err)
	pc, err := tenancy.NewPlacement(apptest.C, shard, apptest.C.SchemaName(), tenancy.DefaultLimits)
	require.NoError(t, err)
	client := ent.NewClient(ent.Driver(tenancy.NewDriver(tenancy.NewStaticResolver(nil, pa, pc))))

	emailA, emailC := uniqueEmail(), uniqueEmail()
	client.Customer.Create().SetName("a").SetEmail(emailA).SaveX(apptest.Ctx(apptest.A))
	client.Customer.Create().SetName("c").SetEmail(emailC).SaveX(apptest.Ctx(apptest.C))

	get := func(id tenancy.ID) []string {
		got, err := client.Customer.Query().Where(customer.EmailIn(emailA, emailC)).Select(customer.FieldEmail).Strings(apptest.Ctx(id))
		require.NoError(t, err)
		return got
	}
	// statements returns how many prepared statements the connection holds
	// for the query, and how many times they ran with a plan (PostgreSQL
	// counts generic and custom plans per statement).
	statements := func() (n, plans int) {
		conn, err := pool.Acquire(ctx)
		require.NoError(t, err)
		defer conn.Release()
		require.NoError(t, conn.QueryRow(ctx,
			`SELECT count(*), coalesce(sum(generic_plans + custom_plans), 0) FROM pg_prepared_statements
			 WHERE name LIKE 'tenantry\_%' AND statement LIKE '%"customers"."email" IN%'`).Scan(&n, &plans))
		return n, plans
	}
	prepared := func() int { n, _ := statements(); return n }

	for range 3 {
		require.Equal(t, []string{emailA}, get(apptest.A))
	}
	n, plans := statements()
	require.Equal(t, 1, n)
	require.Equal(t, 3, plans)
	// C borrows A's statement description for its first runs: C's rows,
	// and A's statement does not run (nor get re-planned) for C.
	for range 2 {
		require.Equal(t, []string{emailC}, get(apptest.C))
		require.Equal(t, 1, prepared())
	}
	_, plans = statements()
	require.Equal(t, 3, plans, "C's runs went through an unnamed statement")
	// Then it earns its own.
	require.Equal(t, []string{emailC}, get(apptest.C))
	require.Equal(t, 2, prepared())
	for range 3 {
		require.Equal(t, []string{emailC}, get(apptest.C))
		require.Equal(t, []string{emailA}, get(apptest.A))
	}
	require.Equal(t, 2, prepared())
}
