package registry_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	appmigrate "github.com/tenantry/tenantry/examples/app/ent/migrate"
	"github.com/tenantry/tenantry/internal/apptest"
	"github.com/tenantry/tenantry/internal/pgtest"
	"github.com/tenantry/tenantry/migrate"
	"github.com/tenantry/tenantry/registry"
	"github.com/tenantry/tenantry/registry/provision"
	"github.com/tenantry/tenantry/tenancy"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

var dbSeq atomic.Int64

// newStore returns an initialized registry in a fresh database of the first
// shared cluster, and that database's DSN.
func newStore(t *testing.T) (*registry.Store, string) {
	t.Helper()
	ctx := context.Background()
	c := pgtest.Shards(t, 1)[0]
	name := fmt.Sprintf("registry_%d_%d", os.Getpid(), dbSeq.Add(1))
	require.NoError(t, c.CreateDatabase(ctx, name))
	dsn := c.DSN("postgres", name)
	s, err := registry.Open(ctx, dsn)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	require.NoError(t, s.Init(ctx))
	return s, dsn
}

// shardDSN prepares the app database, with the roles, on shared cluster i
// and returns its DSN.
func shardDSN(t *testing.T, i int) string {
	t.Helper()
	c := pgtest.Shards(t, i+1)[i]
	sh, err := apptest.PrepareShard(context.Background(), c, migrate.DefaultRoles(), fmt.Sprintf("shard%d", i))
	require.NoError(t, err)
	sh.Pool.Close()
	sh.Admin.Close()
	return c.DSN("postgres", apptest.Database)
}

func TestInit(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	require.NoError(t, s.Init(ctx), "Init must be idempotent")
	plans, err := s.Plans(ctx)
	require.NoError(t, err)
	require.Len(t, plans, 1)
	require.Equal(t, registry.DefaultPlan, plans[0].Name)
	want := tenancy.DefaultLimits
	want.Plan = registry.DefaultPlan
	require.Equal(t, want, plans[0].Limits)
}

func TestNotInitialized(t *testing.T) {
	ctx := context.Background()
	c := pgtest.Shards(t, 1)[0]
	name := fmt.Sprintf("registry_empty_%d", os.Getpid())
	require.NoError(t, c.CreateDatabase(ctx, name))
	s, err := registry.Open(ctx, c.DSN("postgres", name))
	require.NoError(t, err)
	defer s.Close()
	_, err = s.Tenants(ctx, registry.TenantFilter{})
	require.ErrorIs(t, err, registry.ErrNotInitialized)
}

func TestPlacement(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	dsn := "postgres://postgres@127.0.0.1:1/app"
	require.NoError(t, s.AddShard(ctx, registry.Shard{Name: "small", DSN: dsn, Capacity: 2, Accepting: true}))
	require.NoError(t, s.AddShard(ctx, registry.Shard{Name: "large", DSN: dsn, Capacity: 4, Accepting: true}))
	require.NoError(t, s.AddShard(ctx, registry.Shard{Name: "drained", DSN: dsn, Capacity: 100, Accepting: false}))
	require.ErrorIs(t, s.AddShard(ctx, registry.Shard{Name: "large", DSN: dsn, Accepting: true}), registry.ErrExists)

	var got []string
	for i := range 6 {
		tn, err := s.Register(ctx, registry.NewTenant{Slug: fmt.Sprintf("t%d", i)})
		require.NoError(t, err)
		require.Equal(t, registry.Provisioning, tn.State)
		require.Equal(t, tn.ID.SchemaName(), tn.Placement.Schema)
		require.EqualValues(t, 1, tn.Placement.Epoch)
		got = append(got, tn.Placement.Shard)
	}
	// Least loaded relative to capacity, ties by name; never the drained one.
	require.Equal(t, []string{"large", "small", "large", "large", "small", "large"}, got)
	_, err := s.Register(ctx, registry.NewTenant{Slug: "t6"})
	require.ErrorIs(t, err, registry.ErrNoCapacity)
	_, err = s.Register(ctx, registry.NewTenant{Slug: "t5"})
	require.Error(t, err)

	// A deleted tenant frees its slot.
	t0, err := s.Tenant(ctx, "t0")
	require.NoError(t, err)
	_, err = s.SetState(ctx, t0.ID, registry.Deleted)
	require.NoError(t, err)
	tn, err := s.Register(ctx, registry.NewTenant{Slug: "t7", Mode: registry.ModeShared})
	require.NoError(t, err)
	require.Equal(t, "large", tn.Placement.Shard)
	require.Equal(t, registry.DefaultSharedSchema, tn.Placement.Schema)

	// Named shards and dedicated placements.
	_, err = s.Register(ctx, registry.NewTenant{Slug: "t8", Shard: "drained"})
	require.ErrorIs(t, err, registry.ErrNoCapacity)
	_, err = s.Register(ctx, registry.NewTenant{Slug: "t8", Shard: "nowhere"})
	require.ErrorIs(t, err, registry.ErrNotFound)
	require.NoError(t, s.AddShard(ctx, registry.Shard{Name: "solo", DSN: dsn, Capacity: 10, Accepting: true}))
	tn, err = s.Register(ctx, registry.NewTenant{Slug: "big", Mode: registry.ModeDedicated})
	require.NoError(t, err)
	require.Equal(t, "solo", tn.Placement.Shard, "a dedicated tenant needs an empty shard")
	solo, err := s.Shard(ctx, "solo")
	require.NoError(t, err)
	require.False(t, solo.Accepting, "a dedicated shard stops accepting tenants")

	shards, err := s.Shards(ctx)
	require.NoError(t, err)
	count := map[string]int{}
	for _, sh := range shards {
		count[sh.Name] = sh.Tenants
	}
	require.Equal(t, map[string]int{"drained": 0, "large": 4, "small": 2, "solo": 1}, count)

	require.NoError(t, s.SetAccepting(ctx, "small", false))
	require.ErrorIs(t, s.SetAccepting(ctx, "nowhere", false), registry.ErrNotFound)
	ts, err := s.Tenants(ctx, registry.TenantFilter{Shard: "small"})
	require.NoError(t, err)
	require.Len(t, ts, 2)
}

func TestCreateTenantProvisions(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	require.NoError(t, s.AddShard(ctx, registry.Shard{Name: "s0", DSN: shardDSN(t, 0), Accepting: true}))
	desired, err := migrate.NewDesired(appmigrate.Tables)
	require.NoError(t, err)
	apply := provision.ApplySchema(desired, migrate.DefaultRoles())

	// A failing provisioning leaves the tenant provisioning; the same create
	// resumes it.
	boom := errors.New("boom")
	_, err = s.CreateTenant(ctx, registry.NewTenant{Slug: "acme"}, func(context.Context, registry.Shard, string) error { return boom })
	require.ErrorIs(t, err, boom)
	tn, err := s.Tenant(ctx, "acme")
	require.NoError(t, err)
	require.Equal(t, registry.Provisioning, tn.State)

	// A resume with another plan, mode or shard is refused, not ignored.
	require.NoError(t, s.PutPlan(ctx, registry.Plan{Name: "gold"}))
	require.NoError(t, s.AddShard(ctx, registry.Shard{Name: "s1", DSN: shardDSN(t, 0), Accepting: true}))
	for _, nt := range []registry.NewTenant{
		{Slug: "acme", Plan: "gold"},
		{Slug: "acme", Mode: registry.ModeShared},
		{Slug: "acme", Shard: "s1"},
	} {
		_, err = s.CreateTenant(ctx, nt, apply)
		require.ErrorIs(t, err, registry.ErrExists, "%+v", nt)
		require.ErrorContains(t, err, "is provisioning with")
	}
	created, err := s.CreateTenant(ctx, registry.NewTenant{Slug: "acme", Plan: registry.DefaultPlan, Mode: registry.ModeSchema, Shard: "s0"}, apply)
	require.NoError(t, err)
	require.Equal(t, tn.ID, created.ID)
	require.Equal(t, registry.Active, created.State)
	require.EqualValues(t, 2, created.Placement.Epoch)

	// The schema exists on the shard, with the app's tables.
	conn, err := pgx.Connect(ctx, pgtest.Shards(t, 1)[0].DSN("postgres", apptest.Database))
	require.NoError(t, err)
	defer conn.Close(ctx)
	var tables int
	require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE schemaname = $1`, created.ID.SchemaName()).Scan(&tables))
	require.Equal(t, len(desired.Tables()), tables)

	_, err = s.CreateTenant(ctx, registry.NewTenant{Slug: "acme"}, apply)
	require.ErrorIs(t, err, registry.ErrExists)
}

// listen returns a function that waits for the next notification on
// registry.Channel, or "" after timeout. (Expected notifications get 30 s:
// only a failing test waits that long.)
func listen(t *testing.T, dsn string) func(timeout time.Duration) string {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close(ctx) })
	_, err = conn.Exec(ctx, "LISTEN "+registry.Channel)
	require.NoError(t, err)
	return func(timeout time.Duration) string {
		wctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		n, err := conn.WaitForNotification(wctx)
		if err != nil {
			return ""
		}
		return n.Payload
	}
}

func TestChangesNotify(t *testing.T) {
	s, dsn := newStore(t)
	ctx := context.Background()
	next := listen(t, dsn)
	require.NoError(t, s.AddShard(ctx, registry.Shard{Name: "s0", DSN: "postgres://u:secret@127.0.0.1:1/app", Accepting: true}))
	require.NoError(t, s.AddShard(ctx, registry.Shard{Name: "s1", DSN: "postgres://u:secret@127.0.0.1:2/app", Accepting: true}))
	require.NoError(t, s.PutPlan(ctx, registry.Plan{Name: "gold", Limits: tenancy.Limits{StatementTimeout: time.Minute, WorkMem: "64MB", MaxConns: 20, RatePerSec: 100, Burst: 10}, ReplicaReads: true}))

	tn, err := s.CreateTenant(ctx, registry.NewTenant{Slug: "acme"}, nil)
	require.NoError(t, err)
	expect := func(tn registry.Tenant) {
		t.Helper()
		require.Equal(t, fmt.Sprintf("%s %d", tn.ID, tn.Placement.Epoch), next(30*time.Second))
	}
	expect(tn) // activation

	tn, err = s.SetPlan(ctx, tn.ID, "gold")
	require.NoError(t, err)
	require.Equal(t, "gold", tn.Plan)
	expect(tn)

	_, err = s.SetPlan(ctx, tn.ID, "platinum")
	require.ErrorIs(t, err, registry.ErrNotFound)

	tn, err = s.Suspend(ctx, tn.ID)
	require.NoError(t, err)
	require.Equal(t, registry.Suspended, tn.State)
	expect(tn)
	again, err := s.Suspend(ctx, tn.ID)
	require.NoError(t, err, "suspending a suspended tenant is a no-op")
	require.Equal(t, tn.Placement.Epoch, again.Placement.Epoch)

	tn, err = s.Resume(ctx, tn.ID)
	require.NoError(t, err)
	require.Equal(t, registry.Active, tn.State)
	expect(tn)

	from := tn.Placement.Shard
	to := map[string]string{"s0": "s1", "s1": "s0"}[from]
	tn, err = s.MoveTo(ctx, tn.ID, registry.Placement{Shard: to, Schema: tn.ID.SchemaName()})
	require.NoError(t, err)
	require.Equal(t, to, tn.Placement.Shard)
	expect(tn)

	require.NoError(t, s.PutPlan(ctx, registry.Plan{Name: "gold", Limits: tenancy.Limits{StatementTimeout: 2 * time.Minute}}))
	tn, err = s.Tenant(ctx, "acme")
	require.NoError(t, err)
	expect(tn) // a plan change notifies its tenants

	tn, err = s.SetState(ctx, tn.ID, registry.Deleted)
	require.NoError(t, err)
	expect(tn)
	_, err = s.Resume(ctx, tn.ID)
	require.ErrorIs(t, err, registry.ErrTransition)
	_, err = s.SetState(ctx, tn.ID, registry.Active)
	require.ErrorIs(t, err, registry.ErrTransition)

	// Failed operations sent nothing.
	require.Equal(t, "", next(200*time.Millisecond))

	routes, err := s.Routes(ctx, tn.ID, tenancy.NewID())
	require.NoError(t, err)
	require.Len(t, routes, 1)
	r := routes[0]
	require.Equal(t, registry.Deleted, r.State)
	require.Equal(t, tn.Placement.Epoch, r.Epoch)
	require.Equal(t, to, r.Shard.Name)
	require.Equal(t, "gold", r.Plan.Name)
	require.Equal(t, 2*time.Minute, r.Plan.Limits.StatementTimeout)
	require.Equal(t, "gold", r.Plan.Limits.Plan)
	require.Equal(t, "4MB", r.Plan.Limits.WorkMem)
	require.False(t, r.Plan.ReplicaReads)

	id, epoch, all, err := registry.ParseNotification(fmt.Sprintf("%s %d", tn.ID, 7))
	require.NoError(t, err)
	require.Equal(t, tn.ID, id)
	require.EqualValues(t, 7, epoch)
	require.False(t, all)
	require.NoError(t, s.NotifyAll(ctx))
	require.Equal(t, "*", next(30*time.Second))
}

func TestPlanValidation(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	for _, p := range []registry.Plan{
		{Name: "neg", Limits: tenancy.Limits{StatementTimeout: -time.Second}},
		{Name: "sub-ms", Limits: tenancy.Limits{StatementTimeout: 999 * time.Microsecond}}, // stored in ms: 0, no limit
		{Name: "sub-ms-queue", Limits: tenancy.Limits{QueueTimeout: time.Nanosecond}},
		{Name: "mem", Limits: tenancy.Limits{WorkMem: "lots"}},
		{Name: "conns", Limits: tenancy.Limits{MaxConns: -1}},
		{Name: "Bad Name"},
	} {
		require.ErrorIs(t, s.PutPlan(ctx, p), registry.ErrInvalid, p.Name)
	}
	// A bad name says what a name may be (not "value does not match validation").
	require.ErrorContains(t, s.PutPlan(ctx, registry.Plan{Name: "Bad Name"}), "want lower-case letters, digits, - and _")
	_, err := s.CreateTenant(ctx, registry.NewTenant{Slug: "Acme Inc"}, nil)
	require.ErrorContains(t, err, "slug: want lower-case letters")
}

// TestDSNsStayRedacted checks that passwords in shard DSNs appear in no
// error or printed form.
func TestDSNsStayRedacted(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	const secret = "s3cr3t-pw"
	for _, bad := range []string{
		"host=db password=" + secret,
		"postgres://u:" + secret + "@",
		"mysql://u:" + secret + "@db/x",
		"postgres://u:" + secret + "@db:notaport/x",
	} {
		err := s.AddShard(ctx, registry.Shard{Name: "bad", DSN: bad, Accepting: true})
		require.ErrorIs(t, err, registry.ErrInvalid, bad)
		require.NotContains(t, err.Error(), secret)
	}
	good := registry.Shard{Name: "good", DSN: "postgres://u:" + secret + "@127.0.0.1:1/app?sslmode=disable",
		ReplicaDSN: "postgres://u@127.0.0.1:2/app?password=" + secret, Accepting: true}
	require.NoError(t, s.AddShard(ctx, good))
	err := s.AddShard(ctx, good)
	require.ErrorIs(t, err, registry.ErrExists)
	require.NotContains(t, err.Error(), secret)
	require.NotContains(t, good.String(), secret)
	require.NotContains(t, fmt.Sprint(good.LogValue()), secret)
	sh, err := s.Client().Shard.Query().Only(ctx)
	require.NoError(t, err)
	require.NotContains(t, sh.String(), secret)

	for _, dsn := range []string{
		"postgres://u:" + secret + "@h/db", "postgres://u@h/db?password=" + secret,
		"host=h password=" + secret + " user=u", "host=h password='" + secret + " x' user=u",
		"postgres://u:" + secret + "@h:bad/db",
	} {
		red := registry.Redact(dsn)
		require.NotContains(t, red, secret, dsn)
		require.True(t, strings.Contains(red, "xxxxx"), red)
	}
	got, err := registry.WithUser("postgres://u:"+secret+"@h/db?password="+secret+"&sslmode=disable", "tenantry_app")
	require.NoError(t, err)
	require.Equal(t, "postgres://tenantry_app@h/db?sslmode=disable", got)
	got, err = registry.WithUser("postgres://u:"+secret+"@h/db", "u")
	require.NoError(t, err)
	require.Contains(t, got, secret, "the DSN's own user keeps its password")
}

// TestConcurrentRegistrations never overfills a shard.
func TestConcurrentRegistrations(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	require.NoError(t, s.AddShard(ctx, registry.Shard{Name: "only", DSN: "postgres://postgres@127.0.0.1:1/app", Capacity: 5, Accepting: true}))
	errs := make(chan error, 12)
	for i := range 12 {
		go func() {
			_, err := s.Register(ctx, registry.NewTenant{Slug: fmt.Sprintf("c%d", i)})
			errs <- err
		}()
	}
	placed := 0
	for range 12 {
		err := <-errs
		if err == nil {
			placed++
			continue
		}
		require.ErrorIs(t, err, registry.ErrNoCapacity)
	}
	require.Equal(t, 5, placed)
	shards, err := s.Shards(ctx)
	require.NoError(t, err)
	require.Equal(t, 5, shards[0].Tenants)
}
