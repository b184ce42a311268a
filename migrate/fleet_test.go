package migrate_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	entschema "entgo.io/ent/dialect/sql/schema"
	"entgo.io/ent/schema/field"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	appmigrate "github.com/tenantry/tenantry/examples/app/ent/migrate"
	"github.com/tenantry/tenantry/internal/pgtest"
	"github.com/tenantry/tenantry/migrate"
)

// fleetEnv is one test's database on each of n shards, roles in place.
type fleetEnv struct {
	clusters []*pgtest.Cluster
	database string
	roles    migrate.Roles
	shards   []migrate.Shard
	supers   []*sql.DB
}

func newFleetEnv(t *testing.T, clusters []*pgtest.Cluster) *fleetEnv {
	t.Helper()
	name := nonIdent.ReplaceAllString(strings.ToLower(t.Name()), "_")
	name = fmt.Sprintf("%.40s_%d", name, databases.Add(1))
	e := &fleetEnv{clusters: clusters, database: name, roles: migrate.DefaultRoles()}
	for i, c := range clusters {
		require.NoError(t, c.CreateDatabase(t.Context(), name))
		super, err := sql.Open("pgx", c.DSN("postgres", name))
		require.NoError(t, err)
		t.Cleanup(func() { super.Close() })
		require.NoError(t, migrate.EnsureRoles(t.Context(), super, e.roles))
		e.supers = append(e.supers, super)
		s, err := migrate.OpenShard(fmt.Sprintf("shard%d", i), c.DSN(e.roles.Owner, name), 4)
		require.NoError(t, err)
		t.Cleanup(func() { s.DB.Close() })
		e.shards = append(e.shards, s)
	}
	return e
}

func (e *fleetEnv) fleet(d *migrate.Desired, targets migrate.Targets) *migrate.Fleet {
	return &migrate.Fleet{Shards: e.shards, Targets: targets, Desired: d, Roles: e.roles, Logger: testLogger}
}

// tenantSchemas returns n tenant schema names for shard i.
func tenantSchemas(shard, n int) []string {
	var out []string
	for k := range n {
		out = append(out, fmt.Sprintf("tenant_%08x%024x", shard, k+1))
	}
	return out
}

// targets lists n tenant schemas per shard, plus shared_0 on shard 0.
func (e *fleetEnv) targets(n int) migrate.TargetList {
	var l migrate.TargetList
	for i, s := range e.shards {
		for _, name := range tenantSchemas(i, n) {
			l = append(l, migrate.Target{Shard: s.Name, Schema: name})
		}
	}
	return append(l, migrate.Target{Shard: e.shards[0].Name, Schema: "shared_0"})
}

func (e *fleetEnv) exec(t *testing.T, shard int, stmts ...string) {
	t.Helper()
	for _, s := range stmts {
		_, err := e.supers[shard].ExecContext(t.Context(), s)
		require.NoError(t, err, s)
	}
}

func (e *fleetEnv) strings(t *testing.T, shard int, query string, args ...any) []string {
	t.Helper()
	rows, err := e.supers[shard].QueryContext(t.Context(), query, args...)
	require.NoError(t, err)
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		require.NoError(t, rows.Scan(&s))
		out = append(out, s)
	}
	require.NoError(t, rows.Err())
	return out
}

// dump returns pg_dump --schema-only of one schema with its name replaced
// by SCHEMA.
func (e *fleetEnv) dump(t *testing.T, shard int, schema string) string {
	t.Helper()
	c := e.clusters[shard]
	bin := "pg_dump"
	if c.BinDir() != "" {
		bin = filepath.Join(c.BinDir(), "pg_dump")
	}
	out, err := exec.CommandContext(t.Context(), bin, "--schema-only", "--schema="+schema,
		"--dbname="+c.DSN("postgres", e.database)).Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		t.Fatalf("pg_dump: %v\n%s", err, ee.Stderr)
	}
	require.NoError(t, err)
	var lines []string
	for line := range strings.Lines(string(out)) {
		if strings.HasPrefix(line, `\restrict `) || strings.HasPrefix(line, `\unrestrict `) {
			continue
		}
		lines = append(lines, line)
	}
	return strings.ReplaceAll(strings.Join(lines, ""), schema, "SCHEMA")
}

// v2Tables is the example app's graph with a change: orders gets a column
// "priority" (appended, so a fresh table has it where ALTER TABLE puts it)
// and an index on (tenant_id, priority), and a new tenant table "notes"
// references orders.
func v2Tables() []*entschema.Table {
	var out []*entschema.Table
	var orders *entschema.Table
	for _, t := range appmigrate.Tables {
		c := *t
		c.Columns = slices.Clone(t.Columns)
		c.Indexes = slices.Clone(t.Indexes)
		c.ForeignKeys = slices.Clone(t.ForeignKeys)
		if t.Name == appmigrate.OrdersTable.Name {
			orders = &c
			prio := &entschema.Column{Name: "priority", Type: field.TypeInt, Default: 0}
			c.Columns = append(c.Columns, prio)
			c.Indexes = append(c.Indexes, &entschema.Index{Name: "order_tenant_id_priority", Columns: []*entschema.Column{c.Columns[1], prio}})
		}
		out = append(out, &c)
	}
	tenantID := &entschema.Column{Name: "tenant_id", Type: field.TypeUUID, Default: appmigrate.OrdersColumns[1].Default}
	cols := []*entschema.Column{
		{Name: "id", Type: field.TypeUUID}, tenantID,
		{Name: "body", Type: field.TypeString, Size: 2000},
		{Name: "order_id", Type: field.TypeUUID},
	}
	notes := &entschema.Table{
		Name: "notes", Columns: cols, PrimaryKey: cols[:1],
		ForeignKeys: []*entschema.ForeignKey{{Symbol: "notes_orders_notes", Columns: cols[3:4], RefTable: orders, RefColumns: orders.Columns[:1], OnDelete: entschema.Cascade}},
		Indexes:     []*entschema.Index{{Name: "note_tenant_id", Columns: cols[1:2]}},
	}
	return append(out, notes)
}

func run(t *testing.T, f *migrate.Fleet, opts migrate.RunOptions) *migrate.Report {
	t.Helper()
	rep, err := f.Run(t.Context(), opts)
	require.NoError(t, err)
	return rep
}

// TestFleetOracle is the correctness oracle: after a run, every schema's
// pg_dump equals that of a freshly provisioned schema, for an ADD COLUMN +
// new index + new table change, and for drifted schemas.
func TestFleetOracle(t *testing.T) {
	e := newFleetEnv(t, pgtest.Shards(t, 2))
	v1, v2 := newDesired(t, appmigrate.Tables), newDesired(t, v2Tables())
	require.NotEqual(t, v1.Version(), v2.Version())
	targets := e.targets(6)

	// Provision: the schemas do not exist; one plan creates them all.
	rep := run(t, e.fleet(v1, targets), migrate.RunOptions{})
	require.NoError(t, rep.Err())
	assert.Equal(t, len(targets), rep.Total.Applied)
	assert.Equal(t, 1, rep.Groups, "one plan for all new schemas")
	fps, err := migrate.Fingerprints(t.Context(), e.shards[0].DB, nil, migrate.DefaultPatterns)
	require.NoError(t, err)
	require.Len(t, fps, 7)

	// Drift two schemas in ways the desired state repairs.
	drifted0, drifted1 := tenantSchemas(0, 6)[2], tenantSchemas(1, 6)[4]
	e.exec(t, 0,
		`DROP INDEX `+drifted0+`.order_tenant_id_created_at`,
		`CREATE POLICY leak ON `+drifted0+`.tags USING (true)`,
		`ALTER TABLE `+drifted0+`.order_tags DISABLE ROW LEVEL SECURITY`,
	)
	e.exec(t, 1,
		`REVOKE DELETE ON `+drifted1+`.customers FROM tenantry_app`,
		`ALTER TABLE `+drifted1+`.orders ALTER COLUMN status SET DEFAULT 'placed'`,
		`CREATE INDEX extra ON `+drifted1+`.tags (name)`,
	)
	// Discovery finds the same schemas the list named.
	found, err := migrate.Discover{}.Targets(t.Context(), e.shards[0])
	require.NoError(t, err)
	assert.Len(t, found, 7)

	rep = run(t, e.fleet(v2, migrate.Discover{}), migrate.RunOptions{Concurrency: 3})
	require.NoError(t, rep.Err())
	assert.Equal(t, len(targets), rep.Total.Applied)
	assert.Equal(t, 3, rep.Groups, "one plan for the fleet, one per drifted schema")
	assert.Zero(t, rep.Total.Failed+rep.Total.Drifted)

	// A fresh schema at v2, provisioned by Apply: every dump equals it.
	_, err = v2.Apply(t.Context(), e.shards[0].DB, "fresh", e.roles)
	require.NoError(t, err)
	want := e.dump(t, 0, "fresh")
	assert.Contains(t, want, "priority bigint DEFAULT 0 NOT NULL")
	assert.Contains(t, want, "CREATE TABLE SCHEMA.notes")
	assert.Contains(t, want, "CREATE POLICY tenant_isolation ON SCHEMA.notes")
	for _, tg := range targets {
		shard := slices.IndexFunc(e.shards, func(s migrate.Shard) bool { return s.Name == tg.Shard })
		assert.Equal(t, want, e.dump(t, shard, tg.Schema), "pg_dump of %s", tg)
	}

	// Nothing applied twice: one applied v2 row per schema, written by the
	// transaction that added the column.
	for i, s := range e.shards {
		entries, err := migrate.Ledger(t.Context(), s.DB)
		require.NoError(t, err)
		applied := make(map[string]int)
		for _, le := range entries {
			if le.Status == "applied" && le.Version == v2.Version() {
				applied[le.Schema]++
				xmin := e.strings(t, i, `SELECT xmin::text FROM pg_attribute WHERE attrelid = $1::regclass AND attname = 'priority'`, le.Schema+".orders")
				assert.Equal(t, []string{le.TxID}, xmin, "ledger row and DDL of %s in one transaction", le.Schema)
			}
		}
		for schema, n := range applied {
			assert.Equal(t, 1, n, schema)
		}
		assert.Len(t, applied, map[int]int{0: 7, 1: 6}[i])
	}

	// A rerun is a no-op: every schema is at a known fingerprint.
	rep = run(t, e.fleet(v2, migrate.Discover{}), migrate.RunOptions{})
	require.NoError(t, rep.Err())
	assert.Equal(t, len(targets), rep.Total.UpToDate)
	assert.Zero(t, rep.Groups)

	st, err := e.fleet(v2, migrate.Discover{}).Status(t.Context(), migrate.RunOptions{})
	require.NoError(t, err)
	require.NoError(t, st.Err())
	for _, s := range st.Shards {
		assert.Equal(t, s.Targets, s.Current, s.Shard)
		assert.Zero(t, s.Drifted)
	}
}

var _ = context.Background

// testLogger shows the runner's logs with -v only.
var testLogger = slog.New(verboseHandler{slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})})

type verboseHandler struct{ slog.Handler }

func (h verboseHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return testing.Verbose() && h.Handler.Enabled(ctx, l)
}

func (h verboseHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return verboseHandler{h.Handler.WithAttrs(as)}
}
