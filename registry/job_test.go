package registry_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tenantry/tenantry/registry"
	"github.com/tenantry/tenantry/tenancy"
)

// TestJobs runs a job's life: one running job per tenant, updates only by
// the owner, take-over after a stale heartbeat, cancel requests, finish.
func TestJobs(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	tenant, other := tenancy.NewID(), tenancy.NewID()

	j, err := s.StartJob(ctx, "move", tenant, "a", "prepare", map[string]any{"to": "s1"})
	require.NoError(t, err)
	require.Equal(t, registry.JobRunning, j.State)
	require.Equal(t, "s1", j.Params["to"])
	_, err = s.StartJob(ctx, "backup", tenant, "b", "", nil)
	require.ErrorIs(t, err, registry.ErrJobRunning, "one running job per tenant")
	_, err = s.StartJob(ctx, "move", other, "b", "", nil)
	require.NoError(t, err, "other tenants are not affected")

	phase := "copy"
	require.NoError(t, s.UpdateJob(ctx, j.ID, "a", registry.JobUpdate{Phase: &phase, Params: map[string]any{"n": 1.0}}))
	require.ErrorIs(t, s.UpdateJob(ctx, j.ID, "b", registry.JobUpdate{Phase: &phase}), registry.ErrJobOwner)
	got, err := s.RunningJob(ctx, tenant)
	require.NoError(t, err)
	require.Equal(t, "copy", got.Phase)
	require.Equal(t, map[string]any{"n": 1.0}, got.Params)

	_, err = s.TakeJob(ctx, j.ID, "b", time.Hour)
	require.ErrorIs(t, err, registry.ErrJobOwner, "a live owner keeps its job")
	time.Sleep(20 * time.Millisecond)
	require.True(t, got.Stale(time.Now(), 10*time.Millisecond))
	taken, err := s.TakeJob(ctx, j.ID, "b", 10*time.Millisecond)
	require.NoError(t, err)
	require.Equal(t, "b", taken.Owner)
	require.ErrorIs(t, s.UpdateJob(ctx, j.ID, "a", registry.JobUpdate{}), registry.ErrJobOwner, "the old owner lost it")

	require.NoError(t, s.RequestCancel(ctx, j.ID))
	hb, err := s.Heartbeat(ctx, j.ID, "b")
	require.NoError(t, err)
	require.True(t, hb.CancelRequested)

	require.NoError(t, s.FinishJob(ctx, j.ID, "b", registry.JobAborted, "aborted by an operator"))
	_, err = s.RunningJob(ctx, tenant)
	require.ErrorIs(t, err, registry.ErrNotFound)
	require.ErrorIs(t, s.RequestCancel(ctx, j.ID), registry.ErrNotFound)
	done, err := s.Job(ctx, j.ID)
	require.NoError(t, err)
	require.Equal(t, registry.JobAborted, done.State)
	require.False(t, done.FinishedAt.IsZero())
	_, err = s.StartJob(ctx, "move", tenant, "c", "", nil)
	require.NoError(t, err, "a new job once the last one ended")
	jobs, err := s.Jobs(ctx, registry.JobFilter{Tenant: tenant})
	require.NoError(t, err)
	require.Len(t, jobs, 2)
	require.Greater(t, jobs[0].ID, jobs[1].ID, "newest first")
}

// TestCutover flips a moving tenant in one epoch bump and refuses one that
// is not moving.
func TestCutover(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	for i, name := range []string{"s0", "s1"} {
		require.NoError(t, s.AddShard(ctx, registry.Shard{Name: name, DSN: shardDSN(t, i), Accepting: true}))
	}
	tn, err := s.CreateTenant(ctx, registry.NewTenant{Slug: "mover", Shard: "s0"}, nil)
	require.NoError(t, err)
	_, err = s.Cutover(ctx, tn.ID, registry.Placement{Shard: "s1", Schema: tn.Placement.Schema}, registry.Active)
	require.ErrorIs(t, err, registry.ErrTransition)
	moving, err := s.SetState(ctx, tn.ID, registry.Moving)
	require.NoError(t, err)
	got, err := s.Cutover(ctx, tn.ID, registry.Placement{Shard: "s1", Schema: tn.Placement.Schema, Mode: registry.ModeDedicated}, registry.Active)
	require.NoError(t, err)
	require.Equal(t, registry.Active, got.State)
	require.Equal(t, registry.Placement{Shard: "s1", Schema: tn.Placement.Schema, Mode: registry.ModeDedicated, Epoch: moving.Placement.Epoch + 1}, got.Placement)
	sh, err := s.Shard(ctx, "s1")
	require.NoError(t, err)
	require.False(t, sh.Accepting, "a dedicated shard stops accepting tenants")
}
