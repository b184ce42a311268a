package router_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	entshard "github.com/tenantry/tenantry/ent/shard"
	"github.com/tenantry/tenantry/internal/apptest"
	"github.com/tenantry/tenantry/registry"
	"github.com/tenantry/tenantry/router"
	"github.com/tenantry/tenantry/tenancy"
)

// holds reports whether cond holds within d.
func holds(d time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return false
}

// TestPoolBuildErrorRetried: a placement whose pools could not be built
// (here the ConfigurePool hook failed, as when a secret store times out) is
// built again once the cause is gone, although the tenant's epoch did not
// change.
func TestPoolBuildErrorRetried(t *testing.T) {
	f := newFleet(t, nil)
	tn := f.tenant(t, "s0", "")
	var failing atomic.Bool
	failing.Store(true)
	r := f.router(t, router.Config{TTL: 300 * time.Millisecond, ConfigurePool: func(shard string, _ router.PoolKind, _ *pgxpool.Config) error {
		if shard == "s0" && failing.Load() {
			return context.DeadlineExceeded // e.g. the secret store timed out
		}
		return nil
	}})
	_, err := r.Resolve(context.Background(), tn.ID)
	require.Error(t, err, "the hook failed at start")
	failing.Store(false) // the secret store is back
	require.NoError(t, f.store.NotifyAll(context.Background()))
	ok := holds(3*time.Second, func() bool { _, err := r.Resolve(context.Background(), tn.ID); return err == nil })
	_, err = r.Resolve(context.Background(), tn.ID)
	require.True(t, ok, "tenant still failing after NotifyAll and ~10 TTL reloads: %v (stats %+v)", err, r.Stats())
}

// TestBadDSNFixedRecovers: the same through the registry, a bad DSN
// written by hand, then corrected.
func TestBadDSNFixedRecovers(t *testing.T) {
	f := newFleet(t, nil)
	tn := f.tenant(t, "s0", "")
	r := f.router(t, router.Config{TTL: 300 * time.Millisecond})
	ctx := context.Background()
	good := f.clusters[0].DSN("postgres", apptest.Database)
	require.NoError(t, f.store.Client().Shard.Update().Where(entshard.Name("s0")).SetDsn("bogus").Exec(ctx))
	require.NoError(t, f.store.NotifyAll(ctx))
	eventually(t, "the bad DSN", func() bool { _, err := r.Resolve(ctx, tn.ID); return err != nil })
	require.NoError(t, f.store.Client().Shard.Update().Where(entshard.Name("s0")).SetDsn(good).Exec(ctx))
	require.NoError(t, f.store.NotifyAll(ctx))
	ok := holds(3*time.Second, func() bool { _, err := r.Resolve(ctx, tn.ID); return err == nil })
	_, err := r.Resolve(ctx, tn.ID)
	require.True(t, ok, "DSN fixed + NotifyAll + TTL reloads, tenant still failing: %v", err)
}

// TestUnscopedShardWithoutTenantsFollowsDSN: unscoped access follows a DSN
// change of its shard even when no tenant of that shard is served (it used
// to follow only when a tenant's placement was rebuilt).
func TestUnscopedShardWithoutTenantsFollowsDSN(t *testing.T) {
	f := newFleet(t, nil)
	f.tenant(t, "s0", "")
	r := f.router(t, router.Config{TTL: 300 * time.Millisecond, UnscopedShard: "s1", UnscopedSchema: "public"})
	ctx := context.Background()
	before, err := r.ResolveUnscoped(ctx)
	require.NoError(t, err)
	require.NoError(t, f.store.Client().Shard.Update().Where(entshard.Name("s1")).
		SetDsn(f.clusters[1].DSN("postgres", apptest.Database)+"&application_name=after_failover").Exec(ctx))
	require.NoError(t, f.store.NotifyAll(ctx))
	ok := holds(3*time.Second, func() bool {
		p, err := r.ResolveUnscoped(ctx)
		return err == nil && p.Shard != before.Shard
	})
	require.True(t, ok, "unscoped access still on the pools of s1's old DSN after NotifyAll and TTL reloads")
}

// TestPartialReloadMovesOtherTenants: a reload of one tenant that sees its
// shard's new DSN replaces the shard's pools, which closes the old ones
// after RetiredPoolGrace; the shard's other tenants, whose cached
// placements hold the old pools, must move before then, without a
// NotifyAll (they used to fail with a closed pool until the TTL reload).
func TestPartialReloadMovesOtherTenants(t *testing.T) {
	f := newFleet(t, nil)
	a, b := f.tenant(t, "s0", ""), f.tenant(t, "s0", "")
	r := f.router(t, router.Config{RetiredPoolGrace: 100 * time.Millisecond})
	ctx := context.Background()
	pa, err := r.Resolve(ctx, a.ID)
	require.NoError(t, err)
	_, err = clientOf(r).Customer.Query().Count(ctxOf(b.ID))
	require.NoError(t, err)
	require.NoError(t, f.store.Client().Shard.Update().Where(entshard.Name("s0")).
		SetDsn(f.clusters[0].DSN("postgres", apptest.Database)+"&application_name=after_failover").Exec(ctx))
	_, err = f.store.SetPlan(ctx, a.ID, registry.DefaultPlan) // any change of tenant a: its epoch grows
	require.NoError(t, err)
	eventually(t, "a on new pools", func() bool { p, err := r.Resolve(ctx, a.ID); return err == nil && p.Shard != pa.Shard })
	time.Sleep(500 * time.Millisecond) // the grace
	_, err = clientOf(r).Customer.Query().Count(ctxOf(b.ID))
	require.NoError(t, err, "tenant b, served by the router, is on pools the router closed")
}

// TestRegistryEpochRollbackConverges: a registry that lost its last
// commits (failover to an asynchronous standby, a point-in-time restore)
// has lower epochs than the router cached. The full reload after the
// listener reconnects takes the registry's state as it is, so that the
// router neither keeps the lost state nor drops the next real change as
// "already as new".
func TestRegistryEpochRollbackConverges(t *testing.T) {
	f := newFleet(t, nil)
	tn := f.tenant(t, "s0", "")
	r := f.router(t, router.Config{TTL: 300 * time.Millisecond})
	ctx := context.Background()
	_, err := f.store.SetState(ctx, tn.ID, registry.ReadOnly)
	require.NoError(t, err)
	eventually(t, "fence", func() bool { p, err := r.Resolve(ctx, tn.ID); _, fenced := p.Fenced(); return err == nil && fenced })
	// The registry loses that last commit.
	admin, err := pgx.Connect(ctx, f.registryDSN)
	require.NoError(t, err)
	defer admin.Close(ctx)
	_, err = admin.Exec(ctx, `BEGIN;
		UPDATE tenants SET state = 'active' WHERE id = '`+tn.ID.String()+`';
		UPDATE placements SET epoch = epoch - 1 WHERE tenant_ref = '`+tn.ID.String()+`';
		COMMIT`)
	require.NoError(t, err)
	_, err = admin.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'tenantry-router'`)
	require.NoError(t, err)
	reconnects := r.Stats().Reconnects
	eventually(t, "reconnect", func() bool { return r.Stats().Reconnects > reconnects })
	// A real change after the failover: a new plan (epoch grows back to the
	// number the router has).
	require.NoError(t, f.store.PutPlan(ctx, registry.Plan{Name: "gold", Limits: tenancy.DefaultLimits}))
	_, err = f.store.SetPlan(ctx, tn.ID, "gold")
	require.NoError(t, err)
	ok := holds(3*time.Second, func() bool {
		p, err := r.Resolve(ctx, tn.ID)
		_, fenced := p.Fenced()
		return err == nil && !fenced && p.Limits.Plan == "gold"
	})
	p, _ := r.Resolve(ctx, tn.ID)
	st, _ := p.Fenced()
	require.True(t, ok, "router still serves the lost state: fence %q plan %q (registry: active, gold)", st, p.Limits.Plan)
}

// TestRegistryEpochRollbackRegrown: after the rollback, a real change
// brings the tenant's epoch back to the number the router has cached
// before the router reconnects. Its notification is dropped as "already
// as new", and the full reload after the reconnect sees the same epoch
// with other content: it must take it (it kept the lost, fenced state).
func TestRegistryEpochRollbackRegrown(t *testing.T) {
	f := newFleet(t, nil)
	tn := f.tenant(t, "s0", "")
	r := f.router(t, router.Config{TTL: time.Hour})
	ctx := context.Background()
	_, err := f.store.SetState(ctx, tn.ID, registry.ReadOnly)
	require.NoError(t, err)
	eventually(t, "fence", func() bool { p, err := r.Resolve(ctx, tn.ID); _, fenced := p.Fenced(); return err == nil && fenced })
	admin, err := pgx.Connect(ctx, f.registryDSN)
	require.NoError(t, err)
	defer admin.Close(ctx)
	_, err = admin.Exec(ctx, `BEGIN;
		UPDATE tenants SET state = 'active' WHERE id = '`+tn.ID.String()+`';
		UPDATE placements SET epoch = epoch - 1 WHERE tenant_ref = '`+tn.ID.String()+`';
		COMMIT`)
	require.NoError(t, err)
	require.NoError(t, f.store.PutPlan(ctx, registry.Plan{Name: "gold", Limits: tenancy.DefaultLimits}))
	_, err = f.store.SetPlan(ctx, tn.ID, "gold") // epoch back to the cached number
	require.NoError(t, err)
	time.Sleep(200 * time.Millisecond) // its notification: dropped as already as new
	_, err = admin.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'tenantry-router'`)
	require.NoError(t, err)
	ok := holds(5*time.Second, func() bool {
		p, err := r.Resolve(ctx, tn.ID)
		_, fenced := p.Fenced()
		return err == nil && !fenced && p.Limits.Plan == "gold"
	})
	p, _ := r.Resolve(ctx, tn.ID)
	st, _ := p.Fenced()
	require.True(t, ok, "router still serves the lost state: fence %q plan %q (registry: active, gold)", st, p.Limits.Plan)
}
