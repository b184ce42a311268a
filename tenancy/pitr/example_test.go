package pitr_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	appmigrate "github.com/tenantry/tenantry/examples/app/ent/migrate"
	"github.com/tenantry/tenantry/migrate"
	"github.com/tenantry/tenantry/tenancy"
	"github.com/tenantry/tenantry/tenancy/backup"
	"github.com/tenantry/tenantry/tenancy/pitr"
)

// A shard archives its WAL with this archive_command (postgresql.conf:
// archive_mode = on, archive_timeout = 60s).
func ExampleArchiveCommand() {
	cmd, err := pitr.ArchiveCommand("/var/lib/tenantry/wal")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(cmd)
	// Output: test ! -f '/var/lib/tenantry/wal'/%f && cp %p '/var/lib/tenantry/wal'/%f.tmp && mv '/var/lib/tenantry/wal'/%f.tmp '/var/lib/tenantry/wal'/%f
}

// Restore a tenant's own schema to its state of an hour ago, over its
// current data (kept in a retired schema).
func ExampleRestorer_RestoreAt() {
	ctx := context.Background()
	tenant := tenancy.MustParseID("aaaaaaaa-0000-4000-8000-00000000000a")

	// Base backups are taken regularly, e.g. nightly.
	if _, err := pitr.BaseBackup(ctx, pitr.BaseBackupOptions{
		Shard: "shard0", DSN: "postgres://postgres@127.0.0.1:5432/app", Dir: "/var/lib/tenantry/base",
	}); err != nil {
		log.Fatal(err)
	}

	desired, err := migrate.NewDesired(appmigrate.Tables)
	if err != nil {
		log.Fatal(err)
	}
	store, err := backup.NewDir("/var/backups/tenantry")
	if err != nil {
		log.Fatal(err)
	}
	backups, err := backup.New(backup.Config{Store: store, Desired: desired})
	if err != nil {
		log.Fatal(err)
	}
	metrics, err := pitr.NewMetrics(prometheus.NewRegistry())
	if err != nil {
		log.Fatal(err)
	}
	r, err := pitr.New(pitr.Config{
		Backups: backups, BaseBackups: "/var/lib/tenantry/base", WALArchive: "/var/lib/tenantry/wal",
		Logger: slog.Default(), Metrics: metrics,
	})
	if err != nil {
		log.Fatal(err)
	}
	owner, err := pgxpool.New(ctx, "postgres://tenantry_owner@127.0.0.1:5432/app")
	if err != nil {
		log.Fatal(err)
	}
	defer owner.Close()

	res, err := r.RestoreAt(ctx, tenant, time.Now().Add(-time.Hour),
		pitr.Source{Shard: "shard0", Database: "app", Schema: tenant.SchemaName(), Mode: backup.ModeSchema},
		backup.Target{Shard: "shard0", DB: owner, Schema: tenant.SchemaName(), Mode: backup.ModeSchema},
		pitr.Options{Restore: backup.RestoreOptions{Replace: true}})
	if err != nil {
		log.Fatal(err) // errors.Is(err, pitr.ErrNotArchived): retry after archive_timeout
	}
	fmt.Println(res.Restore.Rows, "rows as of", res.RecoveredTo, "; old copy in", res.Restore.Retired)
}
