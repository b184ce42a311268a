package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tenantry/tenantry/migrate"
	"github.com/tenantry/tenantry/registry"
	"github.com/tenantry/tenantry/tenancy/backup"
	"github.com/tenantry/tenantry/tenancy/move"
	"github.com/tenantry/tenantry/tenancy/pitr"
)

// walArchiveEnv names the environment variable with the default WAL
// archive directory of tenants restore -at.
const walArchiveEnv = "TENANTRY_WAL_ARCHIVE"

const restoreAtUsage = `point in time:
  tenantctl tenants restore [-dir DIR] -at TIME [-base-dir DIR] [-wal-archive DIR] -replace TENANT
  tenantctl tenants restore [-dir DIR] -at TIME [-base-dir DIR] [-wal-archive DIR] -as-new -slug SLUG [...] TENANT
TIME is RFC 3339 (2026-11-25T21:00:00Z). TENANT's data at TIME is recovered from
its shard's latest base backup before TIME and the WAL archive (the WAL up to TIME
is archived at the latest archive_timeout after it), exported into -dir and
restored over TENANT or as a new tenant. -base-dir defaults to $` + baseBackupDirEnv + `,
-wal-archive to $` + walArchiveEnv + `.`

// pitrFlags are tenants restore's point-in-time flags.
type pitrFlags struct {
	at, baseDir, walArchive, scratchDir, metricsFile, progress string
}

// addPitrFlags adds the point-in-time flags to tenants restore.
func addPitrFlags(fs *flag.FlagSet) *pitrFlags {
	pf := &pitrFlags{}
	fs.StringVar(&pf.at, "at", "", "restore TENANT's data as it was at this `time` (RFC 3339) instead of an archive")
	fs.StringVar(&pf.baseDir, "base-dir", os.Getenv(baseBackupDirEnv), "base backup `directory` (-at; default $"+baseBackupDirEnv+")")
	fs.StringVar(&pf.walArchive, "wal-archive", os.Getenv(walArchiveEnv), "WAL archive `directory` of the shards' archive_command (-at; default $"+walArchiveEnv+")")
	fs.StringVar(&pf.scratchDir, "scratch-dir", "", "where the scratch cluster is recovered (-at; default the temporary directory); needs room for a base backup")
	fs.StringVar(&pf.metricsFile, "metrics-file", "", "write Prometheus metrics to this `file` at the end (-at; textfile collector format)")
	fs.StringVar(&pf.progress, "progress", "auto", "progress line (-at): auto (when stdout is a terminal), always or never")
	return pf
}

// restoreAtRequest is what tenants restore -at was asked.
type restoreAtRequest struct {
	tenant         string // slug or id of the tenant whose past data is restored
	replace, asNew bool
	nt             registry.NewTenant
	id, mode       string
	roles          migrate.Roles
}

// runRestoreAt runs tenants restore -at.
func runRestoreAt(ctx context.Context, s *registry.Store, m *backup.Manager, pf *pitrFlags, req restoreAtRequest, logger *slog.Logger, stdout io.Writer) error {
	at, err := time.Parse(time.RFC3339Nano, pf.at)
	if err != nil {
		return fmt.Errorf("tenants restore -at: %q is not an RFC 3339 time such as 2026-11-25T21:00:00Z: %w", pf.at, err)
	}
	if pf.baseDir == "" || pf.walArchive == "" {
		return fmt.Errorf("tenants restore -at: give -base-dir and -wal-archive, or set %s and %s", baseBackupDirEnv, walArchiveEnv)
	}
	if req.replace == req.asNew {
		return fmt.Errorf("tenants restore -at: give -replace or -as-new\n%s", restoreAtUsage)
	}
	t, err := s.Tenant(ctx, req.tenant)
	if err != nil {
		return err
	}
	// The data is read where the tenant was at the time: before a move's
	// flip, on the move's source.
	then, err := move.PlacementAt(ctx, s, t, at)
	if err != nil {
		return err
	}
	sh, err := s.Shard(ctx, then.Shard)
	if err != nil {
		return err
	}
	db, err := databaseOf(sh.DSN)
	if err != nil {
		return fmt.Errorf("shard %s: %w", sh.Name, err)
	}
	if then.Shard != t.Placement.Shard || then.Schema != t.Placement.Schema {
		logger.Info("the tenant was elsewhere at that time: reading it there", "shard", then.Shard, "schema", then.Schema, "now_on", t.Placement.Shard)
	}
	src := pitr.Source{Shard: sh.Name, Database: db, Schema: then.Schema, Mode: backupMode(then.Mode)}
	promReg := prometheus.NewRegistry()
	metrics, err := pitr.NewMetrics(promReg)
	if err != nil {
		return err
	}
	defer func() {
		if pf.metricsFile != "" {
			if werr := prometheus.WriteToTextfile(pf.metricsFile, promReg); werr != nil {
				logger.Error("writing -metrics-file", "err", werr)
			}
		}
	}()
	r, err := pitr.New(pitr.Config{Backups: m, BaseBackups: pf.baseDir, WALArchive: pf.walArchive, Roles: req.roles,
		ScratchDir: pf.scratchDir, Logger: logger, Metrics: metrics})
	if err != nil {
		return err
	}
	bar := &pitrProgress{w: stdout}
	opts := pitr.Options{}
	if pf.progress == "always" || (pf.progress == "auto" && isTerminal(stdout)) {
		bar.tty = isTerminal(stdout)
		opts.Progress = bar.update
	}
	defer bar.clear()

	var res *pitr.Result
	if req.replace {
		pool, err := ownerPool(ctx, s, t.Placement.Shard, req.roles.Owner, 1)
		if err != nil {
			return err
		}
		defer pool.Close()
		opts.Restore = backup.RestoreOptions{Tenant: t.ID, Replace: true}
		res, err = r.RestoreAt(ctx, t.ID, at, src, backup.Target{Shard: t.Placement.Shard, DB: pool, Schema: t.Placement.Schema, Mode: src.Mode}, opts)
		if err != nil {
			return err
		}
		bar.clear()
		fmt.Fprintf(stdout, "restored tenant %s (%s) on %s/%s to %s (last transaction replayed: %s) from base backup %s: %d tables, %d rows%s; archive %s; the replaced copy is kept in schema %s, in %s\n",
			t.Slug, t.ID, t.Placement.Shard, t.Placement.Schema, res.At.Format(time.RFC3339Nano), recoveredTo(res), res.BaseBackup.Label,
			res.Restore.Tables, res.Restore.Rows, migrated(res.Restore), res.Archive, orNone(res.Restore.Retired), res.Duration.Round(time.Millisecond))
		return nil
	}

	nt := req.nt
	if nt.ID, err = restoredTenantID(ctx, s, nt.Slug, req.id); err != nil {
		return err
	}
	nt.Mode = registry.Mode(req.mode)
	apply := func(ctx context.Context, dst registry.Shard, schema string) error {
		pool, err := ownerPool(ctx, s, dst.Name, req.roles.Owner, 1)
		if err != nil {
			return err
		}
		defer pool.Close()
		opts.Restore = backup.RestoreOptions{Tenant: nt.ID}
		res, err = r.RestoreAt(ctx, t.ID, at, src, backup.Target{Shard: dst.Name, DB: pool, Schema: schema, Mode: backupMode(nt.Mode)}, opts)
		return err
	}
	created, err := s.CreateTenant(ctx, nt, apply)
	if err != nil {
		return err
	}
	if res == nil {
		return fmt.Errorf("tenants restore: tenant %s existed already and was not restored", created.Slug)
	}
	bar.clear()
	fmt.Fprintf(stdout, "restored tenant %s (%s) as of %s (last transaction replayed: %s) as new tenant %s (%s) on %s/%s (%s mode): %d tables, %d rows%s; archive %s, in %s\n",
		t.Slug, t.ID, res.At.Format(time.RFC3339Nano), recoveredTo(res), created.Slug, created.ID, created.Placement.Shard, created.Placement.Schema,
		created.Placement.Mode, res.Restore.Tables, res.Restore.Rows, migrated(res.Restore), res.Archive, res.Duration.Round(time.Millisecond))
	return nil
}

func recoveredTo(res *pitr.Result) string {
	if res.RecoveredTo.IsZero() {
		return "(unknown)"
	}
	return res.RecoveredTo.UTC().Format(time.RFC3339Nano)
}

// databaseOf returns the database of a shard URL.
func databaseOf(dsn string) (string, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return "", errors.New("DSN is not a URL")
	}
	db := strings.TrimPrefix(u.Path, "/")
	if db == "" {
		return "", errors.New("DSN names no database")
	}
	return db, nil
}

// pitrProgress shows the phase of a point-in-time restore: one redrawn
// line on a terminal, a line per phase otherwise.
type pitrProgress struct {
	w          io.Writer
	tty, drawn bool
}

func (b *pitrProgress) update(p pitr.Progress) {
	line := fmt.Sprintf("[%d/%d] %s: %s (%s)", p.Step, p.Steps, p.Phase, p.Detail, p.Elapsed.Round(100*time.Millisecond))
	if b.tty {
		fmt.Fprintf(b.w, "\r\033[K%s", line)
		b.drawn = true
		return
	}
	fmt.Fprintln(b.w, line)
}

func (b *pitrProgress) clear() {
	if b.drawn {
		fmt.Fprint(b.w, "\r\033[K")
		b.drawn = false
	}
}
