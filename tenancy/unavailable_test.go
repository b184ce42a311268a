package tenancy_test

import (
	"context"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/tenantry/tenantry/examples/app/ent"
	"github.com/tenantry/tenantry/examples/app/ent/customer"
	appmigrate "github.com/tenantry/tenantry/examples/app/ent/migrate"
	"github.com/tenantry/tenantry/internal/apptest"
	"github.com/tenantry/tenantry/internal/pgtest"
	"github.com/tenantry/tenantry/migrate"
	"github.com/tenantry/tenantry/tenancy"
)

// TestShardUnavailable kills a shard's server under a pool with live
// connections: every kind of call (statement, query, transaction) fails
// with a *ShardUnavailableError, and after a restart the same driver and
// pool serve the tenant again without any manual step.
func TestShardUnavailable(t *testing.T) {
	ctx := context.Background()
	c, shard, id, client, tctx := killableTenant(t, "doomed", nil)

	calls := []struct {
		name string
		run  func() error
	}{
		{"insert", func() error {
			return client.Customer.Create().SetName("c").SetEmail(uuid.NewString() + "@x.test").Exec(tctx)
		}},
		{"query", func() error { _, err := client.Customer.Query().Where(customer.Name("c")).All(tctx); return err }},
		{"transaction", func() error {
			tx, err := client.Tx(tctx)
			if err != nil {
				return err
			}
			if err := tx.Customer.Create().SetName("c").SetEmail(uuid.NewString() + "@x.test").Exec(tctx); err != nil {
				tx.Rollback()
				return err
			}
			return tx.Commit()
		}},
	}
	// Fill the pool with live connections that the kill will break.
	warm := func() {
		done := make(chan error, 8)
		for range 8 {
			go func() { done <- calls[0].run() }()
		}
		for range 8 {
			require.NoError(t, <-done)
		}
	}
	warm()
	require.Positive(t, shard.Pool.Stat().IdleConns())

	// A statement cancelled by its caller's deadline breaks its connection
	// (pgx closes it), but it is the caller's doing: a deadline error, and
	// the pool keeps its other connections.
	idle := shard.Pool.Stat().IdleConns()
	sctx, cancel := context.WithTimeout(tctx, 100*time.Millisecond)
	_, err := client.ExecContext(sctx, "SELECT pg_sleep(5)")
	cancel()
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.NotErrorIs(t, err, tenancy.ErrShardUnavailable)
	require.GreaterOrEqual(t, shard.Pool.Stat().IdleConns(), idle-1, "the pool was reset after a caller's timeout")
	warm()

	require.NoError(t, c.Kill())
	for round := range 3 { // pooled connections first, then refused connects
		for _, call := range calls {
			err := call.run()
			require.ErrorIs(t, err, tenancy.ErrShardUnavailable, "round %d, %s: %v", round, call.name, err)
			var ue *tenancy.ShardUnavailableError
			require.ErrorAs(t, err, &ue)
			require.Equal(t, "doomed", ue.Shard)
			require.Equal(t, id, ue.Tenant)
			require.Equal(t, 2*time.Second, ue.RetryAfter())
		}
	}
	// A caller's own deadline stays the caller's.
	dctx, cancel := context.WithTimeout(tctx, time.Nanosecond)
	defer cancel()
	<-dctx.Done()
	_, err = client.Customer.Query().All(dctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.NotErrorIs(t, err, tenancy.ErrShardUnavailable)

	require.NoError(t, c.Restart(ctx))
	for _, call := range calls {
		require.NoError(t, call.run(), "%s after the restart", call.name)
	}
	n, err := client.Customer.Query().Count(tctx)
	require.NoError(t, err)
	require.Equal(t, 2*8+2, n, "the rows written before the kill and after the restart")
}

// TestQuickRestartDropsStaleConnections restarts a killed shard before the
// pool noticed: its idle connections are not pinged on acquire (pgxpool
// pings only connections idle for more than a second; the test's pool never
// pings, so the scenario does not depend on how fast the restart is). The
// first call on a broken connection fails with ErrShardUnavailable and
// makes the pool drop the others, so the next calls succeed instead of
// failing once per stale connection.
func TestQuickRestartDropsStaleConnections(t *testing.T) {
	ctx := context.Background()
	c, shard, _, client, tctx := killableTenant(t, "bouncy", func(cfg *pgxpool.Config) {
		cfg.ShouldPing = func(context.Context, pgxpool.ShouldPingParams) bool { return false }
	})
	read := func() error { _, err := client.Customer.Query().Count(tctx); return err }

	// Fill the pool with live connections: each transaction holds one
	// until all of them do (a sleep instead left a slow machine's late
	// goroutines reusing the connections of the early ones).
	const conns = 4
	done := make(chan error, conns)
	held := make(chan struct{}, conns)
	hold := make(chan struct{})
	for range conns {
		go func() {
			tx, err := client.Tx(tctx)
			if err == nil {
				_, err = tx.Customer.Query().Count(tctx)
			}
			held <- struct{}{}
			<-hold
			if tx != nil {
				tx.Rollback()
			}
			done <- err
		}()
	}
	for range conns {
		<-held
	}
	close(hold)
	for range conns {
		require.NoError(t, <-done)
	}
	require.GreaterOrEqual(t, int(shard.Pool.Stat().IdleConns()), conns)

	require.NoError(t, c.Kill())
	require.NoError(t, c.Restart(ctx))
	err := read()
	require.ErrorIs(t, err, tenancy.ErrShardUnavailable, "the first call meets a stale connection")
	for i := range conns {
		require.NoError(t, read(), "call %d after the restart", i+2)
	}
}

// TestTerminatedBackendKeepsThePool: one backend ended alone
// (pg_terminate_backend, SQLSTATE 57P01 like a shutdown) fails its own
// statement with ErrShardUnavailable, but the server is up, so the pool's
// other connections stay: the shard's other tenants do not all reconnect.
func TestTerminatedBackendKeepsThePool(t *testing.T) {
	env := apptest.New(t)
	ctx := context.Background()
	pool, err := apptest.NewPool(ctx, env.Clusters[0].DSN(env.Roles.App, apptest.Database), 4)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	shard := &tenancy.Shard{Name: "shard0-terminate", Pool: pool, Admin: env.Shards[0].Admin}
	p, err := tenancy.NewPlacement(apptest.C, shard, apptest.C.SchemaName(), tenancy.DefaultLimits)
	require.NoError(t, err)
	client := ent.NewClient(ent.Driver(tenancy.NewDriver(tenancy.NewStaticResolver(nil, p))))
	tctx := apptest.Ctx(apptest.C)

	// Four live connections; remember their backends.
	backends := func() map[uint32]bool {
		conns := make([]*pgxpool.Conn, 0, 4)
		defer func() {
			for _, c := range conns {
				c.Release()
			}
		}()
		out := map[uint32]bool{}
		for range 4 {
			c, err := pool.Acquire(ctx)
			require.NoError(t, err)
			conns = append(conns, c)
			out[c.Conn().PgConn().PID()] = true
		}
		return out
	}
	before := backends()
	require.Len(t, before, 4)

	tx, err := client.Tx(tctx)
	require.NoError(t, err)
	_, err = tx.Customer.Query().Count(tctx)
	require.NoError(t, err)
	super, err := pgx.Connect(ctx, env.Clusters[0].SuperuserDSN())
	require.NoError(t, err)
	t.Cleanup(func() { super.Close(ctx) })
	var victim uint32
	require.NoError(t, super.QueryRow(ctx,
		`SELECT pid FROM pg_stat_activity WHERE state = 'idle in transaction' AND pid = ANY ($1)`,
		slices.Collect(maps.Keys(before))).Scan(&victim))
	var ok bool
	require.NoError(t, super.QueryRow(ctx, `SELECT pg_terminate_backend($1)`, victim).Scan(&ok))
	require.True(t, ok)
	_, err = tx.Customer.Query().Count(tctx)
	require.ErrorIs(t, err, tenancy.ErrShardUnavailable)
	tx.Rollback()

	after := backends()
	delete(before, victim)
	for pid := range before {
		require.True(t, after[pid], "backend %d of the pool was closed when backend %d alone was terminated", pid, victim)
	}
}

// killableTenant starts a cluster of the test's own (it gets killed), a
// shard on it whose app pool configure may change, and one tenant in its
// own schema; it returns the cluster, the shard, the tenant, a client over
// that tenant and the tenant's context.
func killableTenant(t *testing.T, shardName string, configure func(*pgxpool.Config)) (*pgtest.Cluster, *tenancy.Shard, tenancy.ID, *ent.Client, context.Context) {
	t.Helper()
	ctx := context.Background()
	c, err := pgtest.Start(ctx, pgtest.Options{Name: shardName, Settings: map[string]string{"synchronous_commit": "on"}})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	roles := migrate.DefaultRoles()
	shard, err := apptest.PrepareShard(ctx, c, roles, shardName)
	require.NoError(t, err)
	if configure != nil {
		cfg := shard.Pool.Config()
		configure(cfg)
		shard.Pool.Close()
		shard.Pool, err = pgxpool.NewWithConfig(ctx, cfg)
		require.NoError(t, err)
	}
	t.Cleanup(func() { shard.Pool.Close(); shard.Admin.Close() })
	desired, err := migrate.NewDesired(appmigrate.Tables)
	require.NoError(t, err)
	id := tenancy.NewID()
	_, err = apptest.ApplySchema(ctx, c, roles, desired, id.SchemaName())
	require.NoError(t, err)
	p, err := tenancy.NewPlacement(id, shard, id.SchemaName(), tenancy.DefaultLimits)
	require.NoError(t, err)
	return c, shard, id, ent.NewClient(ent.Driver(tenancy.NewDriver(tenancy.NewStaticResolver(nil, p)))), tenancy.WithTenant(ctx, id)
}
