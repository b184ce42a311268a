package backup

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/klauspost/compress/gzip" // the gzip format, 1.5-2x faster than compress/gzip

	"github.com/tenantry/tenantry/internal/fanout"
	"github.com/tenantry/tenantry/migrate"
	"github.com/tenantry/tenantry/tenancy"
)

// DefaultLockTimeout bounds every lock wait of a backup or restore unless
// Config.LockTimeout says otherwise.
const DefaultLockTimeout = 5 * time.Second

// DefaultParallel is how many tables a backup copies at once unless
// BackupOptions.Parallel says otherwise.
const DefaultParallel = 2

// Config configures a Manager.
type Config struct {
	// Store keeps the archives.
	Store Store
	// Desired is the desired state of tenant schemas: restores create
	// schemas at it, refuse archives ahead of it and migrate archives
	// behind it; backups record its version.
	Desired *migrate.Desired
	// Roles are the shard roles; zero: migrate.DefaultRoles().
	Roles migrate.Roles
	// Logger receives progress (Info per operation and table, Debug for
	// details); nil: none.
	Logger *slog.Logger
	// LockTimeout bounds each lock wait; zero: DefaultLockTimeout.
	LockTimeout time.Duration
}

// Manager backs up and restores tenants. It is safe for concurrent use;
// two restores of one tenant on one shard exclude each other (ErrBusy).
type Manager struct {
	store       Store
	desired     *migrate.Desired
	desiredCols map[string]map[string]bool // table → column names
	roles       migrate.Roles
	log         *slog.Logger
	lockTimeout time.Duration
	now         func() time.Time
	hooks       hooks
}

// hooks let tests act at the moments where an operation holds its locks.
type hooks struct {
	afterSnapshot func(ctx context.Context) // backup: tables locked, snapshot taken, before copying
	beforeCommit  func(ctx context.Context) // restore: rows loaded and verified, load transaction open
	beforeSwap    func(ctx context.Context) // restore, schema mode: staging committed, before the swap
}

// New returns a Manager.
func New(cfg Config) (*Manager, error) {
	if cfg.Store == nil || cfg.Desired == nil {
		return nil, fmt.Errorf("%w: Config needs a Store and a Desired", ErrInvalid)
	}
	m := &Manager{
		store:       cfg.Store,
		desired:     cfg.Desired,
		roles:       cfg.Roles,
		log:         cfg.Logger,
		lockTimeout: cfg.LockTimeout,
		now:         time.Now,
	}
	if m.roles == (migrate.Roles{}) {
		m.roles = migrate.DefaultRoles()
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	if m.lockTimeout <= 0 {
		m.lockTimeout = DefaultLockTimeout
	}
	state, err := cfg.Desired.State("desired")
	if err != nil {
		return nil, err
	}
	m.desiredCols = make(map[string]map[string]bool, len(state.Tables))
	for _, t := range state.Tables {
		cols := make(map[string]bool, len(t.Columns))
		for _, c := range t.Columns {
			cols[c.Name] = true
		}
		m.desiredCols[t.Name] = cols
	}
	return m, nil
}

// Source is where a backup reads a tenant.
type Source struct {
	// Shard names the shard, for the manifest and logs.
	Shard string
	// DB connects to the shard database as the owner role (or a superuser
	// or member of it: transactions switch to the owner role). Row-level
	// security applies to the owner, so a backup reads only the tenant's
	// rows even without its own filter.
	DB *pgxpool.Pool
	// Schema is the tenant's schema (ModeSchema) or the shared schema
	// (ModeShared).
	Schema string
	Mode   Mode
}

// BackupOptions tune one backup.
type BackupOptions struct {
	// Name of the archive; empty: "<tenant id>/<UTC time>-<random>".
	Name string
	// Parallel is how many tables are copied at once, each on its own
	// connection in the same exported snapshot; zero: DefaultParallel. It
	// is capped at the pool's MaxConns.
	Parallel int
}

func (s Source) validate() error {
	if s.DB == nil {
		return fmt.Errorf("%w: no database pool", ErrInvalid)
	}
	if !s.Mode.valid() {
		return fmt.Errorf("%w: mode %q: want %q or %q", ErrInvalid, s.Mode, ModeSchema, ModeShared)
	}
	if err := migrate.ValidateSchemaName(s.Schema); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}

// DefaultName returns the default archive name of a tenant's backup at t.
func DefaultName(tenant tenancy.ID, t time.Time) string {
	var b [3]byte
	rand.Read(b[:])
	return tenant.String() + "/" + t.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

// Backup writes a consistent archive of one tenant: every table in one
// snapshot (REPEATABLE READ, READ ONLY; exported to the other connections
// when Parallel > 1), each streamed with COPY into a gzip-compressed data
// file, then the manifest. In a shared schema only the tenant's rows of the
// tenant-scoped tables are copied, filtered by tenant_id and by row-level
// security; global tables of a shared schema are listed as skipped.
//
// It takes ACCESS SHARE locks on the tables it copies, which block only
// ALTER/DROP of those tables (a migration waits, or fails with its lock
// timeout and retries). Other tenants' reads and writes are not blocked.
// On failure, the partial archive is removed.
func (m *Manager) Backup(ctx context.Context, tenant tenancy.ID, src Source, opts BackupOptions) (*Manifest, error) {
	if tenant.IsZero() {
		return nil, fmt.Errorf("%w: no tenant", ErrInvalid)
	}
	if err := src.validate(); err != nil {
		return nil, err
	}
	started := m.now().UTC()
	name := opts.Name
	if name == "" {
		name = DefaultName(tenant, started)
	}
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	if objs, err := m.store.List(ctx, name); err != nil {
		return nil, err
	} else if len(objs) > 0 {
		return nil, fmt.Errorf("%w: archive %s", ErrExists, name)
	}
	parallel := opts.Parallel
	if parallel <= 0 {
		parallel = DefaultParallel
	}
	log := m.log.With("op", "backup", "tenant", tenant.String(), "shard", src.Shard, "schema", src.Schema, "archive", name)
	log.Info("backup: start", "mode", src.Mode, "parallel", parallel)

	man, err := m.backup(ctx, tenant, src, name, parallel, started, log)
	if err != nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if rerr := m.store.Remove(cctx, name); rerr != nil {
			log.Warn("backup: removing the partial archive failed", "err", rerr)
		}
		log.Error("backup: failed", "err", err)
		return nil, fmt.Errorf("backup: tenant %s from %s/%s: %w", tenant, src.Shard, src.Schema, err)
	}
	log.Info("backup: done", "tables", len(man.Tables), "rows", man.Rows(), "elapsed", man.FinishedAt.Sub(started).Round(time.Millisecond))
	return man, nil
}

// preRead is what a backup reads before its snapshot transaction.
type preRead struct {
	user, serverVersion, ledgerVersion string
	tables                             []*tableInfo
}

func (m *Manager) preRead(ctx context.Context, db *pgxpool.Pool, schema string) (*preRead, error) {
	conn, err := db.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Release()
	p := &preRead{}
	if err := conn.QueryRow(ctx, "SELECT current_user, current_setting('server_version')").Scan(&p.user, &p.serverVersion); err != nil {
		return nil, err
	}
	ok, err := schemaExists(ctx, conn, schema)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%w: schema %s", ErrNotFound, schema)
	}
	if p.tables, err = readTables(ctx, conn, schema); err != nil {
		return nil, err
	}
	p.ledgerVersion = ledgerVersion(ctx, conn, schema)
	return p, nil
}

// ledgerVersion returns the version migrate's ledger records for the
// schema, "" when the shard has no ledger, no row for it, or the role may
// not read it.
func ledgerVersion(ctx context.Context, conn *pgxpool.Conn, schema string) string {
	var v *string
	err := conn.QueryRow(ctx, `SELECT CASE WHEN to_regclass('tenantry.schema_state') IS NOT NULL
		THEN (SELECT version FROM tenantry.schema_state WHERE schema_name = $1) END`, schema).Scan(&v)
	if err != nil || v == nil {
		return ""
	}
	return *v
}

// selectTables splits a schema's tables into those of the tenant and those
// skipped.
func selectTables(all []*tableInfo, mode Mode) (tables []*tableInfo, skipped []Skipped) {
	for _, t := range all {
		if mode == ModeShared && !t.tenant {
			skipped = append(skipped, Skipped{Name: t.name, Reason: "global table of a shared schema (no tenant_id): not the tenant's"})
			continue
		}
		tables = append(tables, t)
	}
	return tables, skipped
}

var snapshotIDRE = regexp.MustCompile(`^[0-9A-Fa-f]+-[0-9A-Fa-f]+(-[0-9A-Fa-f]+)?$`)

func (m *Manager) backup(ctx context.Context, tenant tenancy.ID, src Source, name string, parallel int, started time.Time, log *slog.Logger) (*Manifest, error) {
	pre, err := m.preRead(ctx, src.DB, src.Schema)
	if err != nil {
		return nil, err
	}
	role := roleStmt(pre.user, m.roles.Owner)
	lockSetting := fmt.Sprintf("SET LOCAL lock_timeout = '%dms'", max(m.lockTimeout.Milliseconds(), 1))

	var (
		tx      pgx.Tx
		conn    *pgxpool.Conn
		tables  []*tableInfo
		skipped []Skipped
	)
	defer func() {
		if tx != nil {
			tx.Rollback(context.WithoutCancel(ctx))
		}
		if conn != nil {
			conn.Release()
		}
	}()
	// Lock the tables before the snapshot is taken (LOCK and SET take
	// none), so that no ALTER TABLE commits between the snapshot and the
	// copy; then check that the tables are still the ones locked.
	for attempt := 1; ; attempt++ {
		tables, skipped = selectTables(pre.tables, src.Mode)
		if conn, err = src.DB.Acquire(ctx); err != nil {
			return nil, err
		}
		if tx, err = conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}); err != nil {
			return nil, err
		}
		stmts := []string{role, lockSetting}
		if len(tables) > 0 {
			qs := make([]string, len(tables))
			for i, t := range tables {
				qs[i] = qualified(src.Schema, t.name)
			}
			stmts = append(stmts, "LOCK TABLE "+strings.Join(qs, ", ")+" IN ACCESS SHARE MODE")
		}
		if err := execAll(ctx, tx, stmts...); err != nil {
			return nil, busy(err)
		}
		if err := prepareTx(ctx, tx, tenant.String(), m.lockTimeout.Milliseconds()); err != nil {
			return nil, err
		}
		now, err := readTables(ctx, tx, src.Schema)
		if err != nil {
			return nil, err
		}
		if sameShape(now, pre.tables) {
			break
		}
		tx.Rollback(ctx)
		conn.Release()
		tx, conn = nil, nil
		pre.tables = now
		if attempt == 3 {
			return nil, fmt.Errorf("%w: the tables of %s kept changing during the backup (a migration?)", ErrBusy, src.Schema)
		}
		log.Info("backup: tables changed before the snapshot; again", "attempt", attempt)
	}
	var snapTime time.Time
	if err := tx.QueryRow(ctx, "SELECT transaction_timestamp()").Scan(&snapTime); err != nil {
		return nil, err
	}
	// Each worker holds a connection until the end: never more than the
	// pool has, or the last would wait forever.
	workers := min(parallel, len(tables), int(src.DB.Config().MaxConns))
	var snapshot string
	if workers > 1 {
		if err := tx.QueryRow(ctx, "SELECT pg_export_snapshot()").Scan(&snapshot); err != nil {
			return nil, err
		}
		if !snapshotIDRE.MatchString(snapshot) {
			return nil, fmt.Errorf("backup: unexpected snapshot id %q", snapshot)
		}
	}
	log.Debug("backup: snapshot taken", "snapshot_time", snapTime, "snapshot", snapshot, "tables", len(tables))
	if m.hooks.afterSnapshot != nil {
		m.hooks.afterSnapshot(ctx)
	}

	man := &Manifest{
		Format: Format, Name: name, Tenant: tenant, Mode: src.Mode,
		Source:         SourceInfo{Shard: src.Shard, Schema: src.Schema, ServerVersion: pre.serverVersion},
		DesiredVersion: m.desired.Version(),
		SnapshotTime:   snapTime.UTC(), StartedAt: started,
		CopyFormat: "text", Compression: "gzip", Settings: settingsMap(),
		Tables: make([]Table, len(tables)), Skipped: skipped,
	}
	man.SchemaVersion, man.VersionSource = m.sourceVersion(pre.ledgerVersion, tables, src.Mode)

	// Copy: worker 0 on the snapshot's own transaction, the others on
	// transactions that import it, all set up before the first copy.
	txs := make(chan pgx.Tx, max(workers, 1))
	txs <- tx
	var imported []func()
	releaseImported := func() {
		for _, release := range imported {
			release()
		}
	}
	for w := 1; w < workers; w++ {
		wconn, err := src.DB.Acquire(ctx)
		if err != nil {
			releaseImported()
			return nil, err
		}
		wtx, err := importSnapshot(ctx, wconn, snapshot, role, tenant, m.lockTimeout)
		if err != nil {
			wconn.Release()
			releaseImported()
			return nil, err
		}
		imported = append(imported, func() {
			wtx.Rollback(context.WithoutCancel(ctx)) // read only: nothing to commit
			wconn.Release()
		})
		txs <- wtx
	}
	indexes := make([]int, len(tables))
	for i := range indexes {
		indexes[i] = i
	}
	err = fanout.Run(ctx, workers, indexes, func(ctx context.Context, next <-chan int) error {
		wtx := <-txs
		for i := range next {
			t, err := m.copyTable(ctx, wtx, name, src.Schema, tenant, i, tables[i], log)
			if err != nil {
				return err
			}
			man.Tables[i] = t
		}
		return nil
	})
	releaseImported()
	if err != nil {
		return nil, err
	}
	if man.Sequences, err = readSequences(ctx, tx, src.Schema); err != nil {
		return nil, err
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, err
	}
	tx = nil
	man.FinishedAt = m.now().UTC()
	if err := writeManifest(ctx, m.store, man); err != nil {
		return nil, fmt.Errorf("write manifest: %w", err)
	}
	return man, nil
}

// sameShape reports whether two reads of a schema's tables agree on the
// tables and their columns.
func sameShape(a, b []*tableInfo) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].name != b[i].name || len(a[i].columns) != len(b[i].columns) {
			return false
		}
		for j := range a[i].columns {
			if a[i].columns[j] != b[i].columns[j] {
				return false
			}
		}
	}
	return true
}

// importSnapshot begins a worker transaction in the exported snapshot.
func importSnapshot(ctx context.Context, conn *pgxpool.Conn, snapshot, role string, tenant tenancy.ID, lockTimeout time.Duration) (pgx.Tx, error) {
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, err
	}
	// The id was checked against snapshotIDRE; SET TRANSACTION SNAPSHOT
	// takes no parameters.
	if err := execAll(ctx, tx, "SET TRANSACTION SNAPSHOT "+literal(snapshot), role); err != nil {
		tx.Rollback(ctx)
		return nil, err
	}
	if err := prepareTx(ctx, tx, tenant.String(), lockTimeout.Milliseconds()); err != nil {
		tx.Rollback(ctx)
		return nil, err
	}
	return tx, nil
}

// sourceVersion says which migrate version the source schema is at.
func (m *Manager) sourceVersion(ledger string, tables []*tableInfo, mode Mode) (version, source string) {
	if ledger != "" {
		return ledger, "ledger"
	}
	want := 0
	for name := range m.desiredCols {
		if mode == ModeSchema || m.desiredCols[name][tenantColumn] {
			want++
		}
	}
	if len(tables) != want {
		return "", "unknown"
	}
	for _, t := range tables {
		cols, ok := m.desiredCols[t.name]
		if !ok || len(cols) != len(t.columns) {
			return "", "unknown"
		}
		for _, c := range t.columns {
			if !cols[c.Name] {
				return "", "unknown"
			}
		}
	}
	return m.desired.Version(), "desired"
}

var fileNameRE = regexp.MustCompile(`[^a-z0-9_]+`)

// copyTable streams one table into its data file.
func (m *Manager) copyTable(ctx context.Context, tx pgx.Tx, archive, schema string, tenant tenancy.ID, i int, t *tableInfo, log *slog.Logger) (Table, error) {
	start := time.Now()
	base := fileNameRE.ReplaceAllString(strings.ToLower(t.name), "_")
	if len(base) > 60 {
		base = base[:60]
	}
	entry := Table{Name: t.name, File: fmt.Sprintf("data/%03d-%s.copy.gz", i, base), Columns: t.columns, TenantColumn: -1}
	for j, c := range t.columns {
		if c.Name == tenantColumn {
			entry.TenantColumn = j
		}
	}
	q := "SELECT " + columnList(t.columns) + " FROM " + qualified(schema, t.name)
	if t.tenant {
		q += " WHERE " + ident(tenantColumn) + " = " + tenantExpr
	}
	w, err := m.store.Create(ctx, archive+"/"+entry.File)
	if err != nil {
		return Table{}, err
	}
	stored := &countingWriter{w: w}
	buf := bufio.NewWriterSize(stored, 256<<10)
	gz, _ := gzip.NewWriterLevel(buf, gzip.BestSpeed)
	sum := newStreamSum(entry.TenantColumn, tenant.String())
	// COPY sends a message per row: batch them, and check (hash) on
	// another goroutine while this one compresses.
	hashing := newAsyncWriter(sum)
	batched := bufio.NewWriterSize(io.MultiWriter(hashing, gz), copyChunk)
	_, err = tx.Conn().PgConn().CopyTo(ctx, batched, "COPY ("+q+") TO STDOUT")
	if err == nil {
		err = batched.Flush()
	}
	hashing.Close() // the sums are complete after it
	if err == nil && sum.foreign > 0 {
		// Cannot happen (filter and row-level security); refuse anyway.
		err = fmt.Errorf("%d rows of other tenants read: archive refused", sum.foreign)
	}
	if err == nil {
		err = gz.Close()
	}
	if err == nil {
		err = buf.Flush()
	}
	if err == nil {
		err = w.Close()
	} else {
		w.Abort()
	}
	if err != nil {
		return Table{}, fmt.Errorf("copy %s: %w", t.name, err)
	}
	entry.Rows, entry.Bytes, entry.SHA256, entry.RowHash = sum.rows, sum.bytes, sum.shaHex(), sum.rowHashHex()
	entry.StoredBytes = stored.n
	log.Info("backup: table copied", "table", t.name, "rows", entry.Rows, "bytes", entry.Bytes, "stored", entry.StoredBytes, "elapsed", time.Since(start).Round(time.Millisecond))
	return entry, nil
}

// busy maps a lock timeout (SQLSTATE 55P03) to ErrBusy.
func busy(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "55P03" {
		return fmt.Errorf("%w: %w", ErrBusy, err)
	}
	return err
}

// Verify reads every data file of an archive and checks it against the
// manifest (rows, size, SHA-256, row hash), without a database. A mismatch
// is a *ChecksumError (ErrCorrupt).
func Verify(ctx context.Context, store Store, name string) (*Manifest, error) {
	man, err := ReadManifest(ctx, store, name)
	if err != nil {
		return nil, err
	}
	for _, t := range man.Tables {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		r, err := openTable(ctx, store, name, man.Tenant.String(), t)
		if err != nil {
			return nil, err
		}
		r.drain()
		err = r.result(name, t)
		r.Close()
		if err != nil {
			return nil, err
		}
	}
	return man, nil
}

// copyChunk is the size of the chunks a backup hashes and compresses.
const copyChunk = 256 << 10

// asyncWriter passes what is written to it on to w on a goroutine of its
// own, so that w's work (hashing) overlaps the writer's (compressing).
// Write copies p; Close waits until w has had everything. w must not fail.
type asyncWriter struct {
	ch   chan []byte
	free chan []byte
	done chan struct{}
}

func newAsyncWriter(w io.Writer) *asyncWriter {
	a := &asyncWriter{ch: make(chan []byte, 4), free: make(chan []byte, 6), done: make(chan struct{})}
	go func() {
		defer close(a.done)
		for b := range a.ch {
			w.Write(b)
			select {
			case a.free <- b[:0]:
			default:
			}
		}
	}()
	return a
}

func (a *asyncWriter) Write(p []byte) (int, error) {
	var b []byte
	select {
	case b = <-a.free:
	default:
		b = make([]byte, 0, max(len(p), copyChunk))
	}
	a.ch <- append(b, p...)
	return len(p), nil
}

// Close waits until everything written has been passed on.
func (a *asyncWriter) Close() {
	close(a.ch)
	<-a.done
}
