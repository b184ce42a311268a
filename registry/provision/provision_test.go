package provision_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	entschema "entgo.io/ent/dialect/sql/schema"
	"entgo.io/ent/schema/field"
	"github.com/google/uuid"
	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/tenantry/tenantry/examples/app/ent"
	appmigrate "github.com/tenantry/tenantry/examples/app/ent/migrate"
	_ "github.com/tenantry/tenantry/examples/app/ent/runtime"
	"github.com/tenantry/tenantry/internal/pgtest"
	"github.com/tenantry/tenantry/migrate"
	"github.com/tenantry/tenantry/registry"
	"github.com/tenantry/tenantry/registry/provision"
	"github.com/tenantry/tenantry/router"
	"github.com/tenantry/tenantry/tenancy"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

var dbSeq atomic.Int64

// fixture is a registry and shard databases of its own on the shared test
// clusters, and a provisioner of the example app.
type fixture struct {
	clusters []*pgtest.Cluster
	regDSN   string
	store    *registry.Store
	desired  *migrate.Desired
	prov     *provision.Provisioner
	roles    migrate.Roles
	supers   map[string]*sql.DB // shard name → superuser handle
	shards   map[string]registry.Shard
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	ctx := t.Context()
	f := &fixture{clusters: pgtest.Shards(t, 2), roles: migrate.DefaultRoles(), supers: map[string]*sql.DB{}, shards: map[string]registry.Shard{}}
	name := fmt.Sprintf("registry_%d_%d", os.Getpid(), dbSeq.Add(1))
	require.NoError(t, f.clusters[0].CreateDatabase(ctx, name))
	f.regDSN = f.clusters[0].DSN("postgres", name)
	var err error
	f.store, err = registry.Open(ctx, f.regDSN)
	require.NoError(t, err)
	t.Cleanup(func() { f.store.Close() })
	require.NoError(t, f.store.Init(ctx))
	f.desired, err = migrate.NewDesired(appmigrate.Tables)
	require.NoError(t, err)
	f.prov, err = provision.New(f.desired, f.roles)
	require.NoError(t, err)
	t.Cleanup(func() { f.prov.Close() })
	for i := range 2 {
		f.addShard(t, fmt.Sprintf("s%d", i), i, true)
	}
	return f
}

// addShard creates a shard database owned by the owner role on cluster i
// and registers it.
func (f *fixture) addShard(t testing.TB, name string, i int, accepting bool) registry.Shard {
	t.Helper()
	ctx := t.Context()
	c := f.clusters[i]
	db := fmt.Sprintf("shard_%d_%d", os.Getpid(), dbSeq.Add(1))
	require.NoError(t, c.CreateDatabase(ctx, db))
	super, err := sql.Open("pgx", c.DSN("postgres", db))
	require.NoError(t, err)
	t.Cleanup(func() { super.Close() })
	require.NoError(t, migrate.EnsureRoles(ctx, super, f.roles))
	_, err = super.ExecContext(ctx, "ALTER DATABASE "+db+" OWNER TO "+f.roles.Owner)
	require.NoError(t, err)
	sh := registry.Shard{Name: name, DSN: c.DSN("postgres", db), Accepting: accepting, Capacity: 10000}
	require.NoError(t, f.store.AddShard(ctx, sh))
	f.supers[name], f.shards[name] = super, sh
	return sh
}

func (f *fixture) create(t *testing.T, nt registry.NewTenant) registry.Tenant {
	t.Helper()
	if nt.Slug == "" {
		nt.Slug = "t-" + uuid.NewString()[:8]
	}
	tn, err := f.store.CreateTenant(t.Context(), nt, f.prov.Apply)
	require.NoError(t, err)
	require.Equal(t, registry.Active, tn.State)
	return tn
}

func (f *fixture) router(t *testing.T) *ent.Client {
	t.Helper()
	r, err := router.New(context.Background(), router.Config{RegistryDSN: f.regDSN, TTL: time.Hour})
	require.NoError(t, err)
	t.Cleanup(func() { r.Close() })
	return ent.NewClient(ent.Driver(tenancy.NewDriver(r)))
}

func (f *fixture) fleet(shards ...string) *migrate.Fleet {
	fl := &migrate.Fleet{Desired: f.desired, Roles: f.roles, Logger: slog.New(slog.DiscardHandler)}
	for _, name := range shards {
		db, err := f.prov.DB(f.shards[name])
		if err != nil {
			panic(err)
		}
		fl.Shards = append(fl.Shards, migrate.Shard{Name: name, DB: db})
	}
	return fl
}

func (f *fixture) schemas(t *testing.T, shard, like string) []string {
	t.Helper()
	rows, err := f.supers[shard].QueryContext(t.Context(), `SELECT nspname::text FROM pg_namespace WHERE nspname LIKE $1 ORDER BY 1`, like)
	require.NoError(t, err)
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		require.NoError(t, rows.Scan(&s))
		out = append(out, s)
	}
	return out
}

func (f *fixture) count(t testing.TB, shard, query string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, f.supers[shard].QueryRowContext(t.Context(), query, args...).Scan(&n))
	return n
}

func ctxOf(id tenancy.ID) context.Context { return tenancy.WithTenant(context.Background(), id) }

func addCustomers(t *testing.T, c *ent.Client, id tenancy.ID, n int) {
	t.Helper()
	for i := range n {
		_, err := c.Customer.Create().SetName(fmt.Sprintf("c%d", i)).SetEmail(uuid.NewString() + "@example.test").Save(ctxOf(id))
		require.NoError(t, err)
	}
}

// TestCreateInEachMode provisions tenants in schema, shared and dedicated
// mode through the registry; each lands where its mode says, is served,
// and the fleet runner discovers its schema and finds it current.
func TestCreateInEachMode(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	own := f.create(t, registry.NewTenant{})
	own2 := f.create(t, registry.NewTenant{})
	require.NotEqual(t, own.Placement.Shard, own2.Placement.Shard, "least loaded shard first")
	require.Equal(t, own.ID.SchemaName(), own.Placement.Schema)

	pooled := f.create(t, registry.NewTenant{Mode: registry.ModeShared, Shard: "s0"})
	pooled2 := f.create(t, registry.NewTenant{Mode: registry.ModeShared, Shard: "s0"})
	require.Equal(t, registry.DefaultSharedSchema, pooled.Placement.Schema)
	require.Equal(t, []string{registry.DefaultSharedSchema}, f.schemas(t, "s0", "shared%"))

	// Dedicated: the only empty accepting shard, which then stops accepting.
	f.addShard(t, "s2", 1, true)
	big := f.create(t, registry.NewTenant{Mode: registry.ModeDedicated})
	require.Equal(t, "s2", big.Placement.Shard)
	s2, err := f.store.Shard(ctx, "s2")
	require.NoError(t, err)
	require.False(t, s2.Accepting)
	require.Equal(t, []string{big.ID.SchemaName()}, f.schemas(t, "s2", `tenant\_%`))
	_, err = f.store.CreateTenant(ctx, registry.NewTenant{Slug: "big2", Mode: registry.ModeDedicated}, f.prov.Apply)
	require.ErrorIs(t, err, registry.ErrNoCapacity, "no empty shard left")

	// A shared schema outside the runner's naming is refused.
	_, err = f.store.Register(ctx, registry.NewTenant{Slug: "odd", Mode: registry.ModeShared, Schema: "pool"})
	require.ErrorIs(t, err, registry.ErrInvalid)

	client := f.router(t)
	for _, tn := range []registry.Tenant{own, own2, pooled, pooled2, big} {
		addCustomers(t, client, tn.ID, 2)
		n, err := client.Customer.Query().Count(ctxOf(tn.ID))
		require.NoError(t, err)
		require.Equal(t, 2, n, tn.Slug)
	}

	// The fleet runner (default discovery) finds every schema, shared
	// one included, and all of them current.
	rep, err := f.fleet("s0", "s1", "s2").Run(ctx, migrate.RunOptions{})
	require.NoError(t, err)
	var targets []string
	for _, t := range rep.Plan.UpToDate() {
		targets = append(targets, t.Shard+"/"+t.Schema)
	}
	slices.Sort(targets)
	want := []string{
		own.Placement.Shard + "/" + own.Placement.Schema, own2.Placement.Shard + "/" + own2.Placement.Schema,
		"s0/" + registry.DefaultSharedSchema, "s2/" + big.Placement.Schema,
	}
	slices.Sort(want)
	require.Equal(t, want, targets)
	require.Zero(t, rep.Total.Applied+rep.Total.Failed+rep.Total.Drifted)

	// Ledger: every schema at the desired version.
	for _, name := range []string{"s0", "s1", "s2"} {
		require.Zero(t, f.count(t, name, `SELECT count(*) FROM tenantry.schema_state WHERE version <> $1`, f.desired.Version()))
	}
}

// reader reads one tenant's customers through the router until stopped
// and counts reads and errors.
type reader struct {
	reads, errs atomic.Int64
	first       atomic.Value
	stop        chan struct{}
	done        sync.WaitGroup
}

func startReader(client *ent.Client, ids ...tenancy.ID) *reader {
	r := &reader{stop: make(chan struct{})}
	for _, id := range ids {
		r.done.Go(func() {
			for {
				select {
				case <-r.stop:
					return
				default:
				}
				if _, err := client.Customer.Query().Count(ctxOf(id)); err != nil {
					r.errs.Add(1)
					r.first.CompareAndSwap(nil, err.Error())
				} else {
					r.reads.Add(1)
				}
				time.Sleep(time.Millisecond)
			}
		})
	}
	return r
}

func (r *reader) check(t *testing.T) {
	t.Helper()
	close(r.stop)
	r.done.Wait()
	require.Zero(t, r.errs.Load(), "other tenants saw errors, the first: %v", r.first.Load())
	require.Positive(t, r.reads.Load())
}

// TestCreateConcurrentWithFleetMigration creates tenants in parallel (own
// and shared schemas) while a fleet run migrates the shards to a new
// version and other tenants are being read; nothing fails, and a rerun
// leaves every schema at the new version.
func TestCreateConcurrentWithFleetMigration(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	var existing []tenancy.ID
	for range 4 {
		existing = append(existing, f.create(t, registry.NewTenant{}).ID)
	}
	client := f.router(t)
	for _, id := range existing {
		addCustomers(t, client, id, 1)
	}
	rd := startReader(client, existing...)

	v2, err := migrate.NewDesired(withNotes())
	require.NoError(t, err)
	fl := f.fleet("s0", "s1")
	fl.Desired = v2
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	created := make(chan registry.Tenant, 32)
	for i := range 10 {
		wg.Go(func() {
			nt := registry.NewTenant{Slug: fmt.Sprintf("par-%d", i)}
			if i%3 == 0 {
				nt.Mode = registry.ModeShared
			}
			tn, err := f.store.CreateTenant(ctx, nt, f.prov.Apply)
			if err != nil {
				errs <- err
				return
			}
			created <- tn
		})
	}
	wg.Go(func() {
		if _, err := fl.Run(ctx, migrate.RunOptions{FailureBudget: -1}); err != nil {
			errs <- fmt.Errorf("fleet run: %w", err)
		}
	})
	wg.Wait()
	close(errs)
	close(created)
	for err := range errs {
		require.NoError(t, err)
	}
	rd.check(t)
	n := 0
	for tn := range created {
		n++
		require.Equal(t, registry.Active, tn.State)
	}
	require.Equal(t, 10, n)

	rep, err := fl.Run(ctx, migrate.RunOptions{})
	require.NoError(t, err)
	require.Zero(t, rep.Total.Failed+rep.Total.Drifted, "%+v", rep.Failed)
	for _, name := range []string{"s0", "s1"} {
		require.Zero(t, f.count(t, name, `SELECT count(*) FROM pg_namespace n WHERE (nspname LIKE 'tenant\_%' OR nspname LIKE 'shared\_%')
			AND NOT EXISTS (SELECT 1 FROM tenantry.schema_state s WHERE s.schema_name = n.nspname AND s.version = $1)`, v2.Version()),
			"every schema on %s at the new version", name)
	}
}

// withNotes is the example app plus a nullable customers.notes column: a
// second version.
func withNotes() []*entschema.Table {
	var out []*entschema.Table
	for _, t := range appmigrate.Tables {
		c := *t
		if t.Name == appmigrate.CustomersTable.Name {
			c.Columns = append(slices.Clone(t.Columns), &entschema.Column{Name: "notes", Type: field.TypeString, Nullable: true})
		}
		out = append(out, &c)
	}
	return out
}

// TestOffboard: soft offboarding stops serving the tenant, retires its
// schema and keeps its data; restore undoes it; hard offboarding refuses
// before the retention ends unless forced, then drops the schema (or, for
// a shared placement, deletes that tenant's rows only); Purge deletes what
// is past retention. Other tenants are served throughout.
func TestOffboard(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	x := f.create(t, registry.NewTenant{Slug: "x", Shard: "s0"})
	other := f.create(t, registry.NewTenant{Slug: "other", Shard: "s0"})
	p1 := f.create(t, registry.NewTenant{Slug: "p1", Mode: registry.ModeShared, Shard: "s0"})
	p2 := f.create(t, registry.NewTenant{Slug: "p2", Mode: registry.ModeShared, Shard: "s0"})
	client := f.router(t)
	for _, tn := range []registry.Tenant{x, other, p1, p2} {
		addCustomers(t, client, tn.ID, 3)
	}
	rd := startReader(client, other.ID, p2.ID)
	retired := registry.RetiredSchemaName(x.ID)

	// Soft.
	o, err := f.store.Offboard(ctx, x.ID, registry.OffboardOptions{Retention: time.Hour, Reason: "contract ended"}, f.prov)
	require.NoError(t, err)
	require.Equal(t, retired, o.RetiredSchema)
	require.False(t, o.RetiredAt.IsZero())
	tn, err := f.store.Tenant(ctx, "x")
	require.NoError(t, err)
	require.Equal(t, registry.Offboarded, tn.State)
	eventually(t, "router refuses x", func() bool {
		_, err := client.Customer.Query().Count(ctxOf(x.ID))
		return errors.Is(err, tenancy.ErrTenantDeleted)
	})
	require.Equal(t, []string{retired}, f.schemas(t, "s0", "retired%"))
	require.NotContains(t, f.schemas(t, "s0", `tenant\_%`), x.Placement.Schema)
	require.Equal(t, 3, f.count(t, "s0", `SELECT count(*) FROM "`+retired+`".customers`), "data kept")
	require.Equal(t, 1, f.count(t, "s0", `SELECT count(*) FROM tenantry.schema_state WHERE schema_name = $1`, retired))
	_, err = f.store.SetState(ctx, x.ID, registry.Active)
	require.ErrorIs(t, err, registry.ErrTransition, "only a restore serves an offboarded tenant again")

	// Undo.
	tn, err = f.store.RestoreOffboarded(ctx, x.ID, f.prov)
	require.NoError(t, err)
	require.Equal(t, registry.Active, tn.State)
	eventually(t, "router serves x again", func() bool {
		n, err := client.Customer.Query().Count(ctxOf(x.ID))
		return err == nil && n == 3
	})
	addCustomers(t, client, x.ID, 1) // writes work: grants are back

	// Soft again, then hard: refused within retention, forced works.
	_, err = f.store.Offboard(ctx, x.ID, registry.OffboardOptions{Retention: time.Hour}, f.prov)
	require.NoError(t, err)
	_, err = f.store.Offboard(ctx, x.ID, registry.OffboardOptions{Hard: true}, f.prov)
	require.ErrorIs(t, err, registry.ErrRetention)
	require.Equal(t, 4, f.count(t, "s0", `SELECT count(*) FROM "`+retired+`".customers`), "nothing deleted")
	o, err = f.store.Offboard(ctx, x.ID, registry.OffboardOptions{Hard: true, Force: true}, f.prov)
	require.NoError(t, err)
	require.True(t, o.Forced)
	require.False(t, o.PurgedAt.IsZero())
	require.Empty(t, f.schemas(t, "s0", "retired%"))
	require.Zero(t, f.count(t, "s0", `SELECT count(*) FROM tenantry.schema_state WHERE schema_name IN ($1, $2)`, retired, x.Placement.Schema))
	tn, err = f.store.Tenant(ctx, "x")
	require.NoError(t, err)
	require.Equal(t, registry.Deleted, tn.State)
	_, err = f.store.RestoreOffboarded(ctx, x.ID, f.prov)
	require.ErrorIs(t, err, registry.ErrNotOffboarded)
	hist, err := f.store.Offboardings(ctx, registry.OffboardingFilter{Tenant: x.ID})
	require.NoError(t, err)
	require.Len(t, hist, 2)
	require.False(t, hist[0].RestoredAt.IsZero())
	require.Equal(t, "contract ended", hist[0].Reason)
	require.False(t, hist[1].PurgedAt.IsZero())

	// Shared: soft keeps the rows, hard deletes that tenant's rows only.
	sharedCount := func(id tenancy.ID) int {
		return f.count(t, "s0", `SELECT count(*) FROM "`+registry.DefaultSharedSchema+`".customers WHERE tenant_id = $1`, id.String())
	}
	o, err = f.store.Offboard(ctx, p1.ID, registry.OffboardOptions{}, f.prov)
	require.NoError(t, err)
	require.Empty(t, o.RetiredSchema)
	require.Equal(t, o.OffboardedAt.Add(registry.DefaultRetention), o.RetainUntil)
	require.Equal(t, 3, sharedCount(p1.ID))
	eventually(t, "router refuses p1", func() bool {
		_, err := client.Customer.Query().Count(ctxOf(p1.ID))
		return errors.Is(err, tenancy.ErrTenantDeleted)
	})
	_, err = f.store.Offboard(ctx, p1.ID, registry.OffboardOptions{Hard: true, Force: true}, f.prov)
	require.NoError(t, err)
	require.Zero(t, sharedCount(p1.ID))
	require.Equal(t, 3, sharedCount(p2.ID), "the other tenant's rows stay")
	require.Equal(t, []string{registry.DefaultSharedSchema}, f.schemas(t, "s0", "shared%"))

	// Purge: only what is past retention.
	old := f.create(t, registry.NewTenant{Slug: "old", Shard: "s1"})
	recent := f.create(t, registry.NewTenant{Slug: "recent", Shard: "s1"})
	_, err = f.store.Offboard(ctx, old.ID, registry.OffboardOptions{Retention: time.Hour, Now: func() time.Time { return time.Now().Add(-2 * time.Hour) }}, f.prov)
	require.NoError(t, err)
	_, err = f.store.Offboard(ctx, recent.ID, registry.OffboardOptions{Retention: time.Hour}, f.prov)
	require.NoError(t, err)
	purged, err := f.store.Purge(ctx, time.Now(), f.prov)
	require.NoError(t, err)
	require.Len(t, purged, 1)
	require.Equal(t, old.ID, purged[0].Tenant)
	require.False(t, purged[0].Forced)
	require.Equal(t, []string{registry.RetiredSchemaName(recent.ID)}, f.schemas(t, "s1", "retired%"))

	rd.check(t)
}

// eventually polls cond until it holds or 30 s pass (generous: only a
// failing test waits that long, and a loaded machine needs seconds for a
// background refill, a reconnect after backoff or a replication start).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestCreateFromSpares: with spares, a new tenant's schema is a spare
// renamed, the spare is replaced in the background, and the schema is
// the one Desired.Apply makes.
func TestCreateFromSpares(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	reg := prometheus.NewRegistry()
	warm, err := provision.New(f.desired, f.roles, provision.Options{Spares: 2, Registerer: reg})
	require.NoError(t, err)
	n, err := warm.Warm(ctx, f.shards["s0"])
	require.NoError(t, err)
	require.Equal(t, 2, n)
	spares := func() []string { return f.schemas(t, "s0", `tenant\_spare\_%`) }
	before := spares()
	require.Len(t, before, 2)
	var created []registry.Tenant
	for range 3 {
		tn, err := f.store.CreateTenant(ctx, registry.NewTenant{Slug: "w-" + uuid.NewString()[:8], Shard: "s0"}, warm.Apply)
		require.NoError(t, err)
		created = append(created, tn)
	}
	// The gauge counts the spares the provisioner knows; a spare whose
	// creation is cut short by Close is only adopted by the next Prepare,
	// so wait for both before closing.
	eventually(t, "spares refilled", func() bool {
		return len(spares()) == 2 && metricValue(t, reg, "tenantry_provision_spares", "") == 2
	})
	require.NoError(t, warm.Close())
	require.NotEqual(t, before, spares(), "the spares were used and replaced")
	claimed := f.count(t, "s0", `SELECT count(*) FROM tenantry.schema_migrations WHERE statements = 1 AND schema_name NOT LIKE 'tenant\_spare\_%'`)
	require.GreaterOrEqual(t, claimed, 2, "at least the two warmed spares were claimed")
	spare, made := metricValue(t, reg, "tenantry_provision_schemas_total", "spare"), metricValue(t, reg, "tenantry_provision_schemas_total", "created")
	require.Equal(t, float64(claimed), spare, "metrics count the spares claimed")
	require.Equal(t, float64(3-claimed), made)
	require.Equal(t, 2.0, metricValue(t, reg, "tenantry_provision_spares", ""))

	db, err := f.prov.DB(f.shards["s0"])
	require.NoError(t, err)
	ref := "tenant_ffffffffffffffffffffffffffffffff"
	_, err = f.desired.Apply(ctx, db, ref, f.roles)
	require.NoError(t, err)
	for _, tn := range created {
		desc, err := migrate.Describe(ctx, db, ref, tn.Placement.Schema)
		require.NoError(t, err)
		require.Equal(t, desc[ref], desc[tn.Placement.Schema])
	}
	client := f.router(t)
	for _, tn := range created {
		addCustomers(t, client, tn.ID, 1)
	}
}

// metricValue returns the value of the named metric's series whose path
// label is path (any series when path is empty), summed over shards.
func metricValue(t *testing.T, reg *prometheus.Registry, name, path string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := path == ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "path" && l.GetValue() == path {
					match = true
				}
			}
			if !match {
				continue
			}
			switch {
			case m.Counter != nil:
				sum += m.GetCounter().GetValue()
			case m.Gauge != nil:
				sum += m.GetGauge().GetValue()
			}
		}
	}
	return sum
}
