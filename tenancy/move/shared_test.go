package move_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/tenantry/tenantry/examples/app/ent"
	"github.com/tenantry/tenantry/registry"
	"github.com/tenantry/tenantry/tenancy"
	"github.com/tenantry/tenantry/tenancy/move"
)

func (f *fleet) sharedTenant(t testing.TB, shard string) registry.Tenant {
	t.Helper()
	tn, err := f.store.CreateTenant(context.Background(), registry.NewTenant{Slug: "sh-" + uuid.NewString()[:8], Shard: shard, Mode: registry.ModeShared}, f.apply)
	require.NoError(t, err)
	return tn
}

// neighbour creates, updates and deletes rows of another tenant of the
// shared schema; it must see no error (the fence trigger and the replica
// identity the move sets must not get in its way).
func neighbour(ctx context.Context, c *ent.Client, id tenancy.ID, ops *atomic.Int64, errs chan<- error) {
	sctx := ctxOf(id)
	for i := 0; ctx.Err() == nil; i++ {
		cu, err := c.Customer.Create().SetName("n").SetEmail(fmt.Sprintf("n%d@example.com", i)).Save(sctx)
		if err == nil {
			_, err = c.Customer.UpdateOneID(cu.ID).SetName("n2").Save(sctx)
		}
		if err == nil && i%2 == 0 {
			err = c.Customer.DeleteOneID(cu.ID).Exec(sctx)
		}
		if err != nil && ctx.Err() == nil {
			errs <- fmt.Errorf("tenant %s: %w", id, err)
			return
		}
		ops.Add(1)
		time.Sleep(time.Millisecond)
	}
}

func tenantRows(t testing.TB, c *pgx.Conn, schema string, id tenancy.ID) int {
	t.Helper()
	var n int
	require.NoError(t, c.QueryRow(context.Background(), "SELECT count(*) FROM "+pgx.Identifier{schema, "customers"}.Sanitize()+" WHERE tenant_id = $1", id).Scan(&n))
	return n
}

// sharedLeftovers reports fence triggers, non-default replica identities
// and fence rows on a shared schema.
func sharedLeftovers(t testing.TB, c *pgx.Conn, schema string) (triggers, fullIdentity, fenceRows int) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, c.QueryRow(ctx, `SELECT count(*) FROM pg_trigger g JOIN pg_class r ON r.oid = g.tgrelid JOIN pg_namespace n ON n.oid = r.relnamespace
		WHERE n.nspname = $1 AND g.tgname = 'tenantry_move_fence'`, schema).Scan(&triggers))
	require.NoError(t, c.QueryRow(ctx, `SELECT count(*) FROM pg_class r JOIN pg_namespace n ON n.oid = r.relnamespace
		WHERE n.nspname = $1 AND r.relkind = 'r' AND r.relreplident <> 'd'`, schema).Scan(&fullIdentity))
	require.NoError(t, c.QueryRow(ctx, `SELECT CASE WHEN to_regclass('tenantry_move.fence') IS NULL THEN 0 ELSE (SELECT count(*) FROM tenantry_move.fence) END`).Scan(&fenceRows))
	return
}

// TestMoveFromShared moves a tenant out of a shared schema into its own
// schema on another shard under a writer, while a neighbour in the same
// shared schema creates, updates and deletes rows; then aborts another
// such move after the fence.
func TestMoveFromShared(t *testing.T) {
	f := newFleet(t, twoShards(t)...)
	r := f.router(t)
	client := clientOf(r)
	ctx := context.Background()
	tn, nb, nb2 := f.sharedTenant(t, "s0"), f.sharedTenant(t, "s0"), f.sharedTenant(t, "s0")
	other := f.tenant(t, "s1")
	seed(t, client, tn.ID, 30)
	seed(t, client, nb.ID, 10)
	src := f.super(t, "s0")

	t.Run("move", func(t *testing.T) {
		runCtx, stop := context.WithCancel(ctx)
		defer stop()
		w := newWriter(client, tn.ID)
		var wg sync.WaitGroup
		wg.Go(func() { w.run(runCtx) })
		var ops atomic.Int64
		errs := make(chan error, 2)
		wg.Go(func() { neighbour(runCtx, client, nb.ID, &ops, errs) })
		wg.Go(func() { bystander(runCtx, client, other.ID, &ops, errs) })
		time.Sleep(100 * time.Millisecond)
		res, err := f.mover(t, move.Config{}).Move(ctx, move.Request{Tenant: tn.Slug, Shard: "s1"})
		require.NoError(t, err)
		eventually(t, "the router to serve the tenant from s1", func() bool {
			p, err := r.Resolve(ctx, tn.ID)
			return err == nil && p.Shard.Name == "s1"
		})
		time.Sleep(100 * time.Millisecond)
		stop()
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("another tenant saw an error: %v", err)
		}
		t.Logf("window %s, writes %d, refused %d, neighbour+bystander ops %d", res.Window, w.writes, w.retryable, ops.Load())
		require.Empty(t, w.others, "the writer sees only retryable errors")
		require.True(t, res.Verified, "%+v", res.Tables)

		got, err := f.store.Tenant(ctx, tn.Slug)
		require.NoError(t, err)
		require.Equal(t, registry.Active, got.State)
		require.Equal(t, "s1", got.Placement.Shard)
		require.Equal(t, tn.ID.SchemaName(), got.Placement.Schema)
		require.Equal(t, registry.ModeSchema, got.Placement.Mode)

		target := customers(t, f.super(t, "s1"), tn.ID.SchemaName())
		w.mu.Lock()
		for id, h := range w.history {
			require.Equal(t, h[len(h)-1].name, target[id], "customer %s: the last acknowledged write is on the target", id)
		}
		require.Len(t, target, 30+len(w.ids))
		w.mu.Unlock()
		require.Zero(t, tenantRows(t, src, tn.Placement.Schema, tn.ID), "the tenant's rows left the shared schema")
		retired := customers(t, src, res.Retired)
		require.GreaterOrEqual(t, len(retired), 30, "the source rows are kept in the retired schema")
		require.Equal(t, len(retired), tenantRows(t, src, res.Retired, tn.ID), "only the tenant's rows")
		n, err := client.Customer.Query().Count(ctxOf(nb.ID))
		require.NoError(t, err)
		require.GreaterOrEqual(t, n, 10, "the neighbour keeps its rows")
		require.False(t, schemaExists(t, f.super(t, "s1"), tn.Placement.Schema), "the staging schema was renamed")
		triggers, full, fence := sharedLeftovers(t, src, tn.Placement.Schema)
		require.Zero(t, triggers, "fence triggers removed")
		require.Zero(t, full, "replica identities restored")
		require.Zero(t, fence, "fence rows removed")
		require.Empty(t, f.leftovers(t, "s0", tn.ID))
		require.Empty(t, f.leftovers(t, "s1", tn.ID))

		// Retention: kept while young, dropped once older than it.
		m := f.mover(t, move.Config{})
		dropped, err := m.DropRetired(ctx, time.Hour)
		require.NoError(t, err)
		require.Empty(t, dropped)
		require.True(t, schemaExists(t, src, res.Retired))
		dropped, err = m.DropRetired(ctx, 0)
		require.NoError(t, err)
		require.Contains(t, dropped, "s0/"+res.Retired)
		require.False(t, schemaExists(t, src, res.Retired))
	})

	t.Run("abort after the fence", func(t *testing.T) {
		aborter := f.mover(t, move.Config{})
		var abortErr error
		done := make(chan struct{})
		m := f.mover(t, move.Config{OnPhase: func(ctx context.Context, _ tenancy.ID, p move.Phase) error {
			if p != move.PhaseSync {
				return nil
			}
			// Fenced now: a neighbour in the same shared schema still
			// writes; the tenant cannot, even through the database alone
			// (as the admin role, which bypasses row-level security, with
			// the tenant's rows: the fence trigger refuses).
			if _, err := client.Customer.Create().SetName("x").SetEmail("x@example.com").Save(ctxOf(nb2.ID)); err != nil {
				return err
			}
			if _, err := client.Customer.Create().SetName("x").SetEmail("x@example.com").Save(ctxOf(nb.ID)); !errors.Is(err, tenancy.ErrTenantReadOnly) {
				return fmt.Errorf("a write of the fenced tenant through the router: %v", err)
			}
			admin, err := pgx.Connect(ctx, f.shards["s0"].cluster.DSN("tenantry_admin", f.shards["s0"].db))
			if err != nil {
				return err
			}
			defer admin.Close(context.Background())
			_, err = admin.Exec(ctx, "UPDATE "+pgx.Identifier{nb.Placement.Schema, "customers"}.Sanitize()+" SET name = 'stale' WHERE tenant_id = $1", nb.ID)
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "25006" {
				return fmt.Errorf("a stale write of the fenced tenant's rows in the database: %v", err)
			}
			go func() { defer close(done); abortErr = aborter.Abort(context.Background(), nb.Slug) }()
			<-ctx.Done() // the heartbeat sees the abort request
			return context.Cause(ctx)
		}})
		before := tenantRows(t, src, nb.Placement.Schema, nb.ID)
		_, err := m.Move(ctx, move.Request{Tenant: nb.Slug, Shard: "s1"})
		<-done
		require.ErrorIs(t, err, move.ErrAborted)
		require.NoError(t, abortErr)
		got, err := f.store.Tenant(ctx, nb.Slug)
		require.NoError(t, err)
		require.Equal(t, registry.Active, got.State)
		require.Equal(t, "s0", got.Placement.Shard)
		eventually(t, "the router to serve the tenant unfenced", func() bool {
			p, err := r.Resolve(ctx, nb.ID)
			return err == nil && !fenced(p)
		})
		client.Customer.Create().SetName("after").SetEmail("after@example.com").SaveX(ctxOf(nb.ID))
		require.Equal(t, before+1, tenantRows(t, src, nb.Placement.Schema, nb.ID))
		triggers, full, fence := sharedLeftovers(t, src, nb.Placement.Schema)
		require.Zero(t, triggers+full+fence, "fence triggers, replica identities and fence rows restored")
		require.Empty(t, f.leftovers(t, "s0", nb.ID))
		require.Empty(t, f.leftovers(t, "s1", nb.ID))
		require.False(t, schemaExists(t, f.super(t, "s1"), nb.ID.SchemaName()))
		require.False(t, schemaExists(t, f.super(t, "s1"), nb.Placement.Schema))
	})
}
