package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tenantry/tenantry/tenancy/pitr"
)

// baseBackupDirEnv names the environment variable with the default
// directory of shards basebackup and tenants restore -at.
const baseBackupDirEnv = "TENANTRY_BASEBACKUP_DIR"

const baseBackupUsage = `usage:
  tenantctl shards basebackup [-dir DIR] [-label LABEL] [-metrics-file FILE] SHARD
Takes a base backup of SHARD with pg_basebackup (connecting with its registered
DSN, which must be a superuser or a REPLICATION role) into DIR/LABEL. The shard
must archive its WAL. -dir defaults to $` + baseBackupDirEnv + `.`

// runShardsBaseBackup runs shards basebackup.
func runShardsBaseBackup(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("shards basebackup", flag.ContinueOnError)
	reg := registryFlag(fs)
	dir := fs.String("dir", os.Getenv(baseBackupDirEnv), "base backup `directory` (default $"+baseBackupDirEnv+")")
	label := fs.String("label", "", "backup `label` (default: <shard>-<UTC time>-<random>)")
	metricsFile := fs.String("metrics-file", "", "write Prometheus metrics to this `file` at the end (textfile collector format)")
	verbose := fs.Bool("v", false, "log progress to stderr")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("shards basebackup: name one shard\n" + baseBackupUsage)
	}
	if *dir == "" {
		return fmt.Errorf("shards basebackup: no directory: give -dir or set %s", baseBackupDirEnv)
	}
	s, err := openRegistry(ctx, *reg, false)
	if err != nil {
		return err
	}
	defer s.Close()
	sh, err := s.Shard(ctx, fs.Arg(0))
	if err != nil {
		return err
	}
	promReg := prometheus.NewRegistry()
	metrics, err := pitr.NewMetrics(promReg)
	if err != nil {
		return err
	}
	logger := slog.New(slog.DiscardHandler)
	if *verbose {
		logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	info, err := pitr.BaseBackup(ctx, pitr.BaseBackupOptions{Shard: sh.Name, DSN: sh.DSN, Dir: *dir, Label: *label, Logger: logger, Metrics: metrics})
	if *metricsFile != "" {
		if werr := prometheus.WriteToTextfile(*metricsFile, promReg); werr != nil {
			return errors.Join(err, fmt.Errorf("-metrics-file: %w", werr))
		}
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "base backup %s of shard %s in %s: %d MB, WAL %s..%s (timeline %d), finished %s, in %s\n",
		info.Label, info.Shard, info.Dir(), info.Bytes>>20, info.StartLSN, info.EndLSN, info.Timeline,
		info.FinishedAt.Format(time.RFC3339), info.FinishedAt.Sub(info.StartedAt).Round(time.Millisecond))
	return nil
}
