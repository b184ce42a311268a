package move_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tenantry/tenantry/registry"
	"github.com/tenantry/tenantry/tenancy"
	"github.com/tenantry/tenantry/tenancy/move"
)

const moodSQL = `DO $$ BEGIN CREATE TYPE public.mood AS ENUM ('sad', 'ok', 'happy');
	EXCEPTION WHEN duplicate_object THEN NULL; END $$`

// TestMoveColumnsOfClusterTypes moves a tenant whose schema has a table
// with columns of a type created in each cluster (an enum, an array of
// it), which the copy carries as text. Every row comes across, and a
// change made after the snapshot is applied on top of it.
func TestMoveColumnsOfClusterTypes(t *testing.T) {
	ctx := context.Background()
	f := newFleet(t, twoShards(t)...)
	desired := f.apply
	f.apply = func(ctx context.Context, sh registry.Shard, schema string) error {
		if err := desired(ctx, sh, schema); err != nil {
			return err
		}
		c, err := pgx.Connect(ctx, sh.DSN)
		if err != nil {
			return err
		}
		defer c.Close(ctx)
		_, err = c.Exec(ctx, moodSQL+`;
			CREATE TABLE `+pgx.Identifier{schema, "notes"}.Sanitize()+` (id bigint PRIMARY KEY, tenant_id uuid NOT NULL,
				mood public.mood NOT NULL, history public.mood[] NOT NULL, body text)`)
		return err
	}
	src, dst := f.super(t, "s0"), f.super(t, "s1")
	tn := f.tenant(t, "s0")
	notes := pgx.Identifier{tn.Placement.Schema, "notes"}.Sanitize()
	_, err := src.Exec(ctx, `INSERT INTO `+notes+` SELECT i, $1, (ARRAY['sad', 'ok', 'happy'])[1 + i % 3]::public.mood,
		ARRAY['ok', (ARRAY['sad', 'happy'])[1 + i % 2]]::public.mood[], CASE WHEN i % 7 > 0 THEN 'note ' || i END
		FROM generate_series(1, 1000) i`, tn.ID)
	require.NoError(t, err)

	m := f.mover(t, move.Config{OnPhase: func(ctx context.Context, _ tenancy.ID, p move.Phase) error {
		if p != move.PhaseCatchup {
			return nil
		}
		_, err := src.Exec(ctx, `UPDATE `+notes+` SET mood = 'happy', history = history || 'sad'::public.mood WHERE id = 1`)
		return err
	}})
	res, err := m.Move(ctx, move.Request{Tenant: tn.Slug, Shard: "s1"})
	require.NoError(t, err)
	require.True(t, res.Verified, "every table's count and hash equal on both sides")

	read := func(c *pgx.Conn, schema string) []string {
		rows, err := c.Query(ctx, `SELECT concat_ws('|', id, tenant_id, mood, history, body) FROM `+
			pgx.Identifier{schema, "notes"}.Sanitize()+` ORDER BY id`)
		require.NoError(t, err)
		out, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		return out
	}
	got, want := read(dst, res.To.Schema), read(src, res.Retired)
	require.Len(t, got, 1000)
	require.Equal(t, want, got)
	require.Equal(t, "1|"+tn.ID.String()+"|happy|{ok,happy,sad}|note 1", got[0], "the change made after the snapshot")
}
