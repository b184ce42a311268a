package apptest

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver for migrations

	"github.com/tenantry/tenantry/examples/app/ent"
	appmigrate "github.com/tenantry/tenantry/examples/app/ent/migrate"
	_ "github.com/tenantry/tenantry/examples/app/ent/runtime" // hooks and interceptors of the mixin
	"github.com/tenantry/tenantry/internal/pgtest"
	"github.com/tenantry/tenantry/migrate"
	"github.com/tenantry/tenantry/tenancy"
)

// Database is the database the fixture uses on every shard.
const Database = "app"

// SharedSchema is the schema that tenants A and B share on shard 0.
const SharedSchema = "shared_0"

// Fixed tenant ids, so failures are easy to read.
var (
	A = tenancy.MustParseID("aaaaaaaa-0000-4000-8000-00000000000a")
	B = tenancy.MustParseID("bbbbbbbb-0000-4000-8000-00000000000b")
	C = tenancy.MustParseID("cccccccc-0000-4000-8000-00000000000c")
	D = tenancy.MustParseID("dddddddd-0000-4000-8000-00000000000d")
)

// Env is the example app on two shards.
type Env struct {
	Clusters   []*pgtest.Cluster
	Shards     []*tenancy.Shard
	Roles      migrate.Roles
	Desired    *migrate.Desired
	Placements map[tenancy.ID]*tenancy.Placement
	Resolver   *tenancy.StaticResolver
	Driver     *tenancy.Driver
	Client     *ent.Client
}

var (
	mu     sync.Mutex
	shared *Env
)

// New returns the Env of this test binary, setting it up on first use. It
// fails the test if PostgreSQL cannot be started or migrated.
func New(tb testing.TB) *Env {
	tb.Helper()
	mu.Lock()
	defer mu.Unlock()
	if shared != nil {
		return shared
	}
	clusters := pgtest.Shards(tb, 2)
	env, err := setup(context.Background(), clusters)
	if err != nil {
		tb.Fatalf("apptest: %v", err)
	}
	shared = env
	return env
}

func setup(ctx context.Context, clusters []*pgtest.Cluster) (*Env, error) {
	desired, err := migrate.NewDesired(appmigrate.Tables)
	if err != nil {
		return nil, err
	}
	env := &Env{Clusters: clusters, Roles: migrate.DefaultRoles(), Desired: desired, Placements: map[tenancy.ID]*tenancy.Placement{}}
	for i, c := range clusters {
		shard, err := PrepareShard(ctx, c, env.Roles, fmt.Sprintf("shard%d", i))
		if err != nil {
			return nil, fmt.Errorf("shard %d: %w", i, err)
		}
		env.Shards = append(env.Shards, shard)
	}
	for _, t := range []struct {
		id     tenancy.ID
		shard  int
		schema string
	}{
		{A, 0, SharedSchema},
		{B, 0, SharedSchema},
		{C, 0, C.SchemaName()},
		{D, 1, D.SchemaName()},
	} {
		if err := env.ApplySchema(ctx, t.shard, t.schema); err != nil {
			return nil, err
		}
		p, err := tenancy.NewPlacement(t.id, env.Shards[t.shard], t.schema, tenancy.DefaultLimits)
		if err != nil {
			return nil, err
		}
		env.Placements[t.id] = p
	}
	unscoped, err := tenancy.NewPlacement(tenancy.ID{}, env.Shards[0], SharedSchema, tenancy.DefaultLimits)
	if err != nil {
		return nil, err
	}
	ps := make([]*tenancy.Placement, 0, len(env.Placements))
	for _, p := range env.Placements {
		ps = append(ps, p)
	}
	env.Resolver = tenancy.NewStaticResolver(unscoped, ps...)
	env.Driver = tenancy.NewDriver(env.Resolver)
	env.Client = ent.NewClient(ent.Driver(env.Driver))
	return env, nil
}

// PrepareShard creates the roles and the app database on a cluster (both
// idempotently) and opens pools for the app and admin roles.
func PrepareShard(ctx context.Context, c *pgtest.Cluster, roles migrate.Roles, name string) (*tenancy.Shard, error) {
	super, err := sql.Open("pgx", c.SuperuserDSN())
	if err != nil {
		return nil, err
	}
	defer super.Close()
	if err := migrate.EnsureRoles(ctx, super, roles); err != nil {
		return nil, err
	}
	var exists bool
	if err := super.QueryRowContext(ctx, "SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)", Database).Scan(&exists); err != nil {
		return nil, err
	}
	if !exists {
		// The owner role owns the database, so it may create tenant schemas.
		if _, err := super.ExecContext(ctx, "CREATE DATABASE "+Database+" OWNER "+roles.Owner); err != nil {
			return nil, fmt.Errorf("create database: %w", err)
		}
	}
	app, err := NewPool(ctx, c.DSN(roles.App, Database), 0)
	if err != nil {
		return nil, err
	}
	admin, err := NewPool(ctx, c.DSN(roles.Admin, Database), 0)
	if err != nil {
		app.Close()
		return nil, err
	}
	return &tenancy.Shard{Name: name, Pool: app, Admin: admin}, nil
}

// NewPool opens a pool whose connections start with tenancy.DefaultLimits as
// session defaults. maxConns 0 keeps pgxpool's default.
func NewPool(ctx context.Context, dsn string, maxConns int32) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	params, err := tenancy.DefaultLimits.RuntimeParams()
	if err != nil {
		return nil, err
	}
	for k, v := range params {
		cfg.ConnConfig.RuntimeParams[k] = v
	}
	if maxConns > 0 {
		cfg.MaxConns = maxConns
		cfg.MinConns = min(cfg.MinConns, maxConns)
	}
	return pgxpool.NewWithConfig(ctx, cfg)
}

// ApplySchema brings one schema of a shard to the desired state.
func (env *Env) ApplySchema(ctx context.Context, shard int, schema string) error {
	_, err := ApplySchema(ctx, env.Clusters[shard], env.Roles, env.Desired, schema)
	return err
}

// ApplySchema brings one schema of a cluster's app database to the desired
// state, connected as the owner role.
func ApplySchema(ctx context.Context, c *pgtest.Cluster, roles migrate.Roles, desired *migrate.Desired, schema string) (*migrate.Result, error) {
	db, err := sql.Open("pgx", c.DSN(roles.Owner, Database))
	if err != nil {
		return nil, err
	}
	defer db.Close()
	res, err := desired.Apply(ctx, db, schema, roles)
	if err != nil {
		return nil, fmt.Errorf("apply schema %s: %w", schema, err)
	}
	return res, nil
}

// Ctx returns a context scoped to tenant id.
func Ctx(id tenancy.ID) context.Context { return tenancy.WithTenant(context.Background(), id) }
