package backup

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenantry/tenantry/examples/app/ent"
	"github.com/tenantry/tenantry/internal/apptest"
	"github.com/tenantry/tenantry/migrate"
	"github.com/tenantry/tenantry/tenancy"
)

// TestRoundTrip backs up a tenant, changes its data, restores the archive
// over it (replace) and compares every table row by row, and the
// sequences, with the data before the backup; the replaced copy is kept in
// a retired schema; other tenants on the same shards are served throughout
// and their rows are untouched.
func TestRoundTrip(t *testing.T) {
	f := getFixture(t)
	for _, tc := range []struct {
		name     string
		tenant   tenancy.ID
		mode     Mode
		others   []tenancy.ID // served during the operations; B shares A's schema
		parallel int
	}{
		{"schema placement C", apptest.C, ModeSchema, []tenancy.ID{apptest.A, apptest.B, apptest.D}, 3},
		{"shared placement A", apptest.A, ModeShared, []tenancy.ID{apptest.B, apptest.C, apptest.D}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			m, store := newManager(t, f, f.desired)
			p := f.env.Placements[tc.tenant]
			owner := f.owner[0]
			src := Source{Shard: "shard0", DB: owner, Schema: p.Schema, Mode: tc.mode}

			otherBefore := map[tenancy.ID]snapshotOf{}
			for _, o := range tc.others {
				otherBefore[o] = dump(t, f.ownerOf(o), f.env.Placements[o].Schema, o, true, false)
			}
			before := dump(t, owner, p.Schema, tc.tenant, tc.mode == ModeShared, false)
			if rowCount(before) < 1000 {
				t.Fatalf("fixture too small: %d rows", rowCount(before))
			}
			wl := startWorkload(t, f, tc.others...)

			// While the snapshot is held: other tenants are served, and a
			// row the tenant commits now is not in the archive.
			m.hooks.afterSnapshot = func(context.Context) {
				wl.burst(t, tc.others...)
				if _, err := f.env.Client.Customer.Create().SetName("after snapshot").SetEmail("late@example.test").Save(apptest.Ctx(tc.tenant)); err != nil {
					t.Errorf("write after the snapshot: %v", err)
				}
			}
			man, err := m.Backup(ctx, tc.tenant, src, BackupOptions{Parallel: tc.parallel})
			if err != nil {
				t.Fatal(err)
			}
			m.hooks.afterSnapshot = nil
			if man.Rows() != int64(rowCount(before)) {
				t.Errorf("archive has %d rows, the tenant had %d before the snapshot", man.Rows(), rowCount(before))
			}
			if _, err := Verify(ctx, store, man.Name); err != nil {
				t.Fatalf("verify: %v", err)
			}
			if man.SchemaVersion != f.desired.Version() || man.VersionSource != "desired" {
				t.Errorf("schema version %q (%s), want %q (desired)", man.SchemaVersion, man.VersionSource, f.desired.Version())
			}
			if tc.mode == ModeShared {
				assertOnlyTenant(t, store, man, tc.tenant, f.owner[0], apptest.B)
				if len(man.Skipped) != 1 || man.Skipped[0].Name != "settings" {
					t.Errorf("skipped %v, want the global table settings", man.Skipped)
				}
			}

			// Change the tenant: delete, update, insert, advance the sequence.
			mutate(t, owner, p.Schema, tc.tenant)
			mutated := dump(t, owner, p.Schema, tc.tenant, tc.mode == ModeShared, false)

			// While the restore holds its locks, other tenants are served.
			m.hooks.beforeCommit = func(context.Context) { wl.burst(t, tc.others...) }
			m.hooks.beforeSwap = func(context.Context) { wl.burst(t, tc.others...) }
			res, err := m.Restore(ctx, man.Name, Target{Shard: "shard0", DB: owner, Schema: p.Schema, Mode: tc.mode}, RestoreOptions{Replace: true})
			if err != nil {
				t.Fatal(err)
			}
			wl.stop(t)

			after := dump(t, owner, p.Schema, tc.tenant, tc.mode == ModeShared, false)
			equalTables(t, "restored", before.tables, after.tables)
			if tc.mode == ModeSchema {
				for name, v := range before.sequences {
					if after.sequences[name] != v {
						t.Errorf("sequence %s is %s after the restore, was %s at the backup", name, after.sequences[name], v)
					}
				}
				if len(before.sequences) == 0 {
					t.Error("no sequence in the schema: the test checks nothing")
				}
			} else {
				// The shared schema's sequences are every tenant's: never lowered.
				for name, v := range mutated.sequences {
					if after.sequences[name] != v {
						t.Errorf("shared sequence %s is %s after the restore, was %s", name, after.sequences[name], v)
					}
				}
			}
			if res.Rows != man.Rows() || res.Migrated {
				t.Errorf("result %+v", res)
			}
			if tc.mode == ModeSchema {
				assertFreshCatalog(t, f, p.Schema)
			}

			// The replaced copy is kept, unusable by the app.
			if res.Retired == "" {
				t.Fatal("no retired schema")
			}
			retired := dump(t, owner, res.Retired, tc.tenant, tc.mode == ModeShared, false)
			// (Retired copies of shared rows are plain tables without keys:
			// compared as sorted sets.)
			equalTables(t, "retired", sortedRows(mutated.tables), sortedRows(retired.tables))
			rs, err := Retired(ctx, owner)
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, r := range rs {
				found = found || (r.Schema == res.Retired && r.Tenant == tc.tenant && r.Original == p.Schema && r.Archive == man.Name)
			}
			if !found {
				t.Errorf("Retired() = %+v, want %s", rs, res.Retired)
			}
			var appCanUse bool
			if err := owner.QueryRow(ctx, "SELECT has_schema_privilege($1, $2, 'USAGE')", f.env.Roles.App, res.Retired).Scan(&appCanUse); err != nil || appCanUse {
				t.Errorf("app role can use the retired schema (%v)", err)
			}
			if left := schemasLike(t, owner, StagingPrefix); len(left) > 0 {
				t.Errorf("staging schemas left: %v", left)
			}

			// The restored tenant is served by the app as before.
			n, err := f.env.Client.Customer.Query().Count(apptest.Ctx(tc.tenant))
			if err != nil || n != len(before.tables["customers"]) {
				t.Errorf("app sees %d customers (%v), want %d", n, err, len(before.tables["customers"]))
			}
			// Other tenants: untouched, but for what the workload added.
			for _, o := range tc.others {
				got := wl.without(o, dump(t, f.ownerOf(o), f.env.Placements[o].Schema, o, true, false))
				equalTables(t, "other tenant "+o.String(), otherBefore[o].tables, got.tables)
			}
			if err := DropRetired(ctx, owner, res.Retired); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func (f *fixture) ownerOf(id tenancy.ID) *pgxpool.Pool {
	if f.env.Placements[id].Shard == f.env.Shards[1] {
		return f.owner[1]
	}
	return f.owner[0]
}

// assertOnlyTenant checks every row of every data file for the tenant's id,
// and that no id of the other tenant occurs anywhere in the archive.
func assertOnlyTenant(t *testing.T, store Store, man *Manifest, tenant tenancy.ID, pool *pgxpool.Pool, other tenancy.ID) {
	t.Helper()
	otherRows := dump(t, pool, apptest.SharedSchema, other, true, false)
	var otherIDs []string
	for _, rows := range otherRows.tables {
		for _, r := range rows {
			id, _, _ := strings.Cut(strings.TrimPrefix(r, "("), ",")
			if len(id) == 36 {
				otherIDs = append(otherIDs, id)
			}
		}
	}
	if len(otherIDs) < 100 {
		t.Fatalf("other tenant has %d ids: the check checks little", len(otherIDs))
	}
	for _, tb := range man.Tables {
		data := readData(t, store, man.Name, tb.File)
		for _, line := range bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n")) {
			if len(line) == 0 {
				continue
			}
			if got := string(bytes.Split(line, []byte("\t"))[tb.TenantColumn]); got != tenant.String() {
				t.Fatalf("table %s: a row of tenant %s in the archive of %s", tb.Name, got, tenant)
			}
		}
		if bytes.Contains(data, []byte(other.String())) {
			t.Fatalf("table %s: the other tenant's id is in the archive", tb.Name)
		}
		for _, id := range otherIDs {
			if bytes.Contains(data, []byte(id)) {
				t.Fatalf("table %s: row id %s of the other tenant is in the archive", tb.Name, id)
			}
		}
	}
}

// mutate changes a tenant's data in every way a restore must undo.
func mutate(t *testing.T, pool *pgxpool.Pool, schemaName string, tenant tenancy.ID) {
	t.Helper()
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if err := prepareTx(ctx, tx, tenant.String(), 5000); err != nil {
		t.Fatal(err)
	}
	q := func(n string) string { return qualified(schemaName, n) }
	for _, s := range []string{
		`DELETE FROM ` + q("order_tags") + ` WHERE tenant_id = ` + tenantExpr,
		`DELETE FROM ` + q("line_items") + ` WHERE tenant_id = ` + tenantExpr + ` AND quantity = 2`,
		`UPDATE ` + q("orders") + ` SET status = 'cancelled', note = 'changed' WHERE tenant_id = ` + tenantExpr,
		`DELETE FROM ` + q("events") + ` WHERE tenant_id = ` + tenantExpr + ` AND id % 2 = 0`,
		`INSERT INTO ` + q("events") + ` (tenant_id, kind, amount, at) SELECT ` + tenantExpr + `, 'new', 1, now() FROM generate_series(1, 25)`,
		`INSERT INTO ` + q("customers") + ` (id, tenant_id, name, email, created_at) VALUES (gen_random_uuid(), ` + tenantExpr + `, 'new', 'new@example.test', now())`,
	} {
		if _, err := tx.Exec(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestClone restores archives as new tenants on the other shard: an own
// schema, and a new shared schema. Every row equals the source's but for
// tenant_id, which is the new tenant's; the source is untouched, and the
// clone is served by the app through the tenancy driver.
func TestClone(t *testing.T) {
	f := getFixture(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name        string
		source      tenancy.ID
		mode        Mode
		clone       tenancy.ID
		cloneSchema string
	}{
		{"own schema C to own schema on shard 1", apptest.C, ModeSchema, tenancy.MustParseID("eeeeeeee-0000-4000-8000-00000000000e"), ""},
		{"shared A to a new shared schema on shard 1", apptest.A, ModeShared, tenancy.MustParseID("ffffffff-0000-4000-8000-00000000000f"), "shared_1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, _ := newManager(t, f, f.desired)
			p := f.env.Placements[tc.source]
			sourceBefore := dump(t, f.owner[0], p.Schema, tc.source, tc.mode == ModeShared, false)
			man, err := m.Backup(ctx, tc.source, Source{Shard: "shard0", DB: f.owner[0], Schema: p.Schema, Mode: tc.mode}, BackupOptions{})
			if err != nil {
				t.Fatal(err)
			}
			schemaName := tc.cloneSchema
			if schemaName == "" {
				schemaName = tc.clone.SchemaName()
			}
			wl := startWorkload(t, f, apptest.D)
			m.hooks.beforeCommit = func(context.Context) { wl.burst(t, apptest.D) }
			dst := Target{Shard: "shard1", DB: f.owner[1], Schema: schemaName, Mode: tc.mode}
			res, err := m.Restore(ctx, man.Name, dst, RestoreOptions{Tenant: tc.clone})
			if err != nil {
				t.Fatal(err)
			}
			wl.stop(t)
			if !res.Clone || res.Tenant != tc.clone || res.Source != tc.source || res.Retired != "" {
				t.Errorf("result %+v", res)
			}
			want := dump(t, f.owner[0], p.Schema, tc.source, tc.mode == ModeShared, true)
			got := dump(t, f.owner[1], schemaName, tc.clone, tc.mode == ModeShared, true)
			equalTables(t, "clone", want.tables, got.tables)
			if tc.mode == ModeSchema {
				for name, v := range want.sequences {
					if got.sequences[name] != v {
						t.Errorf("sequence %s of the clone is %s, the source's %s", name, got.sequences[name], v)
					}
				}
			}
			// Every row of the clone is the clone's: nothing else in its tables.
			var foreign int64
			for _, tb := range man.Tables {
				if tb.TenantColumn < 0 {
					continue
				}
				var n int64
				if err := f.owner[1].QueryRow(ctx, "SELECT count(*) FROM "+qualified(schemaName, tb.Name)+" WHERE tenant_id <> $1", tc.clone).Scan(&n); err != nil {
					t.Fatal(err)
				}
				foreign += n
			}
			if tc.mode == ModeSchema && foreign != 0 {
				t.Errorf("%d rows of other tenants in the clone's schema", foreign)
			}
			// The source is untouched.
			equalTables(t, "source", sourceBefore.tables, dump(t, f.owner[0], p.Schema, tc.source, tc.mode == ModeShared, false).tables)

			// The app serves the clone on shard 1, under RLS.
			pl, err := tenancy.NewPlacement(tc.clone, f.env.Shards[1], schemaName, tenancy.DefaultLimits)
			if err != nil {
				t.Fatal(err)
			}
			n := countCustomers(t, tenancy.NewDriver(tenancy.NewStaticResolver(nil, pl)), tc.clone)
			if n != len(want.tables["customers"]) {
				t.Errorf("app sees %d customers of the clone, want %d", n, len(want.tables["customers"]))
			}

			// Restoring it again as new is refused: the tenant is there.
			_, err = m.Restore(ctx, man.Name, dst, RestoreOptions{Tenant: tc.clone})
			if !errors.Is(err, ErrExists) {
				t.Errorf("second restore as new: %v, want ErrExists", err)
			}
		})
	}

	t.Run("into the source's own shared schema", func(t *testing.T) {
		// Row ids are kept, and A's rows still hold them: refused, nothing
		// changed (cloning next to the source needs new ids, not done).
		m, _ := newManager(t, f, f.desired)
		man, err := m.Backup(ctx, apptest.A, Source{Shard: "shard0", DB: f.owner[0], Schema: apptest.SharedSchema, Mode: ModeShared}, BackupOptions{})
		if err != nil {
			t.Fatal(err)
		}
		g := tenancy.MustParseID("99999999-0000-4000-8000-000000000009")
		_, err = m.Restore(ctx, man.Name, Target{Shard: "shard0", DB: f.owner[0], Schema: apptest.SharedSchema, Mode: ModeShared}, RestoreOptions{Tenant: g})
		if !errors.Is(err, ErrExists) {
			t.Errorf("clone next to its source: %v, want ErrExists", err)
		}
		if got := dump(t, f.owner[0], apptest.SharedSchema, g, true, false); rowCount(got) != 0 {
			t.Errorf("%d rows of the refused clone", rowCount(got))
		}
	})
}

// countCustomers counts a tenant's customers through the app's client on
// the given driver.
func countCustomers(t *testing.T, drv *tenancy.Driver, id tenancy.ID) int {
	t.Helper()
	n, err := ent.NewClient(ent.Driver(drv)).Customer.Query().Count(apptest.Ctx(id))
	if err != nil {
		t.Fatalf("count customers of %s through the app: %v", id, err)
	}
	return n
}

// assertFreshCatalog checks that a restored own schema is, in the catalog,
// what migrate's Apply creates (tables, keys with their deferrability,
// row-level security forced, policies, grants): same description and same
// fingerprint as a freshly applied schema, so that fleet migrations group
// it with its peers.
func assertFreshCatalog(t *testing.T, f *fixture, restored string) {
	t.Helper()
	ctx := context.Background()
	const fresh = "bk_fresh_compare"
	if _, err := apptest.ApplySchema(ctx, f.env.Clusters[0], f.env.Roles, f.desired, fresh); err != nil {
		t.Fatal(err)
	}
	db := openDB(f.owner[0])
	defer db.Close()
	defer migrate.DropSchema(ctx, db, fresh)
	desc, err := migrate.Describe(ctx, db, restored, fresh)
	if err != nil {
		t.Fatal(err)
	}
	got, want := strings.Join(desc[restored], "\n"), strings.Join(desc[fresh], "\n")
	if strings.ReplaceAll(got, restored, "S") != strings.ReplaceAll(want, fresh, "S") {
		t.Errorf("restored schema's catalog differs from a fresh one:\n got\n%s\n want\n%s", got, want)
	}
	fps, err := migrate.Fingerprints(ctx, db, []string{restored, fresh}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if fps[restored] != fps[fresh] {
		t.Errorf("fingerprint of the restored schema %s, of a fresh one %s", fps[restored], fps[fresh])
	}
}
