package router

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	entshard "github.com/tenantry/tenantry/ent/shard"
	"github.com/tenantry/tenantry/internal/pgtest"
	"github.com/tenantry/tenantry/registry"
	"github.com/tenantry/tenantry/tenancy"
)

// TestStaleMissKeepsNewerPools: a miss whose registry read happened before
// a shard's DSN change finishes after the NotifyAll reload. Building its
// entry must not swap the shard back to its old DSN (which retired the
// current pools and closed them under every cached placement of the shard
// after the grace).
func TestStaleMissKeepsNewerPools(t *testing.T) {
	ctx := context.Background()
	st, regDSN := newRegistry(t)
	oldDSN := regDSN
	tn, err := st.CreateTenant(ctx, registry.NewTenant{Slug: "a"}, nil)
	require.NoError(t, err)
	r, err := New(ctx, Config{RegistryDSN: regDSN, AppRole: "postgres", AdminRole: "postgres", TTL: time.Hour,
		RetiredPoolGrace: 100 * time.Millisecond, UnscopedShard: "s0", UnscopedSchema: "public"})
	require.NoError(t, err)
	defer r.Close()

	// A miss starts: its seq, then its registry read, before the change.
	staleSeq := r.seq.Add(1)
	staleRoutes, err := r.store.Routes(ctx, tn.ID)
	require.NoError(t, err)

	// Failover: new DSN, routers told to reload everything.
	require.NoError(t, st.Client().Shard.Update().Where(entshard.Name("s0")).SetDsn(oldDSN+"&application_name=new_primary").Exec(ctx))
	p0, _ := r.Resolve(ctx, tn.ID)
	require.NoError(t, st.NotifyAll(ctx))
	var p1 *tenancy.Placement
	require.Eventually(t, func() bool { p1, _ = r.Resolve(ctx, tn.ID); return p1 != nil && p1.Shard != p0.Shard }, 10*time.Second, time.Millisecond)

	// The stale miss finishes.
	r.apply(staleRoutes, staleSeq, false, false, []tenancy.ID{tn.ID})

	u, _ := r.ResolveUnscoped(ctx)
	t.Logf("unscoped application_name now %q", u.Shard.Pool.Config().ConnConfig.RuntimeParams["application_name"])
	time.Sleep(500 * time.Millisecond) // the grace
	p2, err := r.Resolve(ctx, tn.ID)
	require.NoError(t, err)
	require.Same(t, p1, p2, "the cached placement is still the new one")
	conn, err := p2.Shard.Pool.Acquire(ctx)
	if err == nil {
		conn.Release()
	}
	require.NoError(t, err, "the router serves a placement on pools it closed")
}

// TestMissFinishingAfterCloseOpensNoPools: Close does not wait for misses
// in flight; one that finishes after Close must not open pools, which
// nothing would close (nor pgxpool's health-check goroutine).
func TestMissFinishingAfterCloseOpensNoPools(t *testing.T) {
	ctx := context.Background()
	st, regDSN := newRegistry(t)
	r, err := New(ctx, Config{RegistryDSN: regDSN, AppRole: "postgres", AdminRole: "postgres", TTL: time.Hour})
	require.NoError(t, err)
	tn, err := st.CreateTenant(ctx, registry.NewTenant{Slug: "late"}, nil)
	require.NoError(t, err)
	// The miss: seq and registry read done ...
	seq := r.seq.Add(1)
	routes, err := r.store.Routes(ctx, tn.ID)
	require.NoError(t, err)
	require.NoError(t, r.Close())                           // ... the application shuts down ...
	r.apply(routes, seq, false, false, []tenancy.ID{tn.ID}) // ... and the miss finishes.
	r.shardMu.Lock()
	n := len(r.shards)
	r.shardMu.Unlock()
	require.Zero(t, n, "pools opened after Close returned; nothing will close them")
}

// newRegistry creates a registry database whose one shard, s0, is the
// registry's own database (the routers here connect as postgres).
func newRegistry(t *testing.T) (*registry.Store, string) {
	t.Helper()
	ctx := context.Background()
	c := pgtest.Shards(t, 1)[0]
	name := fmt.Sprintf("registry_stale_%d", time.Now().UnixNano())
	require.NoError(t, c.CreateDatabase(ctx, name))
	dsn := c.DSN("postgres", name)
	st, err := registry.Open(ctx, dsn)
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	require.NoError(t, st.Init(ctx))
	require.NoError(t, st.AddShard(ctx, registry.Shard{Name: "s0", DSN: dsn, Accepting: true}))
	return st, dsn
}
