package fleetbench

import (
	"context"
	"database/sql"
	"fmt"
	"regexp"
	"sync"
	"sync/atomic"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver for migrate

	"github.com/tenantry/tenantry/examples/app/ent"
	appmigrate "github.com/tenantry/tenantry/examples/app/ent/migrate"
	_ "github.com/tenantry/tenantry/examples/app/ent/runtime" // the mixin's hooks and interceptors
	"github.com/tenantry/tenantry/internal/apptest"
	"github.com/tenantry/tenantry/internal/pgtest"
	"github.com/tenantry/tenantry/migrate"
	"github.com/tenantry/tenantry/tenancy"
)

// Spec says which tenants a fleet has.
type Spec struct {
	// Name tells fleets in one database apart: tenant ids and the shared
	// schemas' names derive from it. Lower-case letters and digits.
	Name string
	// Own tenants have a schema of their own.
	Own int
	// Shared tenants are spread round robin over SharedSchemas schemas
	// (default 1) named <Name>_shared_<k>.
	Shared        int
	SharedSchemas int
	// Customers is how many customers each tenant starts with.
	Customers int
}

// Tenant is one tenant of a fleet.
type Tenant struct {
	ID        tenancy.ID
	Schema    string
	Shared    bool
	Customers []uuid.UUID
}

// Fleet is a set of tenants on one cluster's app database (apptest.Database),
// created through migrate and seeded through the scoped client.
type Fleet struct {
	Cluster *pgtest.Cluster
	Roles   migrate.Roles
	Spec    Spec
	Tenants []Tenant // the Own tenants first, then the Shared ones
}

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9]{0,20}$`)

// TenantID returns the i-th tenant id of the fleet named name: the same for
// every run, different for every (name, i).
func TenantID(name string, i int) tenancy.ID {
	return tenancy.ID(uuid.NewSHA1(uuid.NameSpaceOID, fmt.Appendf(nil, "tenantry/fleetbench/%s/%d", name, i)))
}

// Setup creates the fleet's schemas (roles and the app database first, if
// missing) and seeds every tenant with spec.Customers customers.
func Setup(ctx context.Context, c *pgtest.Cluster, spec Spec) (*Fleet, error) {
	if !nameRE.MatchString(spec.Name) {
		return nil, fmt.Errorf("fleetbench: fleet name %q must match %s", spec.Name, nameRE)
	}
	if spec.SharedSchemas <= 0 {
		spec.SharedSchemas = 1
	}
	f := &Fleet{Cluster: c, Roles: migrate.DefaultRoles(), Spec: spec}
	shard, err := apptest.PrepareShard(ctx, c, f.Roles, spec.Name)
	if err != nil {
		return nil, fmt.Errorf("fleetbench: prepare shard: %w", err)
	}
	shard.Pool.Close()
	shard.Admin.Close()

	schemas := map[string]bool{}
	var order []string
	for i := range spec.Own + spec.Shared {
		t := Tenant{ID: TenantID(spec.Name, i)}
		if i < spec.Own {
			t.Schema = t.ID.SchemaName()
		} else {
			t.Shared = true
			t.Schema = fmt.Sprintf("%s_shared_%d", spec.Name, (i-spec.Own)%spec.SharedSchemas)
		}
		f.Tenants = append(f.Tenants, t)
		if !schemas[t.Schema] {
			schemas[t.Schema] = true
			order = append(order, t.Schema)
		}
	}
	if err := applySchemas(ctx, c, f.Roles, order); err != nil {
		return nil, err
	}
	if err := f.seed(ctx); err != nil {
		return nil, err
	}
	return f, nil
}

// applySchemas brings the schemas to the example app's desired state, two
// at a time.
func applySchemas(ctx context.Context, c *pgtest.Cluster, roles migrate.Roles, schemas []string) error {
	desired, err := migrate.NewDesired(appmigrate.Tables)
	if err != nil {
		return err
	}
	db, err := sql.Open("pgx", c.DSN(roles.Owner, apptest.Database))
	if err != nil {
		return err
	}
	defer db.Close()
	const workers = 2
	db.SetMaxOpenConns(workers)
	var (
		next  atomic.Int64
		wg    sync.WaitGroup
		errMu sync.Mutex
		first error
	)
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(schemas) {
					return
				}
				if _, err := desired.Apply(ctx, db, schemas[i], roles); err != nil {
					errMu.Lock()
					if first == nil {
						first = fmt.Errorf("fleetbench: apply schema %s: %w", schemas[i], err)
					}
					errMu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return first
}

// seed creates the customers of every tenant through the scoped client.
func (f *Fleet) seed(ctx context.Context) error {
	pool, err := f.AppPool(ctx, 4)
	if err != nil {
		return err
	}
	defer pool.Close()
	ps, err := f.Placements(&tenancy.Shard{Name: f.Spec.Name, Pool: pool}, func(int, *Tenant) tenancy.Limits { return tenancy.DefaultLimits })
	if err != nil {
		return err
	}
	client := ent.NewClient(ent.Driver(tenancy.NewDriver(tenancy.NewStaticResolver(nil, ps...))))
	var (
		next  atomic.Int64
		wg    sync.WaitGroup
		errMu sync.Mutex
		first error
	)
	for range 4 {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(f.Tenants) {
					return
				}
				t := &f.Tenants[i]
				tctx := tenancy.WithTenant(ctx, t.ID)
				bulk := make([]*ent.CustomerCreate, f.Spec.Customers)
				for j := range bulk {
					bulk[j] = client.Customer.Create().SetName(fmt.Sprintf("customer %d", j)).SetEmail(uuid.NewString() + "@fleet.test")
				}
				cs, err := client.Customer.CreateBulk(bulk...).Save(tctx)
				if err != nil {
					errMu.Lock()
					if first == nil {
						first = fmt.Errorf("fleetbench: seed tenant %s: %w", t.ID, err)
					}
					errMu.Unlock()
					return
				}
				for _, cu := range cs {
					t.Customers = append(t.Customers, cu.ID)
				}
			}
		})
	}
	wg.Wait()
	return first
}

// AppPool opens a pool of maxConns connections as the app role, whose
// connections start with tenancy.DefaultLimits as session defaults.
func (f *Fleet) AppPool(ctx context.Context, maxConns int32) (*pgxpool.Pool, error) {
	return apptest.NewPool(ctx, f.Cluster.DSN(f.Roles.App, apptest.Database), maxConns)
}

// Placements returns a placement on shard for every tenant, with the limits
// that limits returns for it.
func (f *Fleet) Placements(shard *tenancy.Shard, limits func(i int, t *Tenant) tenancy.Limits) ([]*tenancy.Placement, error) {
	ps := make([]*tenancy.Placement, len(f.Tenants))
	for i := range f.Tenants {
		t := &f.Tenants[i]
		p, err := tenancy.NewPlacement(t.ID, shard, t.Schema, limits(i, t))
		if err != nil {
			return nil, err
		}
		ps[i] = p
	}
	return ps, nil
}
