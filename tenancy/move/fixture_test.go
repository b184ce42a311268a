package move_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tenantry/tenantry/examples/app/ent"
	appmigrate "github.com/tenantry/tenantry/examples/app/ent/migrate"
	_ "github.com/tenantry/tenantry/examples/app/ent/runtime"
	"github.com/tenantry/tenantry/internal/apptest"
	"github.com/tenantry/tenantry/internal/pgtest"
	"github.com/tenantry/tenantry/migrate"
	"github.com/tenantry/tenantry/registry"
	"github.com/tenantry/tenantry/registry/provision"
	"github.com/tenantry/tenantry/router"
	"github.com/tenantry/tenantry/tenancy"
	"github.com/tenantry/tenantry/tenancy/move"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(childMain())
	}
	os.Exit(pgtest.Main(m))
}

// shardSpec is a shard of a test fleet: a database of a cluster.
type shardSpec struct {
	name    string
	cluster *pgtest.Cluster
	db      string
}

// fleet is a registry in a fresh database with the given shards (roles
// and databases prepared), and a router on it.
type fleet struct {
	registryDSN string
	store       *registry.Store
	desired     *migrate.Desired
	apply       registry.ApplyFunc
	shards      map[string]shardSpec
}

var (
	prepared    sync.Map // cluster DSN + db -> error
	registrySeq atomic.Int64
	desiredOnce = sync.OnceValues(func() (*migrate.Desired, error) { return migrate.NewDesired(appmigrate.Tables) })
)

func prepare(t testing.TB, c *pgtest.Cluster, db string) {
	t.Helper()
	key := c.SuperuserDSN() + "|" + db
	if v, ok := prepared.Load(key); ok {
		if v != nil {
			require.NoError(t, v.(error))
		}
		return
	}
	ctx := context.Background()
	sh, err := apptest.PrepareShard(ctx, c, migrate.DefaultRoles(), "prep")
	if err == nil {
		sh.Pool.Close()
		sh.Admin.Close()
		// PostgreSQL 15's logical replication launcher starts apply workers
		// at most once per wal_retrieve_retry_interval (5 s) per cluster:
		// moves in quick succession would wait for it.
		var super *sql.DB
		if super, err = sql.Open("pgx", c.SuperuserDSN()); err == nil {
			_, err = super.ExecContext(ctx, "ALTER SYSTEM SET wal_retrieve_retry_interval = '100ms'")
			if err == nil {
				_, err = super.ExecContext(ctx, "SELECT pg_reload_conf()")
			}
			super.Close()
		}
		if err == nil && db != apptest.Database {
			var super *sql.DB
			super, err = sql.Open("pgx", c.SuperuserDSN())
			if err == nil {
				_, err = super.ExecContext(ctx, "CREATE DATABASE "+db+" OWNER "+migrate.DefaultRoles().Owner)
				super.Close()
			}
		}
	}
	if err != nil {
		prepared.Store(key, err)
	} else {
		prepared.Store(key, nil)
	}
	require.NoError(t, err)
}

// twoShards are the binary's shared clusters as shards s0 and s1.
func twoShards(t testing.TB) []shardSpec {
	cs := pgtest.Shards(t, 2)
	return []shardSpec{{"s0", cs[0], apptest.Database}, {"s1", cs[1], apptest.Database}}
}

func newFleet(t testing.TB, specs ...shardSpec) *fleet {
	t.Helper()
	ctx := context.Background()
	regCluster := pgtest.Shards(t, 1)[0]
	name := fmt.Sprintf("move_registry_%d", registrySeq.Add(1))
	require.NoError(t, regCluster.CreateDatabase(ctx, name))
	f := &fleet{registryDSN: regCluster.DSN("postgres", name), shards: map[string]shardSpec{}}
	var err error
	f.store, err = registry.Open(ctx, f.registryDSN)
	require.NoError(t, err)
	t.Cleanup(func() { f.store.Close() })
	require.NoError(t, f.store.Init(ctx))
	for _, s := range specs {
		prepare(t, s.cluster, s.db)
		require.NoError(t, f.store.AddShard(ctx, registry.Shard{Name: s.name, DSN: s.cluster.DSN("postgres", s.db), Accepting: true}))
		f.shards[s.name] = s
	}
	f.desired, err = desiredOnce()
	require.NoError(t, err)
	f.apply = provision.ApplySchema(f.desired, migrate.DefaultRoles())
	return f
}

func (f *fleet) tenant(t testing.TB, shard string) registry.Tenant {
	t.Helper()
	tn, err := f.store.CreateTenant(context.Background(), registry.NewTenant{Slug: "m-" + uuid.NewString()[:8], Shard: shard}, f.apply)
	require.NoError(t, err)
	return tn
}

func (f *fleet) router(t testing.TB) *router.Router {
	t.Helper()
	r, err := router.New(context.Background(), router.Config{RegistryDSN: f.registryDSN, TTL: time.Hour})
	require.NoError(t, err)
	t.Cleanup(func() { r.Close() })
	return r
}

func (f *fleet) mover(t testing.TB, cfg move.Config) *move.Mover {
	t.Helper()
	cfg.Store, cfg.Apply = f.store, f.apply
	if cfg.HeartbeatInterval == 0 {
		cfg.HeartbeatInterval = 50 * time.Millisecond
	}
	if cfg.StaleAfter == 0 {
		// Not 10 heartbeats (500 ms): a live mover on a loaded machine
		// can miss that many, and an aborter would take it for dead and
		// roll back beside it. The crash tests, whose movers are dead,
		// set a short StaleAfter themselves.
		cfg.StaleAfter = 10 * time.Second
	}
	m, err := move.New(cfg)
	require.NoError(t, err)
	return m
}

// super connects to a shard's database as the superuser.
func (f *fleet) super(t testing.TB, shard string) *pgx.Conn {
	t.Helper()
	s := f.shards[shard]
	c, err := pgx.Connect(context.Background(), s.cluster.DSN("postgres", s.db))
	require.NoError(t, err)
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func clientOf(r *router.Router) *ent.Client { return ent.NewClient(ent.Driver(tenancy.NewDriver(r))) }

func ctxOf(id tenancy.ID) context.Context { return tenancy.WithTenant(context.Background(), id) }

// seed creates n customers with an order each through the scoped client.
func seed(t testing.TB, c *ent.Client, id tenancy.ID, n int) {
	t.Helper()
	ctx := ctxOf(id)
	for i := 0; i < n; i++ {
		cu := c.Customer.Create().SetName(fmt.Sprintf("seed-%d", i)).SetEmail(fmt.Sprintf("s%d@example.com", i)).SaveX(ctx)
		c.Order.Create().SetNumber(fmt.Sprintf("o-%d", i)).SetCustomerID(cu.ID).SetTotalCents(int64(i)).SaveX(ctx)
	}
}

// customers reads a tenant's customers (id -> name) straight from a schema.
func customers(t testing.TB, c *pgx.Conn, schema string) map[uuid.UUID]string {
	t.Helper()
	rows, err := c.Query(context.Background(), "SELECT id, name FROM "+pgx.Identifier{schema, "customers"}.Sanitize())
	require.NoError(t, err)
	out := map[uuid.UUID]string{}
	for rows.Next() {
		var id uuid.UUID
		var name string
		require.NoError(t, rows.Scan(&id, &name))
		out[id] = name
	}
	require.NoError(t, rows.Err())
	return out
}

// ddlShape lists the indexes and constraints of a schema's tables (but a
// move's marker table), with the schema's name left out of their
// definitions, so that two schemas of one shape compare equal.
func ddlShape(t testing.TB, c *pgx.Conn, schema string) []string {
	t.Helper()
	rows, err := c.Query(context.Background(), `
SELECT 'index ' || replace(indexdef, quote_ident($1) || '.', '') FROM pg_indexes
WHERE schemaname = $1 AND tablename <> 'tenantry_move_marker'
UNION ALL
SELECT 'constraint ' || c.relname || ' ' || k.conname || ' ' || replace(pg_get_constraintdef(k.oid), quote_ident($1) || '.', '')
FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relname <> 'tenantry_move_marker'
ORDER BY 1`, schema)
	require.NoError(t, err)
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.NotEmpty(t, out, "schema %s has no indexes", schema)
	return out
}

// leftovers lists the move's replication objects and the given schema on
// a shard.
func (f *fleet) leftovers(t testing.TB, shard string, tenant tenancy.ID) []string {
	t.Helper()
	c := f.super(t, shard)
	like := "tenantry_move_" + tenant.SchemaName()[len("tenant_"):]
	var out []string
	rows, err := c.Query(context.Background(), `SELECT 'publication ' || pubname FROM pg_publication WHERE pubname = $1
		UNION ALL SELECT 'slot ' || slot_name FROM pg_replication_slots WHERE slot_name = $1
		UNION ALL SELECT 'subscription ' || subname FROM pg_subscription WHERE subname = $1`, like)
	require.NoError(t, err)
	for rows.Next() {
		var s string
		require.NoError(t, rows.Scan(&s))
		out = append(out, s)
	}
	require.NoError(t, rows.Err())
	return out
}

func schemaExists(t testing.TB, c *pgx.Conn, schema string) bool {
	t.Helper()
	var ok bool
	require.NoError(t, c.QueryRow(context.Background(), "SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = $1)", schema).Scan(&ok))
	return ok
}

// eventually polls cond until it holds or 30 s pass (generous: only a
// failing test waits that long, and a loaded machine may need seconds).
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
