package move_test

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/tenantry/tenantry/internal/pgtest"
	"github.com/tenantry/tenantry/migrate"
	"github.com/tenantry/tenantry/registry"
	"github.com/tenantry/tenantry/tenancy"
	"github.com/tenantry/tenantry/tenancy/backup"
	"github.com/tenantry/tenantry/tenancy/move"
)

// TestRetryKeepsOtherTenantsSharedSchema: a move out of a shared schema
// stages the copy in a schema of the shared schema's name on the target.
// After a rolled-back attempt, the target shard gets shared tenants of its
// own, in a schema of that very name: a retry must refuse it as taken
// (ErrTargetExists), not drop it as its own leftover with their data (it
// did, found by a review).
func TestRetryKeepsOtherTenantsSharedSchema(t *testing.T) {
	// s1 is a database of its own: the shared schema this test leaves there
	// would stand in the way of other tests' moves to the common one.
	f := newFleet(t, twoShards(t)[0], shardSpec{"s1", pgtest.Shards(t, 2)[1], "move_retry"})
	r := f.router(t)
	client := clientOf(r)
	ctx := context.Background()
	x := f.sharedTenant(t, "s0")
	seed(t, client, x.ID, 3)

	failing := f.mover(t, move.Config{OnPhase: func(_ context.Context, _ tenancy.ID, p move.Phase) error {
		if p == move.PhaseCatchup {
			return errors.New("operator gave up")
		}
		return nil
	}})
	_, err := failing.Move(ctx, move.Request{Tenant: x.Slug, Shard: "s1"})
	perr := requireRolledBack(t, err, move.PhaseCatchup)
	require.NoError(t, perr.Cleanup, "cleanly rolled back")
	require.False(t, schemaExists(t, f.super(t, "s1"), x.Placement.Schema))

	// Later, shard s1 gets a shared tenant of its own.
	y := f.sharedTenant(t, "s1")
	require.Equal(t, x.Placement.Schema, y.Placement.Schema)
	seed(t, client, y.ID, 4)
	require.Equal(t, 4, tenantRows(t, f.super(t, "s1"), y.Placement.Schema, y.ID))

	// Retry the move.
	_, err = f.mover(t, move.Config{}).Move(ctx, move.Request{Tenant: x.Slug, Shard: "s1"})
	require.ErrorIs(t, err, move.ErrTargetExists)
	var n int
	qerr := f.super(t, "s1").QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{y.Placement.Schema, "customers"}.Sanitize()+" WHERE tenant_id = $1", y.ID).Scan(&n)
	t.Logf("tenant %s on s1 after the retry: %d customers (err %v)", y.Slug, n, qerr)
	require.NoError(t, qerr)
	require.Equal(t, 4, n, "another tenant's rows on the target must survive a move attempt")
}

// TestReadOnlyTenantStaysReadOnly: a tenant an operator made read-only is
// still read-only after a move (the cutover used to set it active).
func TestReadOnlyTenantStaysReadOnly(t *testing.T) {
	f := newFleet(t, twoShards(t)...)
	r := f.router(t)
	client := clientOf(r)
	ctx := context.Background()
	tn := f.tenant(t, "s0")
	seed(t, client, tn.ID, 3)
	_, err := f.store.SetState(ctx, tn.ID, registry.ReadOnly)
	require.NoError(t, err)

	m := f.mover(t, move.Config{})
	res, err := m.Move(ctx, move.Request{Tenant: tn.Slug, Shard: "s1"})
	require.NoError(t, err)
	require.True(t, res.Verified)
	got, err := f.store.Tenant(ctx, tn.Slug)
	require.NoError(t, err)
	require.Equal(t, registry.ReadOnly, got.State, "an operator's read_only must survive a move")
}

// TestBackupDuringMove: a move keeps its marker table in the tenant's own
// schema for the whole copy and catch-up. A backup taken meanwhile must
// succeed (it failed: the owner role may not lock the mover's table) and
// be restorable (an archive with the marker is refused as ahead of the
// desired state).
func TestBackupDuringMove(t *testing.T) {
	f := newFleet(t, twoShards(t)...)
	r := f.router(t)
	client := clientOf(r)
	ctx := context.Background()
	tn := f.tenant(t, "s0")
	seed(t, client, tn.ID, 3)

	store, err := backup.NewDir(t.TempDir())
	require.NoError(t, err)
	bm, err := backup.New(backup.Config{Store: store, Desired: f.desired})
	require.NoError(t, err)
	ownerPool := func(shard string) *pgxpool.Pool {
		s := f.shards[shard]
		p, err := pgxpool.New(ctx, s.cluster.DSN(migrate.DefaultRoles().Owner, s.db))
		require.NoError(t, err)
		t.Cleanup(p.Close)
		return p
	}
	var man *backup.Manifest
	var berr error
	m := f.mover(t, move.Config{OnPhase: func(ctx context.Context, _ tenancy.ID, p move.Phase) error {
		if p == move.PhaseCatchup {
			man, berr = bm.Backup(ctx, tn.ID, backup.Source{Shard: "s0", DB: ownerPool("s0"), Schema: tn.Placement.Schema, Mode: backup.ModeSchema}, backup.BackupOptions{})
		}
		return nil
	}})
	_, err = m.Move(ctx, move.Request{Tenant: tn.Slug, Shard: "s1"})
	require.NoError(t, err)
	require.NoError(t, berr, "a backup taken during a move must succeed (and be restorable)")
	for _, tb := range man.Tables {
		t.Logf("archived table %s (%d rows)", tb.Name, tb.Rows)
	}
	clone := tenancy.NewID()
	_, err = bm.Restore(ctx, man.Name, backup.Target{Shard: "s1", DB: ownerPool("s1"), Schema: clone.SchemaName(), Mode: backup.ModeSchema},
		backup.RestoreOptions{Tenant: clone})
	require.NoError(t, err, "an archive that Backup accepted must be restorable")
}

// TestSourceDownDuringFence: the source shard goes down while the tenant
// is fenced, so the rollback cannot give its writes back. The move fails
// saying so, and keeps its job for an abort: once the source is back, the
// abort lifts the fence and removes the replication objects. (The job used
// to be finished as failed, leaving the tenant "moving" with nothing that
// could lift the fence, and the source keeping the slot.)
func TestSourceDownDuringFence(t *testing.T) {
	ctx := context.Background()
	source, err := pgtest.Start(ctx, pgtest.Options{Name: "move-review-src", Settings: map[string]string{"wal_retrieve_retry_interval": "100ms"}})
	require.NoError(t, err)
	t.Cleanup(func() { source.Close() })
	f := newFleet(t, shardSpec{"src", source, "app"}, twoShards(t)[1])
	r := f.router(t)
	client := clientOf(r)
	tn := f.tenant(t, "src")
	seed(t, client, tn.ID, 5)

	m := f.mover(t, move.Config{OnPhase: func(ctx context.Context, _ tenancy.ID, p move.Phase) error {
		if p == move.PhaseSync {
			require.NoError(t, source.Kill())
			return errors.New("source shard crashed")
		}
		return nil
	}})
	_, err = m.Move(ctx, move.Request{Tenant: tn.Slug, Shard: "s1"})
	require.ErrorContains(t, err, "tenants move -abort "+tn.Slug, "the error says what to do")

	require.NoError(t, source.Restart(ctx))

	// The operator does what the error says: abort once the source is back.
	require.NoError(t, m.Abort(ctx, tn.Slug))
	got, err := f.store.Tenant(ctx, tn.Slug)
	require.NoError(t, err)
	require.Equal(t, registry.Active, got.State, "the fence is lifted")
	eventually(t, "a write of the tenant", func() bool {
		_, err := client.Customer.Create().SetName("after").SetEmail("after@example.com").Save(ctxOf(tn.ID))
		return err == nil
	})
	require.Empty(t, f.leftovers(t, "src", tn.ID))
	require.Empty(t, f.leftovers(t, "s1", tn.ID))
}
