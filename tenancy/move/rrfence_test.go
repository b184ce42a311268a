package move_test

import (
	"context"
	stdsql "database/sql"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tenantry/tenantry/examples/app/ent"
	"github.com/tenantry/tenantry/examples/app/ent/customer"
	"github.com/tenantry/tenantry/tenancy"
	"github.com/tenantry/tenantry/tenancy/move"
)

// An unscoped REPEATABLE READ transaction whose snapshot predates the
// fence of a shared placement does not see the fence row, so the fence
// trigger lets its writes of the tenant's rows through. The drain must
// wait for it (or end it): a write it commits after the drain would land
// on the source after the final catch-up, and be lost to the target.
func TestSharedFenceWaitsForUnscopedSnapshot(t *testing.T) {
	f := newFleet(t, twoShards(t)...)
	r := f.router(t)
	client := clientOf(r)
	ctx := context.Background()
	tn := f.sharedTenant(t, "s0")
	seed(t, client, tn.ID, 3)
	victim := client.Customer.Query().FirstX(ctxOf(tn.ID))

	// An admin job's transaction: unscoped, REPEATABLE READ, its snapshot
	// taken by a first read, just before the fence goes up. (Begun before
	// the move, its read lock would hold up the move's preparation.)
	uctx := tenancy.Unscoped(ctxOf(tn.ID), "test: admin job")
	txs := make(chan *ent.Tx, 1)
	var synced atomic.Bool
	m := f.mover(t, move.Config{DrainTimeout: time.Minute, OnPhase: func(_ context.Context, _ tenancy.ID, p move.Phase) error {
		switch p {
		case move.PhaseFence:
			tx, err := client.BeginTx(uctx, &stdsql.TxOptions{Isolation: stdsql.LevelRepeatableRead})
			if err != nil {
				return err
			}
			if _, err := tx.Customer.Query().Where(customer.TenantID(tn.ID)).Count(uctx); err != nil {
				return err
			}
			txs <- tx
		case move.PhaseSync:
			synced.Store(true)
		}
		return nil
	}})
	type outcome struct {
		res *move.Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := m.Move(ctx, move.Request{Tenant: tn.Slug, Shard: "s1"})
		done <- outcome{res, err}
	}()
	tx := <-txs
	defer tx.Rollback()
	src := f.super(t, "s0")
	eventually(t, "the fence row", func() bool {
		var fenced bool
		err := src.QueryRow(ctx, "SELECT EXISTS (SELECT FROM tenantry_move.fence WHERE tenant_id = $1)", tn.ID).Scan(&fenced)
		return err == nil && fenced
	})
	time.Sleep(500 * time.Millisecond)
	require.False(t, synced.Load(), "the drain ended with a transaction open whose snapshot predates the fence")

	// Its write passes the trigger (the snapshot does not see the fence)
	// and commits before the drain ends: the target must have it.
	require.NoError(t, tx.Customer.UpdateOneID(victim.ID).SetName("written by the admin job").Exec(uctx))
	require.NoError(t, tx.Commit())
	o := <-done
	require.NoError(t, o.err)
	require.True(t, o.res.Verified, "%+v", o.res.Tables)
	target := customers(t, f.super(t, "s1"), tn.ID.SchemaName())
	require.Equal(t, "written by the admin job", target[victim.ID])
}
