package pitr_test

import (
	"compress/gzip"
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	appmigrate "github.com/tenantry/tenantry/examples/app/ent/migrate"
	"github.com/tenantry/tenantry/internal/apptest"
	"github.com/tenantry/tenantry/internal/pgtest"
	"github.com/tenantry/tenantry/migrate"
	"github.com/tenantry/tenantry/tenancy"
	"github.com/tenantry/tenantry/tenancy/backup"
	"github.com/tenantry/tenantry/tenancy/pitr"
)

// benchSizeEnv sizes BenchmarkLargeTenant's tenant, in MB of COPY text;
// unset, the benchmark is skipped (it loads and archives gigabytes).
const benchSizeEnv = "TENANTRY_BENCH_TENANT_MB"

// BenchmarkLargeTenant measures, on one tenant of $TENANTRY_BENCH_TENANT_MB
// MB (COPY text) in its own schema on an archiving shard:
//
//   - backup MB/s at Parallel 1, 2 and 4, each round next to the raw
//     baseline of the same run: COPY of the same queries, in one snapshot,
//     into io.Discard through pgx, on 1 and 2 connections;
//   - restore (replace) MB/s, next to a raw baseline: COPY FROM of the
//     same text into a fresh schema at the desired state, in one
//     transaction;
//   - a base backup of the shard, and a point-in-time restore end to end.
//
// MB/s are of COPY text (uncompressed); the tenant is defaultBenchMB
// unless the variable says otherwise (the figure is for ≥ 1 GB).
// Run with -benchtime=1x:
//
//	TENANTRY_BENCH_TENANT_MB=1024 go test -run '^$' -bench LargeTenant -benchtime=1x -timeout 2h ./tenancy/pitr
//
// TENANTRY_BENCH_ROUNDS sets the backup rounds (default 2);
// TENANTRY_BENCH_BACKUP_ONLY=1 stops after them.
const defaultBenchMB = 128

func BenchmarkLargeTenant(b *testing.B) {
	mb := defaultBenchMB
	if v := os.Getenv(benchSizeEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			b.Fatalf("%s=%q: want a positive number of MB", benchSizeEnv, v)
		}
		mb = n
	}
	ctx := context.Background()
	c, err := pgtest.Start(ctx, pgtest.Options{Name: "pitr-bench", Archive: true,
		Settings: map[string]string{"shared_buffers": "512MB", "max_wal_size": "4GB", "checkpoint_timeout": "30min"}})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	roles := migrate.DefaultRoles()
	shard, err := apptest.PrepareShard(ctx, c, roles, shardName)
	if err != nil {
		b.Fatal(err)
	}
	defer shard.Pool.Close()
	defer shard.Admin.Close()
	desired, err := migrate.NewDesired(appmigrate.Tables)
	if err != nil {
		b.Fatal(err)
	}
	tenant := X
	schemaName := tenant.SchemaName()
	if _, err := apptest.ApplySchema(ctx, c, roles, desired, schemaName); err != nil {
		b.Fatal(err)
	}
	owner := benchPool(b, c.DSN(roles.Owner, apptest.Database), 8)
	super := benchPool(b, c.DSN("postgres", apptest.Database), 4)

	// Load: batches of customers with 2 orders each, 2 line items per
	// order, until the COPY text reaches the size.
	tables := []string{"customers", "orders", "line_items", "tags", "order_tags"}
	loadStart := time.Now()
	var textBytes int64
	for batch := 0; textBytes < int64(mb)<<20; batch++ {
		if err := loadBatch(ctx, super, schemaName, tenant, batch, 100_000); err != nil {
			b.Fatal(err)
		}
		if batch%5 == 4 || batch == 0 {
			if textBytes, err = rawCopy(ctx, owner, schemaName, tenant, tables, 2); err != nil {
				b.Fatal(err)
			}
			say(b, "loaded %d batches: %d MB of COPY text (%s)", batch+1, textBytes>>20, time.Since(loadStart).Round(time.Second))
		}
	}
	if _, err := super.Exec(ctx, "VACUUM ANALYZE"); err != nil {
		b.Fatal(err)
	}
	textBytes, err = rawCopy(ctx, owner, schemaName, tenant, tables, 2)
	if err != nil {
		b.Fatal(err)
	}
	var rows int64
	for _, t := range tables {
		var n int64
		super.QueryRow(ctx, "SELECT count(*) FROM "+schemaName+"."+t).Scan(&n)
		rows += n
	}
	say(b, "tenant: %d rows, %.0f MB of COPY text, loaded in %s", rows, mbOf(textBytes), time.Since(loadStart).Round(time.Second))

	store, err := backup.NewDir(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	m, err := backup.New(backup.Config{Store: store, Desired: desired})
	if err != nil {
		b.Fatal(err)
	}
	src := backup.Source{Shard: shardName, DB: owner, Schema: schemaName, Mode: backup.ModeSchema}

	// Backup against the raw baseline, interleaved over rounds.
	rate := map[string][]float64{}
	var lastArchive string
	var stored int64
	rounds, _ := strconv.Atoi(os.Getenv("TENANTRY_BENCH_ROUNDS"))
	for round := 1; round <= max(rounds, 2); round++ {
		for _, v := range []struct {
			name string
			run  func() error
		}{
			{"raw COPY, 1 connection", func() error { _, err := rawCopy(ctx, owner, schemaName, tenant, tables, 1); return err }},
			{"backup, Parallel 1", func() error { return benchBackup(ctx, m, src, tenant, 1, &lastArchive, &stored) }},
			{"raw COPY, 2 connections", func() error { _, err := rawCopy(ctx, owner, schemaName, tenant, tables, 2); return err }},
			{"backup, Parallel 2", func() error { return benchBackup(ctx, m, src, tenant, 2, &lastArchive, &stored) }},
			{"backup, Parallel 4", func() error { return benchBackup(ctx, m, src, tenant, 4, &lastArchive, &stored) }},
		} {
			start := time.Now()
			if err := v.run(); err != nil {
				b.Fatalf("%s: %v", v.name, err)
			}
			d := time.Since(start)
			rate[v.name] = append(rate[v.name], mbOf(textBytes)/d.Seconds())
			say(b, "round %d: %-26s %6.1f s  %6.1f MB/s", round, v.name, d.Seconds(), mbOf(textBytes)/d.Seconds())
		}
	}
	say(b, "archive stored: %.0f MB (%.1fx compression)", mbOf(stored), float64(textBytes)/float64(max(stored, 1)))

	if os.Getenv("TENANTRY_BENCH_BACKUP_ONLY") != "" {
		for name, v := range rate {
			say(b, "median %-28s %6.1f MB/s over %d rounds", name, median(v), len(v))
		}
		return
	}

	// Restore against COPY FROM of the same text into a fresh schema.
	for round := 1; round <= 1; round++ {
		start := time.Now()
		if err := rawRestore(ctx, c, roles, desired, owner, store, lastArchive, tenant, fmt.Sprintf("raw_restore_%d", round)); err != nil {
			b.Fatal(err)
		}
		d := time.Since(start)
		rate["raw COPY FROM, fresh schema"] = append(rate["raw COPY FROM, fresh schema"], mbOf(textBytes)/d.Seconds())
		say(b, "round %d: %-26s %6.1f s  %6.1f MB/s", round, "raw COPY FROM, fresh schema", d.Seconds(), mbOf(textBytes)/d.Seconds())
		start = time.Now()
		res, err := m.Restore(ctx, lastArchive, backup.Target{Shard: shardName, DB: owner, Schema: schemaName, Mode: backup.ModeSchema}, backup.RestoreOptions{Replace: true})
		if err != nil {
			b.Fatal(err)
		}
		d = time.Since(start)
		rate["restore, replace"] = append(rate["restore, replace"], mbOf(textBytes)/d.Seconds())
		say(b, "round %d: %-26s %6.1f s  %6.1f MB/s", round, "restore, replace", d.Seconds(), mbOf(textBytes)/d.Seconds())
		if err := backup.DropRetired(ctx, owner, res.Retired); err != nil {
			b.Fatal(err)
		}
	}

	// Point in time: a base backup, a change, T, the WAL archived, restore.
	baseDir := b.TempDir()
	start := time.Now()
	base, err := pitr.BaseBackup(ctx, pitr.BaseBackupOptions{Shard: shardName, DSN: c.SuperuserDSN(), Dir: baseDir})
	if err != nil {
		b.Fatal(err)
	}
	d := time.Since(start)
	say(b, "base backup: %.0f MB in %.1f s, %.1f MB/s", mbOf(base.Bytes), d.Seconds(), mbOf(base.Bytes)/d.Seconds())
	if _, err := super.Exec(ctx, "UPDATE "+schemaName+".customers SET name = name || ' (before T)' WHERE email LIKE 'b0-1%'"); err != nil {
		b.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	var at time.Time
	super.QueryRow(ctx, "SELECT clock_timestamp()").Scan(&at)
	time.Sleep(10 * time.Millisecond)
	if _, err := super.Exec(ctx, "DELETE FROM "+schemaName+".order_tags"); err != nil {
		b.Fatal(err)
	}
	var seg string
	super.QueryRow(ctx, "SELECT pg_walfile_name(pg_switch_wal())").Scan(&seg)
	for deadline := time.Now().Add(5 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
		var last *string
		super.QueryRow(ctx, "SELECT last_archived_wal FROM pg_stat_archiver").Scan(&last)
		if last != nil && *last >= seg {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("WAL not archived")
		}
	}
	scratchDir, err := os.MkdirTemp("", "pitr-bench-scratch-")
	if err != nil {
		b.Fatal(err)
	}
	os.Chmod(scratchDir, 0o755)
	defer os.RemoveAll(scratchDir)
	r, err := pitr.New(pitr.Config{Backups: m, BaseBackups: baseDir, WALArchive: c.ArchiveDir(), ScratchDir: scratchDir})
	if err != nil {
		b.Fatal(err)
	}
	res, err := r.RestoreAt(ctx, tenant, at, pitr.Source{Shard: shardName, Database: apptest.Database, Schema: schemaName, Mode: backup.ModeSchema},
		backup.Target{Shard: shardName, DB: owner, Schema: schemaName, Mode: backup.ModeSchema}, pitr.Options{Restore: backup.RestoreOptions{Replace: true}, Parallel: 2})
	if err != nil {
		b.Fatal(err)
	}
	phases := ""
	for _, p := range []string{pitr.PhaseExtract, pitr.PhaseRecover, pitr.PhaseExport, pitr.PhaseCleanup, pitr.PhaseRestore} {
		phases += fmt.Sprintf(" %s %.1f s,", p, res.Phases[p].Seconds())
	}
	say(b, "point-in-time restore end to end: %.1f s (%s), %d rows", res.Duration.Seconds(), phases[:len(phases)-1], res.Restore.Rows)
	var orderTags int64
	super.QueryRow(ctx, "SELECT count(*) FROM "+schemaName+".order_tags").Scan(&orderTags)
	if orderTags == 0 {
		b.Error("order_tags deleted after T are not back")
	}

	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for k := range rate {
			if !yield(k) {
				return
			}
		}
	}) {
		say(b, "median %-28s %6.1f MB/s", name, median(rate[name]))
	}
	b.ReportMetric(median(rate["backup, Parallel 2"]), "backup-p2-MB/s")
	b.ReportMetric(median(rate["backup, Parallel 2"])/median(rate["raw COPY, 2 connections"]), "backup-p2/raw")
	b.ReportMetric(median(rate["restore, replace"]), "restore-MB/s")
	b.ReportMetric(res.Duration.Seconds(), "pitr-s")
}

// say logs a line of the benchmark's report, to stderr as well: the
// testing package keeps only the first lines of a benchmark's log.
func say(b *testing.B, format string, args ...any) {
	b.Helper()
	fmt.Fprintf(os.Stderr, "    "+format+"\n", args...)
}

func benchPool(b *testing.B, dsn string, n int32) *pgxpool.Pool {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		b.Fatal(err)
	}
	cfg.MaxConns = n
	p, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(p.Close)
	return p
}

func mbOf(n int64) float64 { return float64(n) / (1 << 20) }

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 0 {
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return s[len(s)/2]
}

func benchBackup(ctx context.Context, m *backup.Manager, src backup.Source, tenant tenancy.ID, parallel int, last *string, stored *int64) error {
	man, err := m.Backup(ctx, tenant, src, backup.BackupOptions{Parallel: parallel})
	if err != nil {
		return err
	}
	*last = man.Name
	*stored = 0
	for _, t := range man.Tables {
		*stored += t.StoredBytes
	}
	return nil
}

// loadBatch adds n customers of batch, with 2 orders each, 2 line items per
// order, and 3 tags for a third of the orders.
func loadBatch(ctx context.Context, pool *pgxpool.Pool, schemaName string, tenant tenancy.ID, batch, n int) error {
	q := func(t string) string { return schemaName + "." + t }
	prefix := fmt.Sprintf("b%d-", batch)
	tx, err := pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	for _, s := range []string{
		`CREATE TEMP TABLE new_orders ON COMMIT DROP AS SELECT gen_random_uuid() AS id, c.id AS customer_id, c.email, k
		 FROM (SELECT gen_random_uuid() AS id, $2::text || i || '@example.test' AS email FROM generate_series(1, $3::int) i) c, generate_series(1, 2) k
		 WHERE $1::uuid IS NOT NULL`,
		`INSERT INTO ` + q("customers") + ` (id, tenant_id, name, email, created_at)
		 SELECT DISTINCT customer_id, $1::uuid, 'Customer ' || email, email, now() FROM new_orders`,
		`INSERT INTO ` + q("orders") + ` (id, tenant_id, number, status, total_cents, note, created_at, customer_id)
		 SELECT id, $1, 'O-' || email || '-' || k, 'placed', k * 1999, CASE WHEN k = 1 THEN 'first order, deliver to the back door' END, now(), customer_id FROM new_orders`,
		`INSERT INTO ` + q("line_items") + ` (id, tenant_id, sku, quantity, unit_price_cents, order_id)
		 SELECT gen_random_uuid(), $1, 'SKU-' || (hashtext(o.email) & 65535) || '-' || j, j, 100 * j, o.id FROM new_orders o, generate_series(1, 2) j`,
		`INSERT INTO ` + q("tags") + ` (id, tenant_id, name) SELECT gen_random_uuid(), $1, $2 || 'tag ' || k FROM generate_series(1, 3) k`,
		`INSERT INTO ` + q("order_tags") + ` (tenant_id, created_at, order_id, tag_id)
		 SELECT $1, now(), o.id, t.id FROM new_orders o JOIN ` + q("tags") + ` t ON t.name LIKE $2 || 'tag %' WHERE o.k = 1 AND hashtext(o.email) % 3 = 0`,
	} {
		args := []any{tenant, prefix, n} // as many as the statement uses
		if !strings.Contains(s, "$2") {
			args = args[:1]
		} else if !strings.Contains(s, "$3") {
			args = args[:2]
		}
		if _, err := tx.Exec(ctx, s, args...); err != nil {
			return fmt.Errorf("%.60s: %w", s, err)
		}
	}
	return tx.Commit(ctx)
}

// rawCopy is the baseline of a backup: COPY of each table's rows of the
// tenant, as the backup's statements read them, in one snapshot, into
// io.Discard, on `conns` connections. It returns the bytes read.
func rawCopy(ctx context.Context, pool *pgxpool.Pool, schemaName string, tenant tenancy.ID, tables []string, conns int) (int64, error) {
	var (
		mu       sync.Mutex
		total    int64
		firstErr error
		snapshot string
	)
	lead, err := pool.Acquire(ctx)
	if err != nil {
		return 0, err
	}
	defer lead.Release()
	ltx, err := lead.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return 0, err
	}
	defer ltx.Rollback(ctx)
	if err := ltx.QueryRow(ctx, "SELECT pg_export_snapshot()").Scan(&snapshot); err != nil {
		return 0, err
	}
	jobs := make(chan string, len(tables))
	for _, t := range tables {
		jobs <- t
	}
	close(jobs)
	var wg sync.WaitGroup
	for range conns {
		wg.Go(func() {
			err := func() error {
				conn, err := pool.Acquire(ctx)
				if err != nil {
					return err
				}
				defer conn.Release()
				tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
				if err != nil {
					return err
				}
				defer tx.Rollback(ctx)
				if _, err := tx.Exec(ctx, "SET TRANSACTION SNAPSHOT '"+snapshot+"'"); err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, "SELECT set_config('app.current_tenant_id', $1, true)", tenant.String()); err != nil {
					return err
				}
				for t := range jobs {
					w := &countWriter{}
					_, err := tx.Conn().PgConn().CopyTo(ctx, w, "COPY (SELECT * FROM "+schemaName+"."+t+
						" WHERE tenant_id = (SELECT NULLIF(current_setting('app.current_tenant_id', true), '')::uuid)) TO STDOUT")
					if err != nil {
						return err
					}
					mu.Lock()
					total += w.n
					mu.Unlock()
				}
				return nil
			}()
			if err != nil {
				mu.Lock()
				firstErr = err
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return 0, firstErr
	}
	return total, nil
}

type countWriter struct{ n int64 }

func (w *countWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

// rawRestore is the baseline of a restore: a fresh schema at the desired
// state, and COPY FROM of the archive's (decompressed) files into its
// tables in one transaction, as a superuser with foreign key triggers off
// (session_replication_role = replica), as pg_restore loads data before
// adding constraints. The schema is dropped afterwards.
func rawRestore(ctx context.Context, c *pgtest.Cluster, roles migrate.Roles, desired *migrate.Desired, _ *pgxpool.Pool, store backup.Store, archive string, _ tenancy.ID, schemaName string) error {
	if _, err := apptest.ApplySchema(ctx, c, roles, desired, schemaName); err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, c.DSN("postgres", apptest.Database))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	defer conn.Exec(context.WithoutCancel(ctx), "DROP SCHEMA "+schemaName+" CASCADE")
	man, err := backup.ReadManifest(ctx, store, archive)
	if err != nil {
		return err
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SET LOCAL session_replication_role = replica"); err != nil {
		return err
	}
	for _, t := range man.Tables {
		rc, err := store.Open(ctx, archive+"/"+t.File)
		if err != nil {
			return err
		}
		gz, err := gzip.NewReader(rc)
		if err != nil {
			rc.Close()
			return err
		}
		cols := make([]string, len(t.Columns))
		for i, col := range t.Columns {
			cols[i] = pgx.Identifier{col.Name}.Sanitize()
		}
		_, err = tx.Conn().PgConn().CopyFrom(ctx, gz, "COPY "+schemaName+"."+pgx.Identifier{t.Name}.Sanitize()+" ("+strings.Join(cols, ", ")+") FROM STDIN")
		rc.Close()
		if err != nil {
			return fmt.Errorf("COPY FROM %s: %w", t.Name, err)
		}
	}
	return tx.Commit(ctx)
}
