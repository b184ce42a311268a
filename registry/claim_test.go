package registry_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tenantry/tenantry/registry"
)

// Two creates of one slug at once: the second must not report the tenant
// created while the first provisions it; once the first is done, the
// tenant exists. A caller that died is taken over after its claim went
// stale, and the dead caller, should it wake up, does not report the
// tenant created either.
func TestConcurrentCreateOfOneSlug(t *testing.T) {
	s, dsn := newStore(t)
	ctx := context.Background()
	require.NoError(t, s.AddShard(ctx, registry.Shard{Name: "s0", DSN: shardDSN(t, 0), Accepting: true}))

	// blocking returns an apply that signals started, then waits for release.
	blocking := func() (registry.ApplyFunc, chan struct{}, chan struct{}) {
		started, release := make(chan struct{}), make(chan struct{})
		return func(context.Context, registry.Shard, string) error {
			close(started)
			<-release
			return nil
		}, started, release
	}
	noop := func(context.Context, registry.Shard, string) error { return nil }

	t.Run("live", func(t *testing.T) {
		apply, started, release := blocking()
		first := make(chan error, 1)
		go func() {
			_, err := s.CreateTenant(ctx, registry.NewTenant{Slug: "acme"}, apply)
			first <- err
		}()
		<-started
		applied := false
		_, err := s.CreateTenant(ctx, registry.NewTenant{Slug: "acme"}, func(context.Context, registry.Shard, string) error {
			applied = true
			return nil
		})
		require.ErrorIs(t, err, registry.ErrProvisioning)
		require.False(t, applied, "the second create must not provision the tenant too")
		tn, err := s.Tenant(ctx, "acme")
		require.NoError(t, err)
		_, err = s.Abandon(ctx, tn.ID)
		require.ErrorIs(t, err, registry.ErrProvisioning, "a tenant being provisioned is not abandoned")
		close(release)
		require.NoError(t, <-first)
		tn, err = s.Tenant(ctx, "acme")
		require.NoError(t, err)
		require.Equal(t, registry.Active, tn.State)
		_, err = s.CreateTenant(ctx, registry.NewTenant{Slug: "acme"}, noop)
		require.ErrorIs(t, err, registry.ErrExists)
	})

	t.Run("stale", func(t *testing.T) {
		apply, started, release := blocking()
		first := make(chan error, 1)
		go func() {
			_, err := s.CreateTenant(ctx, registry.NewTenant{Slug: "globex"}, apply)
			first <- err
		}()
		<-started
		// The first caller "dies": its claim is older than ProvisionStaleAfter
		// (its heartbeat would renew it within ProvisionHeartbeat).
		conn, err := pgx.Connect(ctx, dsn)
		require.NoError(t, err)
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, `UPDATE tenants SET provisioner_seen = now() - $1::interval WHERE slug = 'globex'`,
			(registry.ProvisionStaleAfter + time.Minute).String())
		require.NoError(t, err)
		created, err := s.CreateTenant(ctx, registry.NewTenant{Slug: "globex"}, noop)
		require.NoError(t, err, "a stale claim is taken over")
		require.Equal(t, registry.Active, created.State)

		close(release)
		err = <-first
		require.ErrorIs(t, err, registry.ErrProvisioning, "the caller whose claim was taken over must not report the tenant created")
		require.False(t, errors.Is(err, registry.ErrExists))
	})
}

// A create whose apply panics (and whose caller recovers) or whose
// activation fails releases its claim and stops renewing it: a retry
// resumes at once instead of waiting ProvisionStaleAfter for a claim
// nobody holds.
func TestClaimReleasedOnFailure(t *testing.T) {
	s, dsn := newStore(t)
	ctx := context.Background()
	require.NoError(t, s.AddShard(ctx, registry.Shard{Name: "s0", DSN: shardDSN(t, 0), Accepting: true}))
	noop := func(context.Context, registry.Shard, string) error { return nil }
	conn, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	defer conn.Close(ctx)

	t.Run("apply panics", func(t *testing.T) {
		func() {
			defer func() { require.Equal(t, "apply: boom", recover()) }()
			_, _ = s.CreateTenant(ctx, registry.NewTenant{Slug: "panics"}, func(context.Context, registry.Shard, string) error {
				panic("apply: boom")
			})
		}()
		time.Sleep(registry.ProvisionHeartbeat + 500*time.Millisecond) // a renewal that still ran would show
		var provisioner string
		var renewed bool
		require.NoError(t, conn.QueryRow(ctx, `SELECT provisioner, provisioner_seen IS NOT NULL FROM tenants WHERE slug = 'panics'`).Scan(&provisioner, &renewed))
		require.Empty(t, provisioner, "the claim is released")
		require.False(t, renewed, "nothing renews the released claim")
		_, err := s.CreateTenant(ctx, registry.NewTenant{Slug: "panics"}, noop)
		require.NoError(t, err, "a retry resumes the tenant")
	})

	t.Run("activation fails", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		_, err := s.CreateTenant(cctx, registry.NewTenant{Slug: "cancelled"}, func(context.Context, registry.Shard, string) error {
			cancel() // the client goes away just as the schema is ready
			return nil
		})
		require.ErrorIs(t, err, context.Canceled)
		_, err = s.CreateTenant(ctx, registry.NewTenant{Slug: "cancelled"}, noop)
		require.NoError(t, err, "a retry resumes the tenant")
	})
}

// A registry not initialized since it gained provisioner_seen has no
// column default: the claim of a create must still be live, not taken over
// by a second create before the first renewal.
func TestClaimWithoutColumnDefault(t *testing.T) {
	s, dsn := newStore(t)
	ctx := context.Background()
	require.NoError(t, s.AddShard(ctx, registry.Shard{Name: "s0", DSN: shardDSN(t, 0), Accepting: true}))
	conn, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, `ALTER TABLE tenants ALTER COLUMN provisioner_seen DROP DEFAULT`)
	require.NoError(t, err)

	started, release := make(chan struct{}), make(chan struct{})
	first := make(chan error, 1)
	go func() {
		_, err := s.CreateTenant(ctx, registry.NewTenant{Slug: "acme"}, func(context.Context, registry.Shard, string) error {
			close(started)
			<-release
			return nil
		})
		first <- err
	}()
	<-started
	applied := false
	_, err = s.CreateTenant(ctx, registry.NewTenant{Slug: "acme"}, func(context.Context, registry.Shard, string) error {
		applied = true
		return nil
	})
	require.ErrorIs(t, err, registry.ErrProvisioning)
	require.False(t, applied)
	close(release)
	require.NoError(t, <-first)
}

// A registry that Init has not yet given the claim's columns (routers and
// tools upgraded first) still serves routes and tenant reads.
func TestReadsBeforeInitAddsClaimColumns(t *testing.T) {
	s, dsn := newStore(t)
	ctx := context.Background()
	require.NoError(t, s.AddShard(ctx, registry.Shard{Name: "s0", DSN: shardDSN(t, 0), Accepting: true}))
	tn, err := s.CreateTenant(ctx, registry.NewTenant{Slug: "acme"}, nil)
	require.NoError(t, err)
	conn, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, `ALTER TABLE tenants DROP COLUMN provisioner, DROP COLUMN provisioner_seen`)
	require.NoError(t, err)
	routes, err := s.Routes(ctx)
	require.NoError(t, err)
	require.Len(t, routes, 1)
	got, err := s.Tenant(ctx, "acme")
	require.NoError(t, err)
	require.Equal(t, tn.ID, got.ID)
	_, err = s.Tenants(ctx, registry.TenantFilter{})
	require.NoError(t, err)
}
