package move_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tenantry/tenantry/migrate"
	"github.com/tenantry/tenantry/tenancy"
	"github.com/tenantry/tenantry/tenancy/move"
)

// TestMoveHoldsOffMigrations: while a tenant moves, migrations of its
// source and target schemas wait for the move (Apply waits; the fleet
// runner's lock_timeout bounds the wait and it retries later): logical
// replication does not carry DDL, and migrate's grant reconciliation would
// lift the fence. After the move the target schema migrates as usual.
func TestMoveHoldsOffMigrations(t *testing.T) {
	ctx := context.Background()
	f := newFleet(t, twoShards(t)...)
	client := clientOf(f.router(t))
	tn := f.tenant(t, "s0")
	seed(t, client, tn.ID, 3)
	owner := func(shard string) *sql.DB {
		s := f.shards[shard]
		db, err := sql.Open("pgx", s.cluster.DSN("postgres", s.db))
		require.NoError(t, err)
		t.Cleanup(func() { db.Close() })
		return db
	}
	apply := func(shard string, timeout time.Duration) error {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		_, err := f.desired.Apply(ctx, owner(shard), tn.Placement.Schema, migrate.DefaultRoles())
		return err
	}
	var during []error
	m := f.mover(t, move.Config{OnPhase: func(_ context.Context, _ tenancy.ID, p move.Phase) error {
		if p == move.PhaseCatchup || p == move.PhaseSync {
			during = append(during, apply("s0", 300*time.Millisecond), apply("s1", 300*time.Millisecond))
		}
		return nil
	}})
	res, err := m.Move(ctx, move.Request{Tenant: tn.Slug, Shard: "s1"})
	require.NoError(t, err)
	require.True(t, res.Verified)
	require.Len(t, during, 4)
	for i, err := range during {
		require.ErrorIs(t, err, context.DeadlineExceeded, "migration %d during the move waits for it", i)
	}
	// Not 300 ms: the migration itself may take that long on a loaded
	// machine; a migration still held off would wait out the 30 s.
	require.NoError(t, apply("s1", 30*time.Second), "the moved tenant's schema migrates once the move is over")
}
