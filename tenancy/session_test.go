package tenancy_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tenantry/tenantry/examples/app/ent"
	"github.com/tenantry/tenantry/internal/apptest"
	"github.com/tenantry/tenantry/tenancy"
)

// TestUnscopedSessionChanges: admin code changes session state on its
// connection through Unscoped raw SQL. Later Unscoped work on the same
// one-connection admin pool still runs with the placement's limits and the
// connection's own session values: a SET, RESET or DISCARD closes the
// connection on release, and the limits are sent whatever the session
// values (a set_config(..., false) inside a SELECT has no tag to tell).
func TestUnscopedSessionChanges(t *testing.T) {
	client, uctx := oneAdminConn(t)
	show := func(setting string) string {
		rows, err := client.QueryContext(uctx, "SELECT current_setting($1)", setting)
		require.NoError(t, err)
		defer rows.Close()
		var s string
		require.True(t, rows.Next())
		require.NoError(t, rows.Scan(&s))
		require.NoError(t, rows.Close())
		return s
	}
	timeout, zone := show("statement_timeout"), show("TimeZone")
	require.Equal(t, "30s", timeout)

	for _, change := range []string{
		"SET statement_timeout = 0",
		"SET TIME ZONE 'Pacific/Apia'",
		"SELECT set_config('statement_timeout', '0', false)",
		"query: SET TIME ZONE 'Pacific/Apia'", // through QueryContext
	} {
		if q, ok := strings.CutPrefix(change, "query: "); ok {
			rows, err := client.QueryContext(uctx, q)
			require.NoError(t, err, change)
			require.NoError(t, rows.Close(), change)
		} else {
			_, err := client.ExecContext(uctx, change)
			require.NoError(t, err, change)
		}
		require.Equal(t, timeout, show("statement_timeout"), "after %q", change)
		if change != "SELECT set_config('statement_timeout', '0', false)" {
			require.Equal(t, zone, show("TimeZone"), "after %q", change)
		}
	}
}

// oneAdminConn returns a client whose admin pool has one connection, and
// an Unscoped context of tenant C for it.
func oneAdminConn(t *testing.T) (*ent.Client, context.Context) {
	t.Helper()
	env := apptest.New(t)
	admin, err := apptest.NewPool(context.Background(), env.Clusters[0].DSN(env.Roles.Admin, apptest.Database), 1)
	require.NoError(t, err)
	t.Cleanup(admin.Close)
	shard := &tenancy.Shard{Name: "one-admin-conn", Pool: env.Shards[0].Pool, Admin: admin}
	p, err := tenancy.NewPlacement(apptest.C, shard, apptest.C.SchemaName(), tenancy.DefaultLimits)
	require.NoError(t, err)
	client := ent.NewClient(ent.Driver(tenancy.NewDriver(tenancy.NewStaticResolver(nil, p))))
	return client, quietUnscoped(apptest.Ctx(apptest.C))
}
