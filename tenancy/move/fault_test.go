package move_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/tenantry/tenantry/internal/pgtest"
	"github.com/tenantry/tenantry/registry"
	"github.com/tenantry/tenantry/tenancy"
	"github.com/tenantry/tenantry/tenancy/move"
)

// bulk adds n customers to a tenant's own schema straight in SQL (as the
// superuser, which row-level security does not filter).
func bulk(t testing.TB, c *pgx.Conn, tenant tenancy.ID, schema string, n int) {
	t.Helper()
	_, err := c.Exec(context.Background(), `INSERT INTO `+pgx.Identifier{schema, "customers"}.Sanitize()+
		` (id, tenant_id, name, email, created_at)
		SELECT gen_random_uuid(), $1, 'bulk-' || i || repeat('x', 100), 'bulk' || i || '@example.com', now() FROM generate_series(1, $2) i`, tenant, n)
	require.NoError(t, err)
}

// syncSlots lists table sync slots left on a source.
func syncSlots(t testing.TB, c *pgx.Conn) []string {
	t.Helper()
	rows, err := c.Query(context.Background(), `SELECT slot_name::text FROM pg_replication_slots WHERE slot_name LIKE 'pg\_%\_sync\_%'`)
	require.NoError(t, err)
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return out
}

// TestKillTargetMidCopy crashes the target shard's server during the
// snapshot copy: the move rolls back what it can, the tenant stays served
// by the source with nothing lost, and once the target is back a rerun
// removes the leftovers and completes.
func TestKillTargetMidCopy(t *testing.T) {
	ctx := context.Background()
	target, err := pgtest.Start(ctx, pgtest.Options{Name: "move-target", Settings: map[string]string{"wal_retrieve_retry_interval": "100ms"}})
	require.NoError(t, err)
	t.Cleanup(func() { target.Close() })
	f := newFleet(t, twoShards(t)[0], shardSpec{"sk", target, "app"})
	r := f.router(t)
	client := clientOf(r)
	tn := f.tenant(t, "s0")
	seed(t, client, tn.ID, 10)
	src := f.super(t, "s0")
	bulk(t, src, tn.ID, tn.Placement.Schema, 200_000)
	const total = 200_010

	var killed sync.Once
	killErr := make(chan error, 1)
	m := f.mover(t, move.Config{OnPhase: func(ctx context.Context, _ tenancy.ID, p move.Phase) error {
		if p != move.PhaseCopy {
			return nil
		}
		go killed.Do(func() {
			// Kill once a table is being copied.
			conn, err := pgx.Connect(ctx, target.DSN("postgres", "app"))
			if err != nil {
				killErr <- err
				return
			}
			defer conn.Close(context.Background())
			for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
				var copying bool
				if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_stat_progress_copy WHERE command = 'COPY FROM' AND tuples_processed > 0)").Scan(&copying); err != nil {
					killErr <- err
					return
				}
				if copying {
					killErr <- target.Kill()
					return
				}
			}
			killErr <- errors.New("no table copy seen")
		})
		return nil
	}})
	_, err = m.Move(ctx, move.Request{Tenant: tn.Slug, Shard: "sk"})
	require.NoError(t, <-killErr)
	perr := requireRolledBack(t, err, move.PhaseCopy)
	require.Error(t, perr.Cleanup, "the target's subscription and schema cannot be removed while it is down")
	t.Logf("failed as expected: %v", err)

	got, err := f.store.Tenant(ctx, tn.Slug)
	require.NoError(t, err)
	require.Equal(t, registry.Active, got.State)
	require.Equal(t, "s0", got.Placement.Shard)
	n, err := client.Customer.Query().Count(ctxOf(tn.ID))
	require.NoError(t, err)
	require.Equal(t, total, n, "the tenant is served by the source, nothing lost")
	client.Customer.Create().SetName("meanwhile").SetEmail("m@example.com").SaveX(ctxOf(tn.ID))
	require.Empty(t, f.leftovers(t, "s0", tn.ID), "the source's slot and publication are gone")
	require.Empty(t, syncSlots(t, src), "no table sync slot left on the source")

	require.NoError(t, target.Restart(ctx))
	res, err := m.Move(ctx, move.Request{Tenant: tn.Slug, Shard: "sk"})
	require.NoError(t, err)
	require.True(t, res.Verified)
	n, err = client.Customer.Query().Count(ctxOf(tn.ID))
	require.NoError(t, err)
	require.Equal(t, total+1, n)
	require.Len(t, customers(t, f.super(t, "sk"), tn.Placement.Schema), total+1)
	require.Empty(t, f.leftovers(t, "s0", tn.ID))
	require.Empty(t, f.leftovers(t, "sk", tn.ID))
	require.Empty(t, syncSlots(t, src))
	jobs, err := f.store.Jobs(ctx, registry.JobFilter{Tenant: tn.ID})
	require.NoError(t, err)
	require.Len(t, jobs, 2)
	require.Equal(t, registry.JobDone, jobs[0].State)
	require.Equal(t, registry.JobFailed, jobs[1].State)
	require.Contains(t, jobs[1].Error, "cleanup incomplete")
}

// TestAbortAtEachPhase aborts a move at every phase, from another mover,
// between two databases of one cluster (the pre-created slot case): before
// the flip the tenant ends served by its source with nothing left behind;
// at the flip it is too late and the move completes.
func TestAbortAtEachPhase(t *testing.T) {
	c := twoShards(t)[0].cluster
	f := newFleet(t, shardSpec{"a", c, "app"}, shardSpec{"b", c, "move_b"})
	r := f.router(t)
	client := clientOf(r)
	ctx := context.Background()
	aborter := f.mover(t, move.Config{})
	for _, tc := range []struct {
		phase  move.Phase
		served string
	}{
		{move.PhasePrepare, "a"},
		{move.PhaseCopy, "a"},
		{move.PhaseCatchup, "a"},
		{move.PhaseFence, "a"},
		{move.PhaseSync, "a"},
		{move.PhaseFlip, "b"},
	} {
		t.Run(string(tc.phase), func(t *testing.T) {
			tn := f.tenant(t, "a")
			seed(t, client, tn.ID, 5)
			var abortErr error
			done := make(chan struct{})
			m := f.mover(t, move.Config{OnPhase: func(ctx context.Context, _ tenancy.ID, p move.Phase) error {
				if p != tc.phase {
					return nil
				}
				go func() { defer close(done); abortErr = aborter.Abort(context.Background(), tn.Slug) }()
				if p == move.PhaseFlip {
					<-done
					return nil
				}
				<-ctx.Done() // the heartbeat sees the abort request
				return context.Cause(ctx)
			}})
			res, err := m.Move(ctx, move.Request{Tenant: tn.Slug, Shard: "b"})
			<-done
			got, gerr := f.store.Tenant(ctx, tn.Slug)
			require.NoError(t, gerr)
			require.Equal(t, registry.Active, got.State)
			require.Equal(t, tc.served, got.Placement.Shard)
			jobs, jerr := f.store.Jobs(ctx, registry.JobFilter{Tenant: tn.ID})
			require.NoError(t, jerr)
			require.Len(t, jobs, 1)
			if tc.served == "b" {
				require.ErrorIs(t, abortErr, move.ErrTooLateToAbort)
				require.NoError(t, err)
				require.True(t, res.Verified)
				require.Equal(t, registry.JobDone, jobs[0].State)
			} else {
				require.NoError(t, abortErr)
				require.ErrorIs(t, err, move.ErrAborted)
				require.NoError(t, requireRolledBack(t, err, tc.phase).Cleanup)
				require.Equal(t, registry.JobAborted, jobs[0].State)
				require.False(t, schemaExists(t, f.super(t, "b"), tn.Placement.Schema), "the target copy is gone")
			}
			eventually(t, "the router to serve the tenant unfenced from "+tc.served, func() bool {
				p, err := r.Resolve(ctx, tn.ID)
				if err != nil || p.Shard.Name != tc.served {
					return false
				}
				_, fenced := p.Fenced()
				return !fenced
			})
			// Writes work (no revoke left behind) and nothing was lost.
			client.Customer.Create().SetName("after").SetEmail("after@example.com").SaveX(ctxOf(tn.ID))
			require.Len(t, customers(t, f.super(t, tc.served), tn.Placement.Schema), 6)
			require.Empty(t, f.leftovers(t, "a", tn.ID))
			require.Empty(t, f.leftovers(t, "b", tn.ID))
			var markers int
			require.NoError(t, f.super(t, tc.served).QueryRow(ctx, "SELECT count(*) FROM pg_class WHERE relname = 'tenantry_move_marker'").Scan(&markers))
			require.Zero(t, markers, "no marker table left")
		})
	}
	require.Empty(t, syncSlots(t, f.super(t, "a")))
}

// TestMoveToDedicated moves a tenant to a shard of its own, refusing a
// shard that holds a tenant, the shard it is on, and a tenant already
// moving.
func TestMoveToDedicated(t *testing.T) {
	ctx := context.Background()
	c := twoShards(t)
	f := newFleet(t, c[0], c[1], shardSpec{"d", c[1].cluster, "move_d"})
	r := f.router(t)
	client := clientOf(r)
	tn := f.tenant(t, "s0")
	seed(t, client, tn.ID, 3)
	f.tenant(t, "s1")
	reg := prometheus.NewRegistry()
	m := f.mover(t, move.Config{Metrics: move.NewMetrics(reg)})

	_, err := m.Move(ctx, move.Request{Tenant: tn.Slug, Shard: "s1", Mode: registry.ModeDedicated})
	require.ErrorIs(t, err, move.ErrTargetNotEmpty)
	_, err = m.Move(ctx, move.Request{Tenant: tn.Slug, Shard: "s0"})
	require.ErrorIs(t, err, move.ErrSameShard)
	// Another shard record on s0's database (a replica setup may register
	// one): a move there would replicate the database into itself.
	s0, err := f.store.Shard(ctx, "s0")
	require.NoError(t, err)
	require.NoError(t, f.store.AddShard(ctx, registry.Shard{Name: "s0-alias", DSN: strings.Replace(s0.DSN, "postgres@", "tenantry_owner@", 1), Accepting: true}))
	_, err = m.Move(ctx, move.Request{Tenant: tn.Slug, Shard: "s0-alias"})
	require.ErrorIs(t, err, move.ErrSameShard)
	require.ErrorContains(t, err, "same database")
	_, err = m.Move(ctx, move.Request{Tenant: tn.Slug, Shard: "d", Mode: "shared"})
	require.ErrorIs(t, err, move.ErrUnsupported)

	res, err := m.Move(ctx, move.Request{Tenant: tn.Slug, Shard: "d", Mode: registry.ModeDedicated})
	require.NoError(t, err)
	require.True(t, res.Verified)
	got, err := f.store.Tenant(ctx, tn.Slug)
	require.NoError(t, err)
	require.Equal(t, registry.ModeDedicated, got.Placement.Mode)
	require.Equal(t, "d", got.Placement.Shard)
	sh, err := f.store.Shard(ctx, "d")
	require.NoError(t, err)
	require.False(t, sh.Accepting, "the dedicated shard takes no other tenant")
	eventually(t, "the router to serve the tenant from d", func() bool {
		p, err := r.Resolve(ctx, tn.ID)
		return err == nil && p.Shard.Name == "d"
	})
	n, err := client.Customer.Query().Count(ctxOf(tn.ID))
	require.NoError(t, err)
	require.Equal(t, 3, n)

	// The dedicated shard takes no other tenant, forced or not; a drained
	// shard only forced.
	other := f.tenant(t, "s0")
	for _, force := range []bool{false, true} {
		_, err = m.Move(ctx, move.Request{Tenant: other.Slug, Shard: "d", Force: force})
		require.ErrorIs(t, err, move.ErrTargetRefuses)
		require.ErrorContains(t, err, "dedicated shard")
	}
	require.NoError(t, f.store.SetAccepting(ctx, "s1", false))
	_, err = m.Move(ctx, move.Request{Tenant: other.Slug, Shard: "s1"})
	require.ErrorIs(t, err, move.ErrTargetRefuses)
	require.ErrorContains(t, err, "drained")
	got, err = f.store.Tenant(ctx, other.Slug)
	require.NoError(t, err)
	require.Equal(t, "s0", got.Placement.Shard)

	families, err := reg.Gather()
	require.NoError(t, err)
	counts := map[string]uint64{}
	for _, mf := range families {
		for _, m := range mf.GetMetric() {
			if h := m.GetHistogram(); h != nil {
				counts[mf.GetName()] += h.GetSampleCount()
			}
			if c := m.GetCounter(); c != nil && mf.GetName() == "tenantry_move_copied_rows_total" {
				require.Equal(t, 6.0, c.GetValue(), "3 customers and 3 orders")
			}
			if c := m.GetCounter(); c != nil && mf.GetName() == "tenantry_moves_total" {
				require.Equal(t, "done", m.GetLabel()[0].GetValue())
				require.Equal(t, 1.0, c.GetValue())
			}
		}
	}
	dropped, err := m.DropRetired(ctx, 0)
	require.NoError(t, err)
	require.Contains(t, dropped, "s0/"+res.Retired, "an own schema's retired source is dropped after its retention")
	require.Equal(t, uint64(1), counts["tenantry_move_cutover_window_seconds"])
	require.Equal(t, uint64(1), counts["tenantry_move_copy_duration_seconds"])
	require.Equal(t, uint64(8), counts["tenantry_move_phase_duration_seconds"], "one per phase")
}

// TestCopyTimeout: a copy that outlasts Config.CopyTimeout fails with
// ErrTimeout and rolls back; the tenant stays served by its source.
func TestCopyTimeout(t *testing.T) {
	ctx := context.Background()
	f := newFleet(t, twoShards(t)...)
	client := clientOf(f.router(t))
	tn := f.tenant(t, "s0")
	seed(t, client, tn.ID, 3)
	m := f.mover(t, move.Config{CopyTimeout: time.Millisecond})
	_, err := m.Move(ctx, move.Request{Tenant: tn.Slug, Shard: "s1"})
	require.ErrorIs(t, err, move.ErrTimeout)
	require.NoError(t, requireRolledBack(t, err, move.PhaseCopy).Cleanup)
	got, err := f.store.Tenant(ctx, tn.Slug)
	require.NoError(t, err)
	require.Equal(t, "s0", got.Placement.Shard)
	require.Empty(t, f.leftovers(t, "s0", tn.ID))
	require.Empty(t, f.leftovers(t, "s1", tn.ID))
	client.Customer.Create().SetName("after").SetEmail("after@example.com").SaveX(ctxOf(tn.ID))
}

// requireRolledBack asserts that err is a *move.PhaseError of phase whose
// move was rolled back, and returns it.
func requireRolledBack(t *testing.T, err error, phase move.Phase) *move.PhaseError {
	t.Helper()
	var perr *move.PhaseError
	require.ErrorAs(t, err, &perr)
	require.Equal(t, phase, perr.Phase)
	require.True(t, perr.RolledBack)
	return perr
}
