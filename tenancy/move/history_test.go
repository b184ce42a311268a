package move_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tenantry/tenantry/tenancy/move"
)

// TestPlacementAt: where a tenant's data was at a given time, across two
// moves (s0 → s1 → s0): what a point-in-time restore reads from.
func TestPlacementAt(t *testing.T) {
	f := newFleet(t, twoShards(t)...)
	ctx := context.Background()
	tn := f.tenant(t, "s0")
	seed(t, clientOf(f.router(t)), tn.ID, 3)
	m := f.mover(t, move.Config{})

	beforeFirst := time.Now()
	_, err := m.Move(ctx, move.Request{Tenant: tn.Slug, Shard: "s1"})
	require.NoError(t, err)
	between := time.Now()
	_, err = m.Move(ctx, move.Request{Tenant: tn.Slug, Shard: "s0"})
	require.NoError(t, err)
	afterBoth := time.Now()

	now, err := f.store.Tenant(ctx, tn.Slug)
	require.NoError(t, err)
	for _, c := range []struct {
		name  string
		at    time.Time
		shard string
	}{
		{"before the first move", beforeFirst, "s0"},
		{"between the moves", between, "s1"},
		{"after both", afterBoth, "s0"},
	} {
		p, err := move.PlacementAt(ctx, f.store, now, c.at)
		require.NoError(t, err)
		require.Equal(t, c.shard, p.Shard, c.name)
		require.Equal(t, tn.ID.SchemaName(), p.Schema, c.name)
	}
}
