package provision_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tenantry/tenantry/registry"
)

// TestSlugThatIsAnID: a slug that reads as a tenant id is refused; it
// would name that other tenant to every command that takes a tenant
// (suspend, offboard -hard -force, ...).
func TestSlugThatIsAnID(t *testing.T) {
	f := newFixture(t)
	victim := f.create(t, registry.NewTenant{Slug: "victim", Shard: "s0"})
	_, err := f.store.CreateTenant(t.Context(), registry.NewTenant{Slug: victim.ID.String(), Shard: "s0"}, f.prov.Apply)
	require.ErrorIs(t, err, registry.ErrInvalid)
	got, err := f.store.Tenant(t.Context(), victim.ID.String())
	require.NoError(t, err)
	require.Equal(t, victim.ID, got.ID)
}

// TestSchemaOfAnotherTenant: a tenant of its own schema cannot be placed in
// the schema of another tenant of the shard (offboarding it would retire
// and purge drop the other's data), nor in a spare schema.
func TestSchemaOfAnotherTenant(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	victim := f.create(t, registry.NewTenant{Slug: "victim", Shard: "s0"})
	addCustomers(t, f.router(t), victim.ID, 3)
	_, err := f.store.CreateTenant(ctx, registry.NewTenant{Slug: "other", Shard: "s0", Schema: victim.Placement.Schema}, f.prov.Apply)
	require.ErrorIs(t, err, registry.ErrExists)
	_, err = f.store.CreateTenant(ctx, registry.NewTenant{Slug: "spare", Shard: "s0", Schema: "tenant_spare_0123"}, f.prov.Apply)
	require.ErrorIs(t, err, registry.ErrInvalid)
	require.Equal(t, 1, f.count(t, "s0", `SELECT count(*) FROM pg_namespace WHERE nspname = $1`, victim.Placement.Schema))
}

// ops lets a test run something inside a shard-side operation.
type ops struct {
	registry.OffboardOps
	beforePurge   func(ctx context.Context)
	afterUnretire func()
}

func (o ops) Purge(ctx context.Context, sh registry.Shard, ob registry.Offboarding) error {
	if o.beforePurge != nil {
		o.beforePurge(ctx)
	}
	return o.OffboardOps.Purge(ctx, sh, ob)
}

func (o ops) Unretire(ctx context.Context, sh registry.Shard, ob registry.Offboarding) error {
	err := o.OffboardOps.Unretire(ctx, sh, ob)
	if err == nil && o.afterUnretire != nil {
		o.afterUnretire()
	}
	return err
}

// TestInterruptedRestoreCanBeOffboarded: a restore of an offboarded
// tenant renames its schema back, then fails to record it. Offboarding
// again retires the schema again, and a hard offboarding purges it (both
// failed for good: "not retired: retire it first").
func TestInterruptedRestoreCanBeOffboarded(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	x := f.create(t, registry.NewTenant{Slug: "x", Shard: "s0"})
	_, err := f.store.Offboard(ctx, x.ID, registry.OffboardOptions{Retention: time.Hour}, f.prov)
	require.NoError(t, err)
	rctx, cancel := context.WithCancel(ctx)
	_, err = f.store.RestoreOffboarded(rctx, x.ID, ops{OffboardOps: f.prov, afterUnretire: cancel})
	require.Error(t, err, "the registry write fails (context cancelled after the rename)")
	tn, err := f.store.Tenant(ctx, "x")
	require.NoError(t, err)
	require.Equal(t, registry.Offboarded, tn.State)
	// "offboard again" (the advice of the purge error), then hard+force.
	_, err = f.store.Offboard(ctx, x.ID, registry.OffboardOptions{}, f.prov)
	require.NoError(t, err, "offboard again")
	require.Zero(t, f.count(t, "s0", `SELECT count(*) FROM pg_namespace WHERE nspname = $1`, x.Placement.Schema), "the live schema is retired again")
	_, err = f.store.Offboard(ctx, x.ID, registry.OffboardOptions{Hard: true, Force: true}, f.prov)
	require.NoError(t, err, "offboard -hard -force")
}

// TestOffboardWaitsForRunningJob: offboarding a tenant whose move was
// stuck (its mover killed) retired the schema with the move's marker table
// in it, and no restore of it worked after; the abort then claimed the
// tenant served by its source. A running job is to end first.
func TestOffboardWaitsForRunningJob(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	x := f.create(t, registry.NewTenant{Slug: "x", Shard: "s0"})
	job, err := f.store.StartJob(ctx, "move", x.ID, "mover-1", "copy", nil)
	require.NoError(t, err)
	_, err = f.store.Offboard(ctx, x.ID, registry.OffboardOptions{Retention: time.Hour}, f.prov)
	require.ErrorIs(t, err, registry.ErrJobRunning)
	tn, err := f.store.Tenant(ctx, "x")
	require.NoError(t, err)
	require.Equal(t, registry.Active, tn.State, "nothing changed")
	require.NoError(t, f.store.FinishJob(ctx, job.ID, "mover-1", registry.JobAborted, "aborted"))
	_, err = f.store.Offboard(ctx, x.ID, registry.OffboardOptions{Retention: time.Hour}, f.prov)
	require.NoError(t, err)
}

// TestPurgeRacesRestoreShared: an operator restores a shared tenant while
// a purge of it is under way. One of them must win whole: the tenant
// deleted with its rows (the restore refused), or restored with its rows.
// (The purge used to delete the rows of the tenant just restored, and
// report success: served, empty, recorded as restored and purged.)
func TestPurgeRacesRestoreShared(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	p := f.create(t, registry.NewTenant{Slug: "p", Mode: registry.ModeShared, Shard: "s0"})
	addCustomers(t, f.router(t), p.ID, 3)
	_, err := f.store.Offboard(ctx, p.ID, registry.OffboardOptions{Retention: time.Hour, Now: func() time.Time { return time.Now().Add(-2 * time.Hour) }}, f.prov)
	require.NoError(t, err)
	restored := make(chan error, 1)
	o := ops{OffboardOps: f.prov, beforePurge: func(context.Context) {
		go func() { // another operator, another process
			_, err := f.store.RestoreOffboarded(ctx, p.ID, f.prov)
			restored <- err
		}()
		time.Sleep(200 * time.Millisecond) // long enough for the restore to finish
	}}
	_, purgeErr := f.store.Purge(ctx, time.Now(), o)
	restoreErr := <-restored
	tn, err := f.store.Tenant(ctx, "p")
	require.NoError(t, err)
	rows := f.count(t, "s0", `SELECT count(*) FROM "`+registry.DefaultSharedSchema+`".customers WHERE tenant_id = $1`, p.ID.String())
	t.Logf("purge: %v; restore: %v; state %s, %d rows", purgeErr, restoreErr, tn.State, rows)
	switch tn.State {
	case registry.Deleted:
		require.NoError(t, purgeErr)
		require.ErrorIs(t, restoreErr, registry.ErrNotOffboarded)
		require.Zero(t, rows)
	case registry.Active:
		require.NoError(t, restoreErr)
		require.Equal(t, 3, rows, "a restored tenant keeps its rows")
	default:
		t.Fatalf("state %s after a purge and a restore", tn.State)
	}
}
