package backup

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tenantry/tenantry/internal/apptest"
	"github.com/tenantry/tenantry/migrate"
	"github.com/tenantry/tenantry/tenancy"
)

// copyArchive copies an archive under a new name.
func copyArchive(t *testing.T, store *Dir, from, to string) *Manifest {
	t.Helper()
	ctx := context.Background()
	objs, err := store.List(ctx, from)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if strings.HasSuffix(o, "/"+ManifestFile) {
			continue
		}
		r, err := store.Open(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		w, err := store.Create(ctx, to+strings.TrimPrefix(o, from))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(w, r); err != nil {
			t.Fatal(err)
		}
		r.Close()
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	man, err := ReadManifest(ctx, store, from)
	if err != nil {
		t.Fatal(err)
	}
	man.Name = to
	if err := writeManifest(ctx, store, man); err != nil {
		t.Fatal(err)
	}
	return man
}

func saveManifest(t *testing.T, store *Dir, man *Manifest) {
	t.Helper()
	if err := writeManifest(context.Background(), store, man); err != nil {
		t.Fatal(err)
	}
}

// rewriteTable replaces a table's data (uncompressed COPY text) and makes
// the manifest agree with it, as a consistent but altered archive would.
func rewriteTable(t *testing.T, store *Dir, man *Manifest, table string, edit func([]byte) []byte) {
	t.Helper()
	for i, tb := range man.Tables {
		if tb.Name != table {
			continue
		}
		data := edit(readData(t, store, man.Name, tb.File))
		z := gzipBytes(data)
		if err := os.WriteFile(filepath.Join(store.Root, man.Name, tb.File), z, 0o640); err != nil {
			t.Fatal(err)
		}
		s := newStreamSum(tb.TenantColumn, "")
		s.Write(data)
		man.Tables[i].Rows, man.Tables[i].Bytes, man.Tables[i].SHA256, man.Tables[i].RowHash = s.rows, s.bytes, s.shaHex(), s.rowHashHex()
		man.Tables[i].StoredBytes = int64(len(z))
		saveManifest(t, store, man)
		return
	}
	t.Fatalf("no table %s in the archive", table)
}

func dataPath(store *Dir, man *Manifest, table string) string {
	tb, _ := man.Table(table)
	return filepath.Join(store.Root, man.Name, tb.File)
}

// TestCorruptArchiveRefused alters archives in every way a restore must
// notice, for both placement modes: each is refused with a typed error,
// and the tenant, the shard's schemas and the other tenants are as before.
func TestCorruptArchiveRefused(t *testing.T) {
	f := getFixture(t)
	ctx := context.Background()
	cases := []struct {
		name  string
		alter func(t *testing.T, store *Dir, man *Manifest)
		want  error
		what  string // ChecksumError.What or VerifyError.What
	}{
		{"flipped byte in a data file", func(t *testing.T, store *Dir, man *Manifest) {
			p := dataPath(store, man, "events")
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			b[len(b)/2] ^= 0x40
			os.WriteFile(p, b, 0o640)
		}, ErrCorrupt, ""},
		{"wrong row count in the manifest", func(t *testing.T, store *Dir, man *Manifest) {
			for i := range man.Tables {
				if man.Tables[i].Name == "line_items" {
					man.Tables[i].Rows--
				}
			}
			saveManifest(t, store, man)
		}, ErrCorrupt, "rows"},
		{"wrong checksum in the manifest", func(t *testing.T, store *Dir, man *Manifest) {
			man.Tables[len(man.Tables)-1].SHA256 = strings.Repeat("0", 64)
			saveManifest(t, store, man)
		}, ErrCorrupt, "sha256"},
		{"missing data file", func(t *testing.T, store *Dir, man *Manifest) {
			os.Remove(dataPath(store, man, "tags"))
		}, ErrCorrupt, ""},
		{"truncated data file", func(t *testing.T, store *Dir, man *Manifest) {
			p := dataPath(store, man, "orders")
			b, _ := os.ReadFile(p)
			os.WriteFile(p, b[:len(b)/2], 0o640)
		}, ErrCorrupt, ""},
		{"a row of another tenant, with a consistent manifest", func(t *testing.T, store *Dir, man *Manifest) {
			rewriteTable(t, store, man, "tags", func(b []byte) []byte {
				line, _, _ := bytes.Cut(b, []byte("\n"))
				fields := bytes.Split(line, []byte("\t"))
				fields[0] = []byte("0b0b0b0b-0000-4000-8000-000000000000")
				fields[1] = []byte(apptest.B.String())
				return append(b, append(bytes.Join(fields, []byte("\t")), '\n')...)
			})
		}, ErrCorrupt, "tenant"},
		{"content that loads differently, with a consistent manifest", func(t *testing.T, store *Dir, man *Manifest) {
			// amount 2.5 written as 2.50: the server reads it back as 2.5.
			tb, _ := man.Table("events")
			col := -1
			for i, c := range tb.Columns {
				if c.Name == "amount" {
					col = i
				}
			}
			rewriteTable(t, store, man, "events", func(b []byte) []byte {
				lines := bytes.Split(b, []byte("\n"))
				for i, l := range lines {
					fs := bytes.Split(l, []byte("\t"))
					if len(fs) > col && string(fs[col]) == "2.5" {
						fs[col] = []byte("2.50")
						lines[i] = bytes.Join(fs, []byte("\t"))
						return bytes.Join(lines, []byte("\n"))
					}
				}
				t.Fatal("no event with amount 2.5")
				return nil
			})
		}, ErrVerify, "row hash"},
	}
	for _, placement := range []struct {
		tenant tenancy.ID
		mode   Mode
	}{{apptest.C, ModeSchema}, {apptest.A, ModeShared}} {
		m, store := newManager(t, f, f.desired)
		p := f.env.Placements[placement.tenant]
		owner := f.owner[0]
		base, err := m.Backup(ctx, placement.tenant, Source{Shard: "shard0", DB: owner, Schema: p.Schema, Mode: placement.mode}, BackupOptions{Name: "base"})
		if err != nil {
			t.Fatal(err)
		}
		for i, tc := range cases {
			t.Run(fmt.Sprintf("%s/%s", placement.mode, tc.name), func(t *testing.T) {
				man := copyArchive(t, store, base.Name, fmt.Sprintf("case%d", i))
				tc.alter(t, store, man)
				before := dump(t, owner, p.Schema, placement.tenant, false, false)
				other := dump(t, owner, apptest.SharedSchema, apptest.B, true, false)
				schemas := schemasLike(t, owner, "")
				_, err := m.Restore(ctx, man.Name, Target{Shard: "shard0", DB: owner, Schema: p.Schema, Mode: placement.mode}, RestoreOptions{Replace: true})
				if !errors.Is(err, tc.want) {
					t.Fatalf("restore: %v, want %v", err, tc.want)
				}
				var ce *ChecksumError
				var ve *VerifyError
				switch {
				case tc.what == "":
				case errors.As(err, &ce) && ce.What == tc.what, errors.As(err, &ve) && ve.What == tc.what:
				default:
					t.Errorf("error %v: want one about %q", err, tc.what)
				}
				equalTables(t, "tenant after a refused restore", before.tables, dump(t, owner, p.Schema, placement.tenant, false, false).tables)
				equalTables(t, "other tenant after a refused restore", other.tables, dump(t, owner, apptest.SharedSchema, apptest.B, true, false).tables)
				if got := schemasLike(t, owner, ""); strings.Join(got, ",") != strings.Join(schemas, ",") {
					t.Errorf("schemas changed by a refused restore:\n before %v\n after  %v", schemas, got)
				}
				if _, err := Verify(ctx, store, man.Name); tc.want == ErrCorrupt && !errors.Is(err, ErrCorrupt) {
					t.Errorf("Verify without a database: %v, want ErrCorrupt", err)
				}
			})
		}
	}
}

// TestSchemaVersions restores archives ahead of the desired state (refused)
// and behind it (migrated).
func TestSchemaVersions(t *testing.T) {
	f := getFixture(t)
	ctx := context.Background()
	ext, extStore := newManager(t, f, f.desired)
	old, oldStore := newManager(t, f, f.appOnly)
	c := f.env.Placements[apptest.C]
	d := f.env.Placements[apptest.D]

	cArchive, err := ext.Backup(ctx, apptest.C, Source{Shard: "shard0", DB: f.owner[0], Schema: c.Schema, Mode: ModeSchema}, BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	aArchive, err := ext.Backup(ctx, apptest.A, Source{Shard: "shard0", DB: f.owner[0], Schema: apptest.SharedSchema, Mode: ModeShared}, BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// D's schema is at the example app's state: its archive is behind the
	// extended desired state.
	dArchive, err := old.Backup(ctx, apptest.D, Source{Shard: "shard1", DB: f.owner[1], Schema: d.Schema, Mode: ModeSchema}, BackupOptions{Name: "d"})
	if err != nil {
		t.Fatal(err)
	}
	if dArchive.SchemaVersion != f.appOnly.Version() {
		t.Fatalf("D's archive is at %q, want %q", dArchive.SchemaVersion, f.appOnly.Version())
	}
	// The extended manager reads D's archive from its own store.
	copyInto(t, oldStore, extStore, "d")

	t.Run("ahead of the desired state", func(t *testing.T) {
		copyInto(t, extStore, oldStore, cArchive.Name)
		before := dump(t, f.owner[0], c.Schema, apptest.C, false, false)
		_, err := old.Restore(ctx, cArchive.Name, Target{Shard: "shard0", DB: f.owner[0], Schema: c.Schema, Mode: ModeSchema}, RestoreOptions{Replace: true})
		var ae *SchemaAheadError
		if !errors.As(err, &ae) || !errors.Is(err, ErrSchemaAhead) {
			t.Fatalf("restore: %v, want a SchemaAheadError", err)
		}
		if !strings.Contains(strings.Join(ae.Missing, ","), "table events") || ae.DesiredVersion != f.appOnly.Version() {
			t.Errorf("error %+v", ae)
		}
		equalTables(t, "refused", before.tables, dump(t, f.owner[0], c.Schema, apptest.C, false, false).tables)
	})

	t.Run("ahead of an existing shared schema", func(t *testing.T) {
		if _, err := apptest.ApplySchema(ctx, f.env.Clusters[1], f.env.Roles, f.appOnly, "shared_old"); err != nil {
			t.Fatal(err)
		}
		clone := tenancy.MustParseID("12121212-0000-4000-8000-000000000012")
		_, err := ext.Restore(ctx, aArchive.Name, Target{Shard: "shard1", DB: f.owner[1], Schema: "shared_old", Mode: ModeShared}, RestoreOptions{Tenant: clone})
		var ae *SchemaAheadError
		if !errors.As(err, &ae) || ae.Target != "shared_old" {
			t.Fatalf("restore: %v, want a SchemaAheadError naming shared_old", err)
		}
		if n := rowCount(dump(t, f.owner[1], "shared_old", clone, true, false)); n != 0 {
			t.Errorf("%d rows of the refused clone", n)
		}
	})

	t.Run("ledger recorded the archive's version later", func(t *testing.T) {
		db, err := sql.Open("pgx", f.env.Clusters[1].DSN(f.env.Roles.Owner, apptest.Database))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if err := migrate.EnsureLedger(ctx, db, f.env.Roles); err != nil {
			t.Fatal(err)
		}
		// The extended (desired) version first, D's archive's an hour later:
		// the archive was taken by a newer program.
		if _, err := db.ExecContext(ctx, `INSERT INTO tenantry.versions (version, mode, recorded_at)
			VALUES ($1, 'declarative', now() - interval '2 hours'), ($2, 'declarative', now() - interval '1 hour')`,
			f.desired.Version(), f.appOnly.Version()); err != nil {
			t.Fatal(err)
		}
		defer db.ExecContext(ctx, `DELETE FROM tenantry.versions WHERE version IN ($1, $2)`, f.desired.Version(), f.appOnly.Version())
		_, err = ext.Restore(ctx, "d", Target{Shard: "shard1", DB: f.owner[1], Schema: d.Schema, Mode: ModeSchema}, RestoreOptions{Replace: true})
		if !errors.Is(err, ErrSchemaAhead) {
			t.Fatalf("restore: %v, want ErrSchemaAhead", err)
		}
	})

	t.Run("behind the desired state: migrated", func(t *testing.T) {
		before := dump(t, f.owner[1], d.Schema, apptest.D, false, false)
		res, err := ext.Restore(ctx, "d", Target{Shard: "shard1", DB: f.owner[1], Schema: d.Schema, Mode: ModeSchema}, RestoreOptions{Replace: true})
		if err != nil {
			t.Fatal(err)
		}
		if !res.Migrated || res.FromVersion != f.appOnly.Version() || res.ToVersion != f.desired.Version() {
			t.Errorf("result %+v", res)
		}
		after := dump(t, f.owner[1], d.Schema, apptest.D, false, false)
		for _, tb := range []string{"events", "settings"} {
			if _, ok := after.tables[tb]; !ok || len(after.tables[tb]) != 0 {
				t.Errorf("table %s after migrating: %v", tb, after.tables[tb])
			}
			delete(after.tables, tb)
		}
		equalTables(t, "migrated", before.tables, after.tables)
		if n := countCustomers(t, f.env.Driver, apptest.D); n != len(before.tables["customers"]) {
			t.Errorf("app sees %d customers of D, want %d", n, len(before.tables["customers"]))
		}
	})
}

// copyInto copies an archive between stores.
func copyInto(t *testing.T, from, to *Dir, name string) {
	t.Helper()
	ctx := context.Background()
	objs, err := from.List(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		r, err := from.Open(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		w, err := to.Create(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(w, r)
		r.Close()
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestBusy: a second restore of the same tenant on the same shard is
// refused while one runs, and a swap that cannot lock the tenant's tables
// (a long transaction of the tenant) gives up with ErrBusy, changing
// nothing, or goes through once the transaction ends.
func TestBusy(t *testing.T) {
	f := getFixture(t)
	ctx := context.Background()
	m, _ := newManager(t, f, f.desired)
	a := f.env.Placements[apptest.A]
	c := f.env.Placements[apptest.C]
	aArchive, err := m.Backup(ctx, apptest.A, Source{Shard: "shard0", DB: f.owner[0], Schema: a.Schema, Mode: ModeShared}, BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cArchive, err := m.Backup(ctx, apptest.C, Source{Shard: "shard0", DB: f.owner[0], Schema: c.Schema, Mode: ModeSchema}, BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("concurrent restores of one tenant", func(t *testing.T) {
		var inner error
		m.hooks.beforeCommit = func(context.Context) {
			_, inner = m.Restore(ctx, aArchive.Name, Target{Shard: "shard0", DB: f.owner[0], Schema: a.Schema, Mode: ModeShared}, RestoreOptions{Replace: true})
		}
		defer func() { m.hooks.beforeCommit = nil }()
		res, err := m.Restore(ctx, aArchive.Name, Target{Shard: "shard0", DB: f.owner[0], Schema: a.Schema, Mode: ModeShared}, RestoreOptions{Replace: true})
		if err != nil {
			t.Fatal(err)
		}
		if !errors.Is(inner, ErrBusy) {
			t.Errorf("second restore: %v, want ErrBusy", inner)
		}
		DropRetired(ctx, f.owner[0], res.Retired)
	})

	t.Run("swap behind a long transaction of the tenant", func(t *testing.T) {
		short, err := New(Config{Store: m.store, Desired: f.desired, Roles: f.env.Roles, Logger: testLogger(t), LockTimeout: 150 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		long, err := f.owner[0].Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := long.Exec(ctx, "SELECT count(*) FROM "+qualified(c.Schema, "customers")); err != nil {
			t.Fatal(err)
		}
		before := dump(t, f.owner[0], c.Schema, apptest.C, false, false)
		schemas := schemasLike(t, f.owner[0], "")
		_, err = short.Restore(ctx, cArchive.Name, Target{Shard: "shard0", DB: f.owner[0], Schema: c.Schema, Mode: ModeSchema}, RestoreOptions{Replace: true})
		if !errors.Is(err, ErrBusy) {
			t.Fatalf("restore behind a long transaction: %v, want ErrBusy", err)
		}
		equalTables(t, "after giving up", before.tables, dump(t, f.owner[0], c.Schema, apptest.C, false, false).tables)
		if got := schemasLike(t, f.owner[0], ""); strings.Join(got, ",") != strings.Join(schemas, ",") {
			t.Errorf("schemas changed:\n before %v\n after  %v", schemas, got)
		}
		// Once the transaction ends, the swap goes through.
		short.hooks.beforeSwap = func(context.Context) {
			go func() { time.Sleep(100 * time.Millisecond); long.Rollback(ctx) }()
		}
		res, err := short.Restore(ctx, cArchive.Name, Target{Shard: "shard0", DB: f.owner[0], Schema: c.Schema, Mode: ModeSchema}, RestoreOptions{Replace: true})
		if err != nil {
			t.Fatal(err)
		}
		DropRetired(ctx, f.owner[0], res.Retired)
	})
}
