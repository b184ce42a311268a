package backup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenantry/tenantry/internal/pgddl"
	"github.com/tenantry/tenantry/migrate"
	"github.com/tenantry/tenantry/tenancy"
)

// Prefixes of the schemas a restore makes besides the target: the staging
// schema it loads (dropped or renamed to the target when it ends) and the
// retired schema that keeps a replaced copy. Neither matches the fleet
// runner's default patterns (tenant_%, shared_%), so migrations leave them
// alone.
const (
	StagingPrefix = "restore_"
	RetiredPrefix = "retired_"
)

// Target is where a restore puts a tenant.
type Target struct {
	// Shard names the shard, for logs.
	Shard string
	// DB connects to the shard database as the owner role (or a superuser
	// or member of it). A restore holds up to three of its connections.
	DB *pgxpool.Pool
	// Schema is the tenant's own schema (ModeSchema) or the shared schema
	// (ModeShared).
	Schema string
	Mode   Mode
}

// RestoreOptions choose between the two kinds of restore.
type RestoreOptions struct {
	// Tenant is the tenant the restored rows belong to. Zero: the
	// archive's tenant. Another id clones the archive into a new tenant:
	// tenant_id is rewritten on every row.
	Tenant tenancy.ID
	// Replace replaces the tenant's current copy at the target, which
	// must exist (else ErrNotFound); the old copy is kept in a retired
	// schema. Without Replace the target must not hold the tenant yet
	// (else ErrExists).
	Replace bool
}

// RestoreResult reports a restore.
type RestoreResult struct {
	Archive string
	// Tenant is the restored tenant; Source the archive's. They differ
	// for a clone.
	Tenant, Source tenancy.ID
	Clone          bool
	Shard, Schema  string
	Mode           Mode
	// Retired is the schema that keeps the replaced copy ("" when
	// nothing was replaced). Drop it with DropRetired after the retention
	// period.
	Retired string
	Tables  int
	Rows    int64
	// FromVersion is the archive's schema version; ToVersion the desired
	// version the restored schema was created at (own schemas), or ""
	// for a shared schema, which a restore never migrates. Migrated is
	// true when they differ.
	FromVersion, ToVersion string
	Migrated               bool
	Duration               time.Duration
}

// restoreConns is how many connections of Target.DB a restore holds at
// once: its lock session, the load transaction and migrate's Apply.
const restoreConns = 3

func (t Target) validate() error {
	if err := (Source{DB: t.DB, Schema: t.Schema, Mode: t.Mode}).validate(); err != nil {
		return err
	}
	if n := t.DB.Config().MaxConns; n < restoreConns {
		return fmt.Errorf("%w: the target pool allows %d connections; a restore holds %d at once", ErrInvalid, n, restoreConns)
	}
	return nil
}

// Restore loads an archive into a target placement on any shard, and
// verifies it before anything becomes visible.
//
// Own schema (ModeSchema): the desired state is created in a staging
// schema, its tables are loaded bare by COPY (a clone's rows go through
// temporary tables instead, under the tenant's row-level security, which
// rewrite tenant_id), their indexes and constraints built afterwards, the
// sequences set to the archived values, and every table is verified (row
// count and row hash) against the manifest. Then one transaction locks
// the old schema's tables (waiting at most the lock timeout for the
// tenant's running transactions), renames the old schema to a retired one
// (kept, and no longer usable by the app and admin roles) and the staging
// schema to the target. On any failure the staging schema is dropped and
// the target is as it was.
//
// Shared schema (ModeShared): one transaction, under the tenant's
// row-level security, copies the tenant's current rows into a retired
// schema (Replace), deletes them, loads and verifies the archived rows,
// raises the shared sequences to at least the archived values, and
// commits. Only rows of the tenant are read, deleted or written: the
// database's policies refuse anything else. A missing shared schema is
// created at the desired state; an existing one is never migrated, and one
// that lacks a column of the archive is ErrSchemaAhead.
//
// An archive is refused with ErrSchemaAhead when it has a table or column
// the desired state lacks, or when the target shard's ledger recorded its
// version after the desired one. An archive behind the desired state is
// migrated: it is loaded into the desired state, and columns it does not
// have take their defaults (a new NOT NULL column without a default makes
// the restore fail, changing nothing). Global tables (without tenant_id)
// are restored into own schemas only.
//
// The manifest's checksums and counts are checked while the data streams
// in; a mismatch is a *ChecksumError (ErrCorrupt) and a difference after
// loading a *VerifyError (ErrVerify); either way nothing was changed.
func (m *Manager) Restore(ctx context.Context, name string, dst Target, opts RestoreOptions) (*RestoreResult, error) {
	start := time.Now()
	if err := dst.validate(); err != nil {
		return nil, err
	}
	man, err := ReadManifest(ctx, m.store, name)
	if err != nil {
		return nil, err
	}
	tenant := opts.Tenant
	if tenant.IsZero() {
		tenant = man.Tenant
	}
	res := &RestoreResult{
		Archive: name, Tenant: tenant, Source: man.Tenant, Clone: tenant != man.Tenant,
		Shard: dst.Shard, Schema: dst.Schema, Mode: dst.Mode, FromVersion: man.SchemaVersion,
	}
	log := m.log.With("op", "restore", "archive", name, "tenant", tenant.String(), "shard", dst.Shard, "schema", dst.Schema)
	log.Info("restore: start", "mode", dst.Mode, "replace", opts.Replace, "clone", res.Clone, "source_tenant", man.Tenant.String(),
		"archive_version", man.SchemaVersion, "desired_version", m.desired.Version())
	if err := m.restore(ctx, man, dst, opts, res, log); err != nil {
		log.Error("restore: failed; nothing was changed", "err", err)
		return nil, fmt.Errorf("backup: restore %s into %s/%s: %w", name, dst.Shard, dst.Schema, err)
	}
	res.Duration = time.Since(start)
	log.Info("restore: done", "tables", res.Tables, "rows", res.Rows, "retired", res.Retired, "migrated", res.Migrated, "elapsed", res.Duration.Round(time.Millisecond))
	return res, nil
}

func (m *Manager) restore(ctx context.Context, man *Manifest, dst Target, opts RestoreOptions, res *RestoreResult, log *slog.Logger) error {
	if err := m.checkAhead(man); err != nil {
		return err
	}
	// One restore of a tenant at a time on a shard: a session-level
	// advisory lock, held on its own connection until the end.
	lock, err := dst.DB.Acquire(ctx)
	if err != nil {
		return err
	}
	defer lock.Release()
	key := "tenantry:restore:" + res.Tenant.String()
	var got bool
	if err := lock.QueryRow(ctx, "SELECT pg_try_advisory_lock(hashtextextended($1, 0))", key).Scan(&got); err != nil {
		return err
	}
	if !got {
		return fmt.Errorf("%w: another restore of tenant %s is running on shard %s", ErrBusy, res.Tenant, dst.Shard)
	}
	defer lock.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock(hashtextextended($1, 0))", key)
	if err := m.checkLedgerOrder(ctx, lock, man); err != nil {
		return err
	}
	var user string
	if err := lock.QueryRow(ctx, "SELECT current_user").Scan(&user); err != nil {
		return err
	}
	run := &restoreRun{m: m, man: man, dst: dst, opts: opts, res: res, log: log, role: roleStmt(user, m.roles.Owner)}
	if dst.Mode == ModeShared {
		return run.shared(ctx, lock)
	}
	return run.schema(ctx, lock)
}

// checkAhead refuses an archive with tables or columns the desired state
// lacks.
func (m *Manager) checkAhead(man *Manifest) error {
	var missing []string
	for _, t := range man.Tables {
		cols, ok := m.desiredCols[t.Name]
		if !ok {
			missing = append(missing, "table "+t.Name)
			continue
		}
		for _, c := range t.Columns {
			if !cols[c.Name] {
				missing = append(missing, "column "+t.Name+"."+c.Name)
			}
		}
	}
	if len(missing) > 0 {
		return &SchemaAheadError{ArchiveVersion: man.SchemaVersion, DesiredVersion: m.desired.Version(), Missing: missing}
	}
	return nil
}

// checkLedgerOrder refuses an archive whose version the target shard's
// ledger recorded after the desired version: it was taken by a newer
// program than this one.
func (m *Manager) checkLedgerOrder(ctx context.Context, conn *pgxpool.Conn, man *Manifest) error {
	if man.SchemaVersion == "" || man.SchemaVersion == m.desired.Version() {
		return nil
	}
	var archived, desired *time.Time
	err := conn.QueryRow(ctx, `SELECT CASE WHEN to_regclass('tenantry.versions') IS NOT NULL THEN
			(SELECT min(recorded_at) FROM tenantry.versions WHERE version = $1) END,
		CASE WHEN to_regclass('tenantry.versions') IS NOT NULL THEN
			(SELECT min(recorded_at) FROM tenantry.versions WHERE version = $2) END`,
		man.SchemaVersion, m.desired.Version()).Scan(&archived, &desired)
	if err != nil {
		m.log.Debug("restore: ledger versions not readable; the structural check decides", "err", err)
		return nil
	}
	if archived != nil && desired != nil && archived.After(*desired) {
		return &SchemaAheadError{ArchiveVersion: man.SchemaVersion, DesiredVersion: m.desired.Version(),
			Missing: []string{"version recorded by the target shard's ledger after the desired one"}}
	}
	return nil
}

// restoreRun is one restore in progress.
type restoreRun struct {
	m    *Manager
	man  *Manifest
	dst  Target
	opts RestoreOptions
	res  *RestoreResult
	log  *slog.Logger
	role string
}

// suffix is the tenant's hex id and a UTC time to the millisecond, for the
// names of staging and retired schemas (at most 58 bytes with the prefix).
func (r *restoreRun) suffix() string {
	t := r.m.now().UTC()
	return r.res.Tenant.SchemaName()[len("tenant_"):] + "_" + t.Format("20060102150405") + fmt.Sprintf("%03d", t.Nanosecond()/1e6)
}

// schema restores into an own schema: staging, then swap.
func (r *restoreRun) schema(ctx context.Context, conn *pgxpool.Conn) (err error) {
	exists, err := schemaExists(ctx, conn, r.dst.Schema)
	if err != nil {
		return err
	}
	switch {
	case r.opts.Replace && !exists:
		return fmt.Errorf("%w: schema %s (nothing to replace)", ErrNotFound, r.dst.Schema)
	case !r.opts.Replace && exists:
		return fmt.Errorf("%w: schema %s exists (restore with Replace, or into another schema)", ErrExists, r.dst.Schema)
	}
	staging := StagingPrefix + r.suffix()
	db := openDB(r.dst.DB)
	defer db.Close()
	defer func() {
		if err != nil {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			if derr := migrate.DropSchema(cctx, db, staging); derr != nil {
				r.log.Warn("restore: dropping the staging schema failed", "staging", staging, "err", derr)
			}
		}
	}()
	r.log.Info("restore: creating the staging schema at the desired state", "staging", staging, "version", r.m.desired.Version())
	if _, err := r.m.desired.Apply(ctx, db, staging, r.m.roles); err != nil {
		return busy(err)
	}
	r.res.ToVersion = r.m.desired.Version()
	r.res.Migrated = r.res.FromVersion != r.res.ToVersion
	if r.res.Migrated {
		r.log.Info("restore: archive is behind the desired state: restoring into the desired state", "from", orUnknown(r.res.FromVersion), "to", r.res.ToVersion)
	}

	tx, err := r.dst.DB.BeginTx(ctx, pgx.TxOptions{})
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if err := execAll(ctx, tx, r.role); err != nil {
		return err
	}
	if err := prepareTx(ctx, tx, r.res.Tenant.String(), r.m.lockTimeout.Milliseconds()); err != nil {
		return err
	}
	tables, err := readTables(ctx, tx, staging)
	if err != nil {
		return err
	}
	// The staging schema is private: load its tables bare and build their
	// indexes and constraints afterwards, as pg_restore does. An index
	// built over the loaded rows costs a fraction of one maintained row by
	// row (random uuid keys above all), and each foreign key is validated
	// by one query instead of a check per row. The definitions are the
	// ones Apply created.
	sizes := make(map[string]int64, len(r.man.Tables))
	for _, at := range r.man.Tables {
		sizes[at.Name] = at.Bytes
	}
	deferred, err := pgddl.Read(ctx, tx, staging, nil, sizes)
	if err != nil {
		return err
	}
	if err := execAll(ctx, tx, deferred.Drops...); err != nil {
		return err
	}
	readd := func() error {
		start := time.Now()
		if err := execAll(ctx, tx, "SET LOCAL maintenance_work_mem = '256MB'"); err != nil {
			return err
		}
		for _, stmt := range deferred.Creates {
			_, err := tx.Exec(ctx, stmt)
			if pgErr := (*pgconn.PgError)(nil); errors.As(err, &pgErr) && pgErr.Code == "23505" {
				// What loadTable reports when the key is checked per row.
				return fmt.Errorf("%w: an archived row's key is taken twice (%s); restore into another schema: %w", ErrExists, pgErr.Detail, err)
			}
			if err != nil {
				return fmt.Errorf("rebuild the staging schema's indexes and constraints: %s: %w", stmt, err)
			}
		}
		r.log.Info("restore: indexes and constraints built", "statements", len(deferred.Creates), "elapsed", time.Since(start).Round(time.Millisecond))
		return nil
	}
	if err := r.loadAndVerify(ctx, tx, staging, tables, false, readd); err != nil {
		return err
	}
	if err := r.setSequences(ctx, tx, staging, true); err != nil {
		return err
	}
	if h := r.m.hooks.beforeCommit; h != nil {
		h(ctx)
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	if h := r.m.hooks.beforeSwap; h != nil {
		h(ctx)
	}
	return r.swap(ctx, staging)
}

// swap renames the old schema to a retired one and the staging schema to
// the target, in one transaction; a lock timeout is retried twice.
func (r *restoreRun) swap(ctx context.Context, staging string) error {
	var err error
	for attempt := 1; attempt <= 3; attempt++ {
		if err = r.swapOnce(ctx, staging); !errors.Is(err, ErrBusy) {
			return err
		}
		r.log.Info("restore: swap waited too long for the tenant's transactions; again", "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(attempt) * 200 * time.Millisecond):
		}
	}
	return err
}

func (r *restoreRun) swapOnce(ctx context.Context, staging string) error {
	tx, err := r.dst.DB.BeginTx(ctx, pgx.TxOptions{})
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if err := execAll(ctx, tx, r.role); err != nil {
		return err
	}
	if err := prepareTx(ctx, tx, r.res.Tenant.String(), r.m.lockTimeout.Milliseconds()); err != nil {
		return err
	}
	// The advisory lock migrate.Desired.Apply and the fleet runner take
	// for the schema: no migration of it runs across the swap.
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtext('tenantry:' || $1))", r.dst.Schema); err != nil {
		return busy(err)
	}
	exists, err := schemaExists(ctx, tx, r.dst.Schema)
	if err != nil {
		return err
	}
	var stmts []string
	retired := ""
	if r.opts.Replace {
		if !exists {
			return fmt.Errorf("%w: schema %s disappeared during the restore", ErrNotFound, r.dst.Schema)
		}
		old, err := readTables(ctx, tx, r.dst.Schema)
		if err != nil {
			return err
		}
		if len(old) > 0 {
			qs := make([]string, len(old))
			for i, t := range old {
				qs[i] = qualified(r.dst.Schema, t.name)
			}
			// Wait for the tenant's running transactions, so none spans
			// the swap; other tenants' tables are not touched.
			stmts = append(stmts, "LOCK TABLE "+joinComma(qs)+" IN ACCESS EXCLUSIVE MODE")
		}
		retired = RetiredPrefix + r.suffix()
		note, _ := json.Marshal(RetiredSchema{Tenant: r.res.Tenant, Original: r.dst.Schema, Mode: ModeSchema,
			RetiredAt: r.m.now().UTC(), Archive: r.res.Archive, Reason: "replaced by a restore"})
		stmts = append(stmts,
			"ALTER SCHEMA "+ident(r.dst.Schema)+" RENAME TO "+ident(retired),
			"REVOKE ALL ON SCHEMA "+ident(retired)+" FROM "+ident(r.m.roles.App)+", "+ident(r.m.roles.Admin),
			"COMMENT ON SCHEMA "+ident(retired)+" IS "+literal(string(note)))
	} else if exists {
		return fmt.Errorf("%w: schema %s was created during the restore", ErrExists, r.dst.Schema)
	}
	stmts = append(stmts, "ALTER SCHEMA "+ident(staging)+" RENAME TO "+ident(r.dst.Schema))
	if err := execAll(ctx, tx, stmts...); err != nil {
		return busy(err)
	}
	if err := tx.Commit(ctx); err != nil {
		return busy(err)
	}
	r.res.Retired = retired
	r.log.Info("restore: swapped", "retired", retired)
	return nil
}

// shared restores into a shared schema, in one transaction.
func (r *restoreRun) shared(ctx context.Context, conn *pgxpool.Conn) error {
	exists, err := schemaExists(ctx, conn, r.dst.Schema)
	if err != nil {
		return err
	}
	if !exists {
		if r.opts.Replace {
			return fmt.Errorf("%w: shared schema %s (nothing to replace)", ErrNotFound, r.dst.Schema)
		}
		// A new shared schema holds no other tenant yet: creating it
		// touches no one.
		db := openDB(r.dst.DB)
		_, err := r.m.desired.Apply(ctx, db, r.dst.Schema, r.m.roles)
		db.Close()
		if err != nil {
			return busy(err)
		}
		r.log.Info("restore: created the shared schema at the desired state", "version", r.m.desired.Version())
	}
	tx, err := r.dst.DB.BeginTx(ctx, pgx.TxOptions{})
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if err := execAll(ctx, tx, r.role); err != nil {
		return err
	}
	if err := prepareTx(ctx, tx, r.res.Tenant.String(), r.m.lockTimeout.Milliseconds()); err != nil {
		return err
	}
	// Shared with other restores, exclusive with migrations of the schema.
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock_shared(hashtext('tenantry:' || $1))", r.dst.Schema); err != nil {
		return busy(err)
	}
	all, err := readTables(ctx, tx, r.dst.Schema)
	if err != nil {
		return err
	}
	var tables []*tableInfo
	for _, t := range all {
		if t.tenant {
			tables = append(tables, t)
		}
	}
	if err := r.checkTarget(tables); err != nil {
		return err
	}
	present := false
	for _, t := range tables {
		var ok bool
		if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT FROM "+qualified(r.dst.Schema, t.name)+" WHERE "+ident(tenantColumn)+" = "+tenantExpr+")").Scan(&ok); err != nil {
			return err
		}
		present = present || ok
	}
	switch {
	case present && !r.opts.Replace:
		return fmt.Errorf("%w: shared schema %s holds rows of tenant %s (restore with Replace)", ErrExists, r.dst.Schema, r.res.Tenant)
	case present:
		if err := r.retireShared(ctx, tx, tables); err != nil {
			return err
		}
	case r.opts.Replace:
		r.log.Info("restore: the tenant has no rows in the shared schema; nothing to retire")
	}
	if err := r.loadAndVerify(ctx, tx, r.dst.Schema, tables, true, nil); err != nil {
		return err
	}
	if h := r.m.hooks.beforeCommit; h != nil {
		h(ctx)
	}
	// Last: setval is not transactional, and only raises the values.
	if err := r.setSequences(ctx, tx, r.dst.Schema, false); err != nil {
		return err
	}
	return busy(tx.Commit(ctx))
}

// checkTarget refuses to load an archive into an existing shared schema
// that lacks one of its columns (the schema is behind the archive).
func (r *restoreRun) checkTarget(tables []*tableInfo) error {
	byName := map[string]*tableInfo{}
	for _, t := range tables {
		byName[t.name] = t
	}
	var missing []string
	for _, at := range r.man.Tables {
		if at.TenantColumn < 0 {
			continue
		}
		t := byName[at.Name]
		if t == nil {
			missing = append(missing, "table "+at.Name)
			continue
		}
		for _, c := range at.Columns {
			if _, ok := t.column(c.Name); !ok {
				missing = append(missing, "column "+at.Name+"."+c.Name)
			}
		}
	}
	if len(missing) > 0 {
		return &SchemaAheadError{ArchiveVersion: r.man.SchemaVersion, DesiredVersion: r.m.desired.Version(), Target: r.dst.Schema, Missing: missing}
	}
	return nil
}

// retireShared keeps the tenant's current rows in a retired schema and
// deletes them from the shared schema (children first).
func (r *restoreRun) retireShared(ctx context.Context, tx pgx.Tx, tables []*tableInfo) error {
	order, err := loadOrder(tables)
	if err != nil {
		return err
	}
	retired := RetiredPrefix + r.suffix()
	note, _ := json.Marshal(RetiredSchema{Tenant: r.res.Tenant, Original: r.dst.Schema, Mode: ModeShared,
		RetiredAt: r.m.now().UTC(), Archive: r.res.Archive, Reason: "replaced by a restore"})
	stmts := []string{
		"CREATE SCHEMA " + ident(retired),
		"COMMENT ON SCHEMA " + ident(retired) + " IS " + literal(string(note)),
	}
	for _, t := range order {
		stmts = append(stmts, "CREATE TABLE "+qualified(retired, t.name)+" AS SELECT * FROM "+qualified(r.dst.Schema, t.name)+" WITH NO DATA")
	}
	// Each table's rows move in one statement, so that what is deleted is
	// what is kept: a write the tenant commits between a copy and a
	// separate DELETE would be in neither (the statements of a READ
	// COMMITTED transaction each take a new snapshot).
	for _, t := range slices.Backward(order) {
		stmts = append(stmts, "WITH moved AS (DELETE FROM "+qualified(r.dst.Schema, t.name)+" WHERE "+ident(tenantColumn)+" = "+tenantExpr+
			" RETURNING *) INSERT INTO "+qualified(retired, t.name)+" SELECT * FROM moved")
	}
	if err := execAll(ctx, tx, stmts...); err != nil {
		return busy(err)
	}
	r.res.Retired = retired
	r.log.Info("restore: kept the tenant's current rows", "retired", retired)
	return nil
}

// loadAndVerify loads every archived table present in the target (parents
// first), runs afterLoad (if any), then checks what was loaded against the
// manifest.
func (r *restoreRun) loadAndVerify(ctx context.Context, tx pgx.Tx, schema string, tables []*tableInfo, shared bool, afterLoad func() error) error {
	order, err := loadOrder(tables)
	if err != nil {
		return err
	}
	type loaded struct {
		entry    Table
		sameType bool
	}
	var done []loaded
	for _, t := range order {
		at, ok := r.man.Table(t.name)
		if !ok {
			r.log.Info("restore: table not in the archive (newer than it): left empty", "table", t.name)
			continue
		}
		if shared && at.TenantColumn < 0 {
			continue
		}
		same := true
		for _, c := range at.Columns {
			tc, ok := t.column(c.Name)
			if !ok { // checked before; a concurrent change
				return &SchemaAheadError{ArchiveVersion: r.man.SchemaVersion, DesiredVersion: r.m.desired.Version(), Target: schema,
					Missing: []string{"column " + t.name + "." + c.Name}}
			}
			same = same && tc.Type == c.Type
		}
		// A staging schema whose rows keep the archive's tenant is loaded
		// by COPY; a shared schema, whose other tenants' rows the owner
		// must not touch, and a clone, whose tenant_id is rewritten, go
		// through a temporary table.
		var err error
		if shared || r.res.Clone {
			err = r.loadTable(ctx, tx, schema, len(done), t, at)
		} else {
			err = r.loadDirect(ctx, tx, schema, t, at)
		}
		if err != nil {
			return err
		}
		done = append(done, loaded{at, same})
	}
	for _, at := range r.man.Tables {
		if !slices.ContainsFunc(done, func(l loaded) bool { return l.entry.Name == at.Name }) {
			r.log.Info("restore: archived table not restored here", "table", at.Name, "reason", "global table into a shared schema")
		}
	}
	if afterLoad != nil {
		if err := afterLoad(); err != nil {
			return err
		}
	}
	for _, l := range done {
		if err := r.verifyTable(ctx, tx, schema, l.entry, l.sameType); err != nil {
			return err
		}
		r.res.Tables++
		r.res.Rows += l.entry.Rows
	}
	return nil
}

// loadTable streams one data file into a temporary table, checks it, and
// inserts it under the tenant's row-level security with tenant_id set to
// the restored tenant.
func (r *restoreRun) loadTable(ctx context.Context, tx pgx.Tx, schema string, i int, t *tableInfo, at Table) error {
	start := time.Now()
	tmp := "pg_temp." + ident("tenantry_restore_"+strconv.Itoa(i))
	cols := columnList(at.Columns)
	if _, err := tx.Exec(ctx, "CREATE TEMP TABLE "+tmp+" ON COMMIT DROP AS SELECT "+cols+" FROM "+qualified(schema, t.name)+" WITH NO DATA"); err != nil {
		return fmt.Errorf("load %s: %w", t.name, err)
	}
	if _, err := r.copyIn(ctx, tx, tmp, at); err != nil {
		return err
	}
	sel := make([]string, len(at.Columns))
	for j, c := range at.Columns {
		sel[j] = ident(c.Name)
	}
	if at.TenantColumn >= 0 {
		if err := r.onlyTenant(ctx, tx, tmp, at); err != nil {
			return err
		}
		sel[at.TenantColumn] = tenantExpr // the restored tenant; a clone's new id
	}
	ov := ""
	if t.identity {
		ov = " OVERRIDING SYSTEM VALUE"
	}
	tag, err := tx.Exec(ctx, "INSERT INTO "+qualified(schema, t.name)+" ("+cols+")"+ov+" SELECT "+joinComma(sel)+" FROM "+tmp)
	if pgErr := (*pgconn.PgError)(nil); errors.As(err, &pgErr) && pgErr.Code == "23505" {
		// Keys are kept: a row of the target holds one already, e.g. the
		// source's own row when cloning into the source's shared schema.
		return fmt.Errorf("%w: table %s: an archived row's key is taken at the target (%s); restore into another schema: %w",
			ErrExists, t.name, pgErr.ConstraintName, err)
	}
	if err != nil {
		return fmt.Errorf("load %s: %w", t.name, err)
	}
	if tag.RowsAffected() != at.Rows {
		return &VerifyError{Table: at.Name, What: "rows", Want: strconv.FormatInt(at.Rows, 10), Got: strconv.FormatInt(tag.RowsAffected(), 10)}
	}
	if _, err := tx.Exec(ctx, "DROP TABLE "+tmp); err != nil {
		return err
	}
	r.log.Info("restore: table loaded", "table", at.Name, "rows", at.Rows, "elapsed", time.Since(start).Round(time.Millisecond))
	return nil
}

// loadDirect streams one data file straight into a staging table, checks
// it against the manifest and that every row is the tenant's. PostgreSQL
// refuses COPY FROM into a table whose row-level security applies to the
// caller, and FORCE makes it apply to the owner: the table is NO FORCE for
// the COPY only. The app role stays subject to the policy throughout, and
// ALTER TABLE holds the table's ACCESS EXCLUSIVE lock until the
// transaction ends, so nobody reads or writes it meanwhile; FORCE is back
// before the next table. COPY writes rows in batches, where INSERT ...
// SELECT from a temporary table wrote them one at a time after a first
// copy.
func (r *restoreRun) loadDirect(ctx context.Context, tx pgx.Tx, schema string, t *tableInfo, at Table) error {
	start := time.Now()
	ref := qualified(schema, t.name)
	if t.forceRLS {
		if err := execAll(ctx, tx, "ALTER TABLE "+ref+" NO FORCE ROW LEVEL SECURITY"); err != nil {
			return fmt.Errorf("load %s: %w", t.name, err)
		}
	}
	rows, err := r.copyIn(ctx, tx, ref, at)
	if err != nil {
		return err
	}
	if rows != at.Rows {
		return &VerifyError{Table: at.Name, What: "rows", Want: strconv.FormatInt(at.Rows, 10), Got: strconv.FormatInt(rows, 10)}
	}
	// While the owner still sees every row: under FORCE the policy would
	// hide another tenant's.
	if at.TenantColumn >= 0 {
		if err := r.onlyTenant(ctx, tx, ref, at); err != nil {
			return err
		}
	}
	if t.forceRLS {
		if err := execAll(ctx, tx, "ALTER TABLE "+ref+" FORCE ROW LEVEL SECURITY"); err != nil {
			return fmt.Errorf("load %s: %w", t.name, err)
		}
	}
	r.log.Info("restore: table loaded", "table", at.Name, "rows", at.Rows, "direct", true, "elapsed", time.Since(start).Round(time.Millisecond))
	return nil
}

// copyIn streams the data file of at into table (COPY FROM) and returns
// the rows copied. The stream is checked against the manifest as it goes
// (checksums, counts, tenant): a fault of the archive is the error,
// whatever the server said.
func (r *restoreRun) copyIn(ctx context.Context, tx pgx.Tx, table string, at Table) (int64, error) {
	rd, err := openTable(ctx, r.m.store, r.man.Name, r.man.Tenant.String(), at)
	if err != nil {
		return 0, err
	}
	defer rd.Close()
	tag, cerr := tx.Conn().PgConn().CopyFrom(ctx, rd, "COPY "+table+" ("+columnList(at.Columns)+") FROM STDIN")
	rd.drain()
	if err := rd.result(r.man.Name, at); err != nil {
		return 0, err
	}
	if cerr != nil {
		return 0, fmt.Errorf("load %s: %w", at.Name, cerr)
	}
	return tag.RowsAffected(), nil
}

// onlyTenant refuses an archive whose table at holds rows of another
// tenant than its manifest's, as loaded into table.
func (r *restoreRun) onlyTenant(ctx context.Context, tx pgx.Tx, table string, at Table) error {
	var foreign int64
	if err := tx.QueryRow(ctx, "SELECT count(*) FROM "+table+" WHERE "+ident(tenantColumn)+" IS DISTINCT FROM $1", r.man.Tenant).Scan(&foreign); err != nil {
		return err
	}
	if foreign > 0 {
		return &ChecksumError{Archive: r.man.Name, Table: at.Name, What: "tenant", Want: "rows of tenant " + r.man.Tenant.String() + " only",
			Got: strconv.FormatInt(foreign, 10) + " rows of other tenants"}
	}
	return nil
}

// verifyTable reads the tenant's rows of a loaded table back as COPY text
// and compares the count and the row hash with the manifest. Where a
// column's type changed since the backup (an archive behind the desired
// state), the text may legitimately differ: the count is compared only.
func (r *restoreRun) verifyTable(ctx context.Context, tx pgx.Tx, schema string, at Table, sameType bool) error {
	q := "SELECT " + columnList(at.Columns) + " FROM " + qualified(schema, at.Name)
	if at.TenantColumn >= 0 {
		q += " WHERE " + ident(tenantColumn) + " = " + tenantExpr
	}
	sum := newStreamSum(at.TenantColumn, r.res.Tenant.String())
	if _, err := tx.Conn().PgConn().CopyTo(ctx, sum, "COPY ("+q+") TO STDOUT"); err != nil {
		return fmt.Errorf("verify %s: %w", at.Name, err)
	}
	if sum.rows != at.Rows {
		return &VerifyError{Table: at.Name, What: "rows", Want: strconv.FormatInt(at.Rows, 10), Got: strconv.FormatInt(sum.rows, 10)}
	}
	if sum.foreign > 0 {
		return &VerifyError{Table: at.Name, What: "tenant", Want: "rows of tenant " + r.res.Tenant.String() + " only", Got: strconv.FormatInt(sum.foreign, 10) + " rows of others"}
	}
	if !sameType {
		r.log.Info("restore: a column type changed since the backup: table verified by row count only", "table", at.Name)
		return nil
	}
	if got := sum.rowHashHex(); got != at.RowHash {
		return &VerifyError{Table: at.Name, What: "row hash", Want: at.RowHash, Got: got}
	}
	return nil
}

// setSequences sets the target schema's sequences from the archive: to the
// archived state in an own schema (exact), or raised to at least the
// archived value in a shared schema, whose sequences other tenants use too.
func (r *restoreRun) setSequences(ctx context.Context, tx pgx.Tx, schema string, exact bool) error {
	have, err := readSequences(ctx, tx, schema)
	if err != nil {
		return err
	}
	for _, s := range r.man.Sequences {
		i := slices.IndexFunc(have, func(h Sequence) bool { return h.Name == s.Name })
		if i < 0 {
			r.log.Info("restore: archived sequence not in the target: skipped", "sequence", s.Name)
			continue
		}
		cur := have[i]
		if !exact && (!s.IsCalled || (cur.IsCalled && cur.LastValue >= s.LastValue)) {
			continue
		}
		if _, err := tx.Exec(ctx, "SELECT setval($1::regclass, $2, $3)", qualified(schema, s.Name), s.LastValue, s.IsCalled); err != nil {
			return fmt.Errorf("set sequence %s: %w", s.Name, err)
		}
	}
	return nil
}

func joinComma(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += ", "
		}
		out += x
	}
	return out
}
