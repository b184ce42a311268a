package pitr

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenantry/tenantry/internal/pgserver"
	"github.com/tenantry/tenantry/migrate"
	"github.com/tenantry/tenantry/tenancy"
	"github.com/tenantry/tenantry/tenancy/backup"
)

// Config configures a Restorer.
type Config struct {
	// Backups exports the tenant from the scratch cluster into its Store
	// (the archive at T is kept there; see Result.Archive) and restores it.
	Backups *backup.Manager
	// BaseBackups is the directory BaseBackup writes into.
	BaseBackups string
	// WALArchive is the directory the shards' archive_command copies WAL
	// into (see ArchiveCommand). Ignored when RestoreCommand is set.
	WALArchive string
	// RestoreCommand overrides the restore_command that fetches WAL from
	// WALArchive, for an archive kept by another tool.
	RestoreCommand string
	// Roles are the shard roles; zero: migrate.DefaultRoles(). The export
	// connects to the scratch cluster as Roles.Owner.
	Roles migrate.Roles
	// ScratchDir is where scratch clusters are created (each in a private
	// directory of its own, removed at the end); empty: os.TempDir(). It
	// needs room for a whole base backup of the shard plus the WAL
	// replayed. When we run as root it must be reachable by the postgres
	// user.
	ScratchDir string
	// ScratchSettings override the scratch server's settings (e.g.
	// shared_buffers, or max_prepared_transactions when the shard uses
	// prepared transactions).
	ScratchSettings map[string]string
	// BinDir holds the server binaries; empty: pgserver.FindBinDir.
	BinDir string
	// Logger receives progress; nil: none.
	Logger *slog.Logger
	// Metrics records restores; nil: none.
	Metrics *Metrics
}

// Restorer restores tenants to points in time. It is safe for concurrent
// use; each restore has its own scratch cluster.
type Restorer struct {
	cfg            Config
	binDir         string
	restoreCommand string
	log            *slog.Logger
	now            func() time.Time
}

// New returns a Restorer.
func New(cfg Config) (*Restorer, error) {
	if cfg.Backups == nil || cfg.BaseBackups == "" || (cfg.WALArchive == "" && cfg.RestoreCommand == "") {
		return nil, fmt.Errorf("%w: Config needs Backups, BaseBackups and WALArchive (or RestoreCommand)", ErrInvalid)
	}
	r := &Restorer{cfg: cfg, binDir: cfg.BinDir, restoreCommand: cfg.RestoreCommand, log: cfg.Logger, now: time.Now}
	if r.cfg.Roles == (migrate.Roles{}) {
		r.cfg.Roles = migrate.DefaultRoles()
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.restoreCommand == "" {
		c, err := pgserver.RestoreCommand(cfg.WALArchive)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		r.restoreCommand = c
	}
	if r.binDir == "" {
		dir, err := pgserver.FindBinDir()
		if err != nil {
			return nil, fmt.Errorf("pitr: %w", err)
		}
		r.binDir = dir
	}
	return r, nil
}

// Source says where the tenant was at the requested time.
type Source struct {
	// Shard is the shard's name, as its base backups record it.
	Shard string
	// Database is the shard database holding tenant schemas.
	Database string
	// Schema is the tenant's own schema (ModeSchema) or the shared schema
	// (ModeShared).
	Schema string
	Mode   backup.Mode
}

// Options tune one point-in-time restore.
type Options struct {
	// Restore says how to restore: Replace over the tenant, or Tenant
	// set to a new id for a clone.
	Restore backup.RestoreOptions
	// Archive names the export kept in the backup store; empty:
	// "<tenant id>/pitr-<T UTC>-<random>".
	Archive string
	// Parallel is how many tables the export copies at once; zero:
	// backup.DefaultParallel.
	Parallel int
	// Progress, when set, is called at the start of each phase.
	Progress func(Progress)
}

// Phases of a point-in-time restore, as Progress and the metrics name them.
const (
	PhaseExtract = "extract" // base backup unpacked into the scratch directory
	PhaseRecover = "recover" // WAL replayed up to T, promoted
	PhaseExport  = "export"  // tenant backed up from the scratch cluster
	PhaseCleanup = "cleanup" // scratch cluster stopped and removed
	PhaseRestore = "restore" // archive restored into the target
)

// Progress reports the start of a phase.
type Progress struct {
	Phase string
	// Step and Steps count phases, 1-based.
	Step, Steps int
	// Detail says what the phase works on.
	Detail string
	// Elapsed is the time since RestoreAt started.
	Elapsed time.Duration
}

// Result reports a point-in-time restore.
type Result struct {
	Tenant tenancy.ID
	At     time.Time
	// BaseBackup is the base backup recovery started from.
	BaseBackup *BaseBackupInfo
	// RecoveredTo is the commit time of the last transaction replayed (at
	// or before At), as the scratch server logged it; zero if unknown.
	RecoveredTo time.Time
	// Archive is the tenant's export at At, kept in the backup store.
	Archive string
	// Export is its manifest; Restore the restore's result.
	Export  *backup.Manifest
	Restore *backup.RestoreResult
	// Phases are the durations of the phases.
	Phases   map[string]time.Duration
	Duration time.Duration
}

// RestoreAt restores tenant to its state at time at: it recovers a scratch
// cluster from the latest base backup of src.Shard that finished before
// at, replaying the archived WAL up to at, exports the tenant from src's
// placement there with tenancy/backup, and restores the export into dst
// (opts.Restore: replace, or clone as a new tenant). The scratch cluster is
// removed whatever happens.
//
// Errors: ErrFuture, ErrNoBaseBackup, ErrNotArchived (the archive holds no
// transaction after at yet: the WAL up to at is archived at the latest
// archive_timeout after at), *RecoveryError (ErrRecovery), and the errors
// of backup.Manager.Backup and Restore. Nothing at the target changes
// before the final restore, and that restore changes nothing when it
// fails; the export stays in the backup store (Result.Archive) either way
// once it was written.
func (r *Restorer) RestoreAt(ctx context.Context, tenant tenancy.ID, at time.Time, src Source, dst backup.Target, opts Options) (*Result, error) {
	start := time.Now()
	res := &Result{Tenant: tenant, At: at.UTC(), Phases: map[string]time.Duration{}}
	log := r.log.With("op", "pitr", "tenant", tenant.String(), "at", res.At, "shard", src.Shard, "schema", src.Schema)
	panicking := true
	defer func() {
		if panicking { // the scratch cluster was removed by restoreAt's deferred cleanup
			r.cfg.Metrics.restore("panic", time.Since(start))
		}
	}()
	err := r.restoreAt(ctx, res, start, log, tenant, at, src, dst, opts)
	panicking = false
	res.Duration = time.Since(start)
	r.cfg.Metrics.restore(resultLabel(err), res.Duration)
	if err != nil {
		log.Error("pitr: failed", "err", err, "elapsed", res.Duration.Round(time.Millisecond))
		return nil, fmt.Errorf("pitr: restore tenant %s to %s: %w", tenant, res.At.Format(time.RFC3339Nano), err)
	}
	return res, nil
}

func (r *Restorer) restoreAt(ctx context.Context, res *Result, start time.Time, log *slog.Logger, tenant tenancy.ID, at time.Time, src Source, dst backup.Target, opts Options) error {
	if tenant.IsZero() || src.Shard == "" || src.Database == "" {
		return fmt.Errorf("%w: need a tenant, the source shard and its database", ErrInvalid)
	}
	if err := migrate.ValidateSchemaName(src.Schema); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if now := r.now(); at.After(now) {
		return fmt.Errorf("%w: %s is %s after now", ErrFuture, res.At.Format(time.RFC3339Nano), at.Sub(now).Round(time.Millisecond))
	}
	bases, err := BaseBackups(r.cfg.BaseBackups, src.Shard)
	if err != nil {
		return err
	}
	base := latestBefore(bases, at)
	if base == nil {
		first := "none"
		if len(bases) > 0 {
			first = "the first finished at " + bases[0].FinishedAt.Format(time.RFC3339)
		}
		return fmt.Errorf("%w: %d base backup(s) of shard %s in %s, %s", ErrNoBaseBackup, len(bases), src.Shard, r.cfg.BaseBackups, first)
	}
	res.BaseBackup = base
	if err := r.checkArchived(at); err != nil {
		return err
	}
	log.Info("pitr: start", "base_backup", base.Label, "base_finished", base.FinishedAt, "mode", src.Mode)

	const steps = 5
	phaseStart, step, current := time.Now(), 0, ""
	phase := func(name, detail string) {
		if current != "" {
			d := time.Since(phaseStart)
			res.Phases[current] = d
			r.cfg.Metrics.phase(current, d)
			log.Info("pitr: phase done", "phase", current, "elapsed", d.Round(time.Millisecond))
		}
		step++
		phaseStart, current = time.Now(), name
		if name == "" {
			return
		}
		log.Info("pitr: phase", "phase", name, "detail", detail)
		if opts.Progress != nil {
			opts.Progress(Progress{Phase: name, Step: step, Steps: steps, Detail: detail, Elapsed: time.Since(start)})
		}
	}

	phase(PhaseExtract, fmt.Sprintf("base backup %s (%d MB)", base.Label, base.Bytes>>20))
	sc, err := newScratch(r.cfg.ScratchDir, r.binDir)
	if err != nil {
		return fmt.Errorf("scratch cluster: %w", err)
	}
	r.cfg.Metrics.scratchDelta(1)
	cleanedUp := false
	cleanup := func() error {
		if cleanedUp {
			return nil
		}
		cleanedUp = true
		defer r.cfg.Metrics.scratchDelta(-1)
		return sc.remove()
	}
	// Always, also on panic: the scratch cluster holds every tenant of
	// the shard.
	defer func() {
		if cerr := cleanup(); cerr != nil {
			log.Warn("pitr: removing the scratch cluster", "dir", sc.dir, "err", cerr)
		}
	}()
	if err := sc.extract(ctx, filepath.Join(base.dir, "base.tar")); err != nil {
		return fmt.Errorf("extract base backup %s: %w", base.Label, err)
	}
	if err := sc.configure(); err != nil {
		return fmt.Errorf("scratch cluster: %w", err)
	}

	phase(PhaseRecover, "replaying WAL to "+res.At.Format(time.RFC3339Nano))
	settings := sc.settings(r.restoreCommand, at, r.cfg.ScratchSettings)
	if _, set := r.cfg.ScratchSettings["max_connections"]; !set {
		settings["max_connections"] = strconv.Itoa(max(opts.Parallel, backup.DefaultParallel) + 20)
	}
	if err := sc.start(ctx, r.binDir, settings, r.cfg.Roles.Owner, src.Database); err != nil {
		return err
	}
	res.RecoveredTo = sc.recoveredTo()
	log.Info("pitr: recovered", "last_transaction", res.RecoveredTo)

	phase(PhaseExport, fmt.Sprintf("tenant %s from %s", tenant, src.Schema))
	pool, err := sc.pool(ctx, r.cfg.Roles.Owner, src.Database, max(opts.Parallel, backup.DefaultParallel)+2)
	if err != nil {
		return err
	}
	name := opts.Archive
	if name == "" {
		var b [3]byte
		rand.Read(b[:])
		name = tenant.String() + "/pitr-" + res.At.Format("20060102T150405.000000Z") + "-" + hex.EncodeToString(b[:])
	}
	res.Export, err = r.cfg.Backups.Backup(ctx, tenant, backup.Source{Shard: src.Shard + "@" + res.At.Format(time.RFC3339Nano), DB: pool, Schema: src.Schema, Mode: src.Mode},
		backup.BackupOptions{Name: name, Parallel: opts.Parallel})
	pool.Close()
	if err != nil {
		return fmt.Errorf("export from the scratch cluster: %w", err)
	}
	res.Archive = name

	// The scratch cluster is not needed any more: free its memory and disk
	// before the restore.
	phase(PhaseCleanup, "scratch cluster")
	if err := cleanup(); err != nil {
		log.Warn("pitr: removing the scratch cluster", "dir", sc.dir, "err", err)
	}

	phase(PhaseRestore, fmt.Sprintf("into %s/%s", dst.Shard, dst.Schema))
	if res.Restore, err = r.cfg.Backups.Restore(ctx, name, dst, opts.Restore); err != nil {
		return err
	}
	phase("", "")
	log.Info("pitr: done", "archive", name, "rows", res.Restore.Rows, "recovered_to", res.RecoveredTo)
	return nil
}

// checkArchived refuses early when no archived segment can hold a
// transaction after at: every segment was archived before at (cp gives the
// copy the time it was made). Recovery proves the rest.
func (r *Restorer) checkArchived(at time.Time) error {
	if r.cfg.RestoreCommand != "" {
		return nil // someone else's archive
	}
	entries, err := os.ReadDir(r.cfg.WALArchive)
	if err != nil {
		return fmt.Errorf("WAL archive: %w", err)
	}
	var newest time.Time
	for _, e := range entries {
		if len(e.Name()) != 24 { // a segment: timeline, log, segment in hex
			continue
		}
		if fi, err := e.Info(); err == nil && fi.ModTime().After(newest) {
			newest = fi.ModTime()
		}
	}
	if !newest.After(at) {
		return fmt.Errorf("%w: the newest segment in %s was archived at %s, before %s: wait for archive_timeout and retry, or run SELECT pg_switch_wal() on the shard",
			ErrNotArchived, r.cfg.WALArchive, newest.UTC().Format(time.RFC3339Nano), at.UTC().Format(time.RFC3339Nano))
	}
	return nil
}

// pool opens a pool on the scratch cluster's socket.
func (s *scratch) pool(ctx context.Context, user, database string, conns int) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig("sslmode=disable")
	if err != nil {
		return nil, err
	}
	cfg.ConnConfig.Host, cfg.ConnConfig.Port = s.dir, uint16(s.port)
	cfg.ConnConfig.User, cfg.ConnConfig.Database = user, database
	cfg.ConnConfig.Fallbacks = nil
	cfg.MaxConns = int32(conns)
	return pgxpool.NewWithConfig(ctx, cfg)
}

func resultLabel(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrNoBaseBackup):
		return "no_base_backup"
	case errors.Is(err, ErrFuture):
		return "future"
	case errors.Is(err, ErrNotArchived):
		return "not_archived"
	case errors.Is(err, ErrRecovery):
		return "recovery"
	}
	return "error"
}
