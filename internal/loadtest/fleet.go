package loadtest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	appmigrate "github.com/tenantry/tenantry/examples/app/ent/migrate"
	"github.com/tenantry/tenantry/internal/apptest"
	"github.com/tenantry/tenantry/internal/pgtest"
	"github.com/tenantry/tenantry/migrate"
	"github.com/tenantry/tenantry/registry"
	"github.com/tenantry/tenantry/registry/provision"
	"github.com/tenantry/tenantry/tenancy"
)

// Fleet is a throwaway fleet: a registry on a cluster of its own (so that
// it can be stopped without touching a shard) and shard clusters, named
// shard0, shard1, ... in the registry, each with the app database and the
// roles of migrate.DefaultRoles.
type Fleet struct {
	Registry    *pgtest.Cluster
	Shards      []*pgtest.Cluster
	RegistryDSN string
	Store       *registry.Store
}

// ShardName is the registry name of the i-th shard of a Fleet.
func ShardName(i int) string { return fmt.Sprintf("shard%d", i) }

// StartFleet starts a registry cluster and shards shard clusters, in
// parallel, and registers the shards. Close removes everything.
func StartFleet(ctx context.Context, shards int) (_ *Fleet, err error) {
	if shards < 1 {
		return nil, errors.New("loadtest: a fleet needs at least one shard")
	}
	f := &Fleet{Shards: make([]*pgtest.Cluster, shards)}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	start := func(name string, settings map[string]string, dst **pgtest.Cluster, prepare bool) {
		wg.Go(func() {
			c, err := pgtest.Start(ctx, pgtest.Options{Name: name, Settings: settings})
			if err == nil {
				mu.Lock()
				*dst = c
				mu.Unlock()
				if prepare {
					var sh *tenancy.Shard
					if sh, err = apptest.PrepareShard(ctx, c, migrate.DefaultRoles(), name); err == nil {
						sh.Pool.Close()
						sh.Admin.Close()
					}
				}
			}
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("loadtest: %s: %w", name, err))
				mu.Unlock()
			}
		})
	}
	// The registry commits synchronously, so that stopping or killing it
	// loses no committed change (pgtest's default is off).
	start("loadtest-registry", map[string]string{"synchronous_commit": "on"}, &f.Registry, false)
	for i := range shards {
		start("loadtest-"+ShardName(i), map[string]string{"max_connections": "200"}, &f.Shards[i], true)
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return f, err
	}
	if err := f.Registry.CreateDatabase(ctx, "registry"); err != nil {
		return f, err
	}
	f.RegistryDSN = f.Registry.DSN("postgres", "registry")
	if f.Store, err = registry.Open(ctx, f.RegistryDSN); err != nil {
		return f, err
	}
	if err := f.Store.Init(ctx); err != nil {
		return f, err
	}
	for i, c := range f.Shards {
		sh := registry.Shard{Name: ShardName(i), DSN: c.DSN("postgres", apptest.Database), Accepting: true, Capacity: 1 << 20}
		if err := f.Store.AddShard(ctx, sh); err != nil {
			return f, err
		}
	}
	return f, nil
}

// Close closes the store and removes every cluster of the fleet.
func (f *Fleet) Close() error {
	var errs []error
	if f.Store != nil {
		errs = append(errs, f.Store.Close())
	}
	for _, c := range append([]*pgtest.Cluster{f.Registry}, f.Shards...) {
		if c != nil {
			errs = append(errs, c.Close())
		}
	}
	return errors.Join(errs...)
}

// Tenant is a tenant that Provision created.
type Tenant struct {
	ID     tenancy.ID
	Slug   string
	Shard  string
	Schema string
}

// Spec says which tenants Provision creates.
type Spec struct {
	// Tenants is how many (default 1000). The first is the aggressor.
	Tenants int
	// Prefix starts every slug (default "lt"); slugs are <prefix>-<i>.
	Prefix string
	// Shards are the shard names, assigned round robin; empty: the
	// registry places each tenant on its least loaded accepting shard.
	Shards []string
	// OwnEvery: tenant i gets a schema of its own when i%OwnEvery == 0
	// (the aggressor always does), the others share their shard's
	// registry.DefaultSharedSchema. Default 10; 1: every tenant has its own.
	OwnEvery int
	// VictimPlan and AggressorPlan are created (or updated) and given to
	// the victims and to the aggressor (tenant 0).
	VictimPlan, AggressorPlan registry.Plan
	// Workers provisions that many tenants at once (default 4).
	Workers int
	// Progress, when set, is called after every tenant.
	Progress func(done, total int)
}

// DefaultPlans returns the plans of a run at rate requests/s per victim:
// victims get plenty of headroom (10x their rate), the aggressor is capped
// at capFactor times a victim's rate, 2 connections per shard and a 50 ms
// queue timeout.
func DefaultPlans(rate, capFactor float64) (victim, aggressor registry.Plan) {
	v := tenancy.DefaultLimits
	v.RatePerSec = 10 * rate
	v.Burst = max(10, int(10*rate))
	a := tenancy.DefaultLimits
	a.MaxConns = 2
	a.RatePerSec = capFactor * rate
	a.Burst = max(1, int(capFactor*rate/10))
	a.QueueTimeout = 50 * time.Millisecond
	return registry.Plan{Name: "loadtest-victim", Limits: v}, registry.Plan{Name: "loadtest-aggressor", Limits: a}
}

// Provision creates spec.Tenants tenants through the registry (schemas
// through migrate, as tenantctl tenants create does; a shared schema is
// brought up to date once per shard) and returns them, the aggressor
// first.
func Provision(ctx context.Context, store *registry.Store, spec Spec) ([]Tenant, error) {
	if spec.Tenants <= 0 {
		spec.Tenants = 1000
	}
	if spec.Prefix == "" {
		spec.Prefix = "lt"
	}
	if spec.OwnEvery <= 0 {
		spec.OwnEvery = 10
	}
	if spec.Workers <= 0 {
		spec.Workers = 4
	}
	if spec.VictimPlan.Name == "" {
		spec.VictimPlan, spec.AggressorPlan = DefaultPlans(2, 10)
	}
	for _, p := range []registry.Plan{spec.VictimPlan, spec.AggressorPlan} {
		if err := store.PutPlan(ctx, p); err != nil {
			return nil, err
		}
	}
	desired, err := migrate.NewDesired(appmigrate.Tables)
	if err != nil {
		return nil, err
	}
	apply := provision.ApplySchema(desired, migrate.DefaultRoles())
	var (
		sharedMu sync.Mutex
		shared   = map[string]*sharedApply{}
	)
	applyShared := func(ctx context.Context, sh registry.Shard, schema string) error {
		sharedMu.Lock()
		sa := shared[sh.Name+"."+schema]
		if sa == nil {
			sa = &sharedApply{}
			shared[sh.Name+"."+schema] = sa
		}
		sharedMu.Unlock()
		sa.once.Do(func() { sa.err = apply(ctx, sh, schema) })
		return sa.err
	}
	out := make([]Tenant, spec.Tenants)
	var (
		next, done atomic.Int64
		wg         sync.WaitGroup
		errMu      sync.Mutex
		first      error
	)
	for range spec.Workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= spec.Tenants || ctx.Err() != nil {
					return
				}
				nt := registry.NewTenant{Slug: fmt.Sprintf("%s-%d", spec.Prefix, i), Plan: spec.VictimPlan.Name, Mode: registry.ModeShared}
				fn := applyShared
				if i%spec.OwnEvery == 0 {
					nt.Mode, fn = registry.ModeSchema, apply
				}
				if i == 0 {
					nt.Plan = spec.AggressorPlan.Name
				}
				if len(spec.Shards) > 0 {
					nt.Shard = spec.Shards[i%len(spec.Shards)]
				}
				t, err := store.CreateTenant(ctx, nt, fn)
				if err != nil {
					errMu.Lock()
					if first == nil {
						first = fmt.Errorf("loadtest: tenant %s: %w", nt.Slug, err)
					}
					errMu.Unlock()
					return
				}
				out[i] = Tenant{ID: t.ID, Slug: t.Slug, Shard: t.Placement.Shard, Schema: t.Placement.Schema}
				if spec.Progress != nil {
					spec.Progress(int(done.Add(1)), spec.Tenants)
				}
			}
		})
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		first = ctx.Err()
	}
	return out, first
}

type sharedApply struct {
	once sync.Once
	err  error
}
