package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	appmigrate "github.com/tenantry/tenantry/examples/app/ent/migrate"
	"github.com/tenantry/tenantry/migrate"
	"github.com/tenantry/tenantry/registry"
	"github.com/tenantry/tenantry/tenancy"
	"github.com/tenantry/tenantry/tenancy/backup"
)

// backupDirEnv names the environment variable with the default archive
// directory of tenants backup, restore and backups.
const backupDirEnv = "TENANTRY_BACKUP_DIR"

const backupUsage = `usage:
  tenantctl tenants backup  [-dir DIR] [-name NAME] [-parallel N] TENANT
  tenantctl tenants restore [-dir DIR] -archive NAME -replace TENANT
  tenantctl tenants restore [-dir DIR] -archive NAME -as-new -slug SLUG [-id UUID] [-plan P]
                            [-mode schema|shared|dedicated] [-shard NAME] [-schema NAME]
  tenantctl tenants backups [-dir DIR] [TENANT]
` + restoreAtUsage + `
TENANT is a slug or a tenant id. -dir defaults to $` + backupDirEnv + `. Every
subcommand takes -registry URL and -owner-role, -app-role, -admin-role.`

// isBackupSubcommand reports whether tenants SUB is one of this file's.
func isBackupSubcommand(sub string) bool {
	return sub == "backup" || sub == "restore" || sub == "backups"
}

// runTenantsBackup runs tenants backup, restore and backups.
func runTenantsBackup(ctx context.Context, sub string, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("tenants "+sub, flag.ContinueOnError)
	reg := registryFlag(fs)
	dir := fs.String("dir", os.Getenv(backupDirEnv), "archive `directory` (default $"+backupDirEnv+")")
	roles := migrate.DefaultRoles()
	fs.StringVar(&roles.Owner, "owner-role", roles.Owner, "role that owns tenant schemas (backups and restores run as it)")
	fs.StringVar(&roles.App, "app-role", roles.App, "application role")
	fs.StringVar(&roles.Admin, "admin-role", roles.Admin, "admin role")
	verbose := fs.Bool("v", false, "log progress to stderr")
	var (
		name, archive, mode, id string
		parallel                int
		replace, asNew, other   bool
		nt                      registry.NewTenant
		pf                      = &pitrFlags{} // pitr.go
	)
	nargs := 1
	switch sub {
	case "backup":
		fs.StringVar(&name, "name", "", "archive `name` (default: <tenant id>/<UTC time>-<random>)")
		fs.IntVar(&parallel, "parallel", backup.DefaultParallel, "tables copied at once, in one snapshot")
	case "restore":
		fs.StringVar(&archive, "archive", "", "archive `name` to restore (see tenants backups)")
		fs.BoolVar(&replace, "replace", false, "replace TENANT's data; the current copy is kept in a retired schema")
		fs.BoolVar(&asNew, "as-new", false, "restore as a new tenant (a clone), registered and placed like tenants create")
		fs.BoolVar(&other, "from-other-tenant", false, "with -replace: the archive is another tenant's, and its data is to replace TENANT's (a clone over a live tenant)")
		fs.StringVar(&nt.Slug, "slug", "", "slug of the new tenant (-as-new)")
		fs.StringVar(&id, "id", "", "tenant `UUID` of the new tenant (-as-new; default: random)")
		fs.StringVar(&nt.Plan, "plan", registry.DefaultPlan, "plan of the new tenant (-as-new)")
		fs.StringVar(&mode, "mode", string(registry.ModeSchema), "placement of the new tenant: schema, shared or dedicated (-as-new)")
		fs.StringVar(&nt.Shard, "shard", "", "shard of the new tenant (-as-new; default: the least loaded accepting shard)")
		fs.StringVar(&nt.Schema, "schema", "", "schema of the new tenant (-as-new)")
		pf = addPitrFlags(fs)
	case "backups":
		nargs = -1
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if sub == "backup" && parallel < 1 {
		return fmt.Errorf("tenants backup: -parallel %d: at least 1 table at a time", parallel)
	}
	if sub == "restore" && asNew && pf.at == "" {
		nargs = 0
	}
	if (nargs >= 0 && fs.NArg() != nargs) || (nargs < 0 && fs.NArg() > 1) {
		return fmt.Errorf("tenants %s: wrong number of arguments\n%s", sub, backupUsage)
	}
	if *dir == "" {
		return fmt.Errorf("tenants %s: no archive directory: give -dir or set %s", sub, backupDirEnv)
	}
	store, err := backup.NewDir(*dir)
	if err != nil {
		return err
	}
	if sub == "backups" && fs.NArg() == 0 {
		return listBackups(ctx, store, tenancy.ID{}, stdout)
	}
	s, err := openRegistry(ctx, *reg, false)
	if err != nil {
		return err
	}
	defer s.Close()
	if sub == "backups" {
		t, err := s.Tenant(ctx, fs.Arg(0))
		if err != nil {
			return err
		}
		return listBackups(ctx, store, t.ID, stdout)
	}
	// Tenant schemas come from the example app's Ent graph, as in tenants
	// create; an application builds its Manager on its own graph.
	desired, err := migrate.NewDesired(appmigrate.Tables)
	if err != nil {
		return err
	}
	logger := slog.New(slog.DiscardHandler)
	if *verbose {
		logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	m, err := backup.New(backup.Config{Store: store, Desired: desired, Roles: roles, Logger: logger})
	if err != nil {
		return err
	}

	if sub == "restore" && pf.at != "" { // pitr.go
		if archive != "" {
			return errors.New("tenants restore: -archive and -at exclude each other")
		}
		return runRestoreAt(ctx, s, m, pf, restoreAtRequest{tenant: fs.Arg(0), replace: replace, asNew: asNew, nt: nt, id: id, mode: mode, roles: roles}, logger, stdout)
	}

	switch {
	case sub == "backup":
		t, err := s.Tenant(ctx, fs.Arg(0))
		if err != nil {
			return err
		}
		pool, err := ownerPool(ctx, s, t.Placement.Shard, roles.Owner, parallel)
		if err != nil {
			return err
		}
		defer pool.Close()
		start := time.Now()
		man, err := m.Backup(ctx, t.ID, backup.Source{Shard: t.Placement.Shard, DB: pool, Schema: t.Placement.Schema, Mode: backupMode(t.Placement.Mode)},
			backup.BackupOptions{Name: name, Parallel: parallel})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "backed up tenant %s (%s) from %s/%s: archive %s, %d tables, %d rows, schema version %s, snapshot %s, in %s\n",
			t.Slug, t.ID, t.Placement.Shard, t.Placement.Schema, man.Name, len(man.Tables), man.Rows(),
			orNone(man.SchemaVersion), man.SnapshotTime.Format(time.RFC3339), time.Since(start).Round(time.Millisecond))
		return nil

	case sub == "restore" && asNew:
		if archive == "" || nt.Slug == "" {
			return fmt.Errorf("tenants restore -as-new: -archive and -slug are required\n%s", backupUsage)
		}
		if replace {
			return errors.New("tenants restore: -replace and -as-new exclude each other")
		}
		// The restore is the new tenant's provisioning: registered and
		// placed, restored into its placement, then activated.
		if nt.ID, err = restoredTenantID(ctx, s, nt.Slug, id); err != nil {
			return err
		}
		nt.Mode = registry.Mode(mode)
		var res *backup.RestoreResult
		apply := func(ctx context.Context, sh registry.Shard, schema string) error {
			pool, err := ownerPool(ctx, s, sh.Name, roles.Owner, 1)
			if err != nil {
				return err
			}
			defer pool.Close()
			res, err = m.Restore(ctx, archive, backup.Target{Shard: sh.Name, DB: pool, Schema: schema, Mode: backupMode(nt.Mode)},
				backup.RestoreOptions{Tenant: nt.ID})
			return err
		}
		t, err := s.CreateTenant(ctx, nt, apply)
		if err != nil {
			return err
		}
		if res == nil {
			return fmt.Errorf("tenants restore: tenant %s existed already and was not restored", t.Slug)
		}
		fmt.Fprintf(stdout, "restored archive %s as new tenant %s (%s) on %s/%s (%s mode): %d tables, %d rows%s, in %s\n",
			archive, t.Slug, t.ID, t.Placement.Shard, t.Placement.Schema, t.Placement.Mode, res.Tables, res.Rows,
			migrated(res), res.Duration.Round(time.Millisecond))
		return nil

	default: // restore over an existing tenant
		if archive == "" {
			return fmt.Errorf("tenants restore: -archive is required\n%s", backupUsage)
		}
		t, err := s.Tenant(ctx, fs.Arg(0))
		if err != nil {
			return err
		}
		if !replace {
			return fmt.Errorf("tenants restore: tenant %s exists: add -replace to replace its data (the current copy is kept in a retired schema), or restore with -as-new", t.Slug)
		}
		// A typo in -archive must not swap another tenant's data into a
		// live tenant: that takes saying so.
		man, err := backup.ReadManifest(ctx, store, archive)
		if err != nil {
			return err
		}
		if man.Tenant != t.ID && !other {
			return fmt.Errorf("tenants restore: archive %s holds tenant %s's data, not %s's (%s): check -archive (tenants backups %s lists its archives), or add -from-other-tenant to replace %s's data with it",
				archive, man.Tenant, t.Slug, t.ID, t.Slug, t.Slug)
		}
		pool, err := ownerPool(ctx, s, t.Placement.Shard, roles.Owner, 1)
		if err != nil {
			return err
		}
		defer pool.Close()
		res, err := m.Restore(ctx, archive, backup.Target{Shard: t.Placement.Shard, DB: pool, Schema: t.Placement.Schema, Mode: backupMode(t.Placement.Mode)},
			backup.RestoreOptions{Tenant: t.ID, Replace: true})
		if err != nil {
			return err
		}
		from := ""
		if res.Clone {
			from = " (data of tenant " + res.Source.String() + ")"
		}
		fmt.Fprintf(stdout, "restored archive %s over tenant %s (%s)%s on %s/%s: %d tables, %d rows%s; the replaced copy is kept in schema %s, in %s\n",
			archive, t.Slug, t.ID, from, t.Placement.Shard, t.Placement.Schema, res.Tables, res.Rows, migrated(res),
			orNone(res.Retired), res.Duration.Round(time.Millisecond))
		return nil
	}
}

// listBackups prints the complete archives, of one tenant or (zero id) of
// all.
func listBackups(ctx context.Context, store backup.Store, tenant tenancy.ID, stdout io.Writer) error {
	names, err := backup.Archives(ctx, store, "")
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ARCHIVE\tTENANT\tMODE\tSOURCE\tVERSION\tTABLES\tROWS\tSNAPSHOT")
	for _, n := range names {
		man, err := backup.ReadManifest(ctx, store, n)
		if err != nil {
			fmt.Fprintf(tw, "%s\t(unreadable: %v)\n", n, err)
			continue
		}
		if !tenant.IsZero() && man.Tenant != tenant {
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s/%s\t%s\t%d\t%d\t%s\n", n, man.Tenant, man.Mode, man.Source.Shard, man.Source.Schema,
			orNone(man.SchemaVersion), len(man.Tables), man.Rows(), man.SnapshotTime.Format(time.RFC3339))
	}
	return tw.Flush()
}

// ownerPool opens a small pool on a registered shard as the owner role,
// with room for parallel copies.
func ownerPool(ctx context.Context, s *registry.Store, shard, owner string, parallel int) (*pgxpool.Pool, error) {
	sh, err := s.Shard(ctx, shard)
	if err != nil {
		return nil, err
	}
	dsn, err := registry.WithUser(sh.DSN, owner)
	if err != nil {
		return nil, err
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("shard %s: %s", shard, registry.Redact(err.Error()))
	}
	cfg.MaxConns = int32(max(parallel, 1) + 3)
	return pgxpool.NewWithConfig(ctx, cfg)
}

// backupMode maps a registry placement mode: a dedicated placement is an
// own schema on a shard of its own.
func backupMode(m registry.Mode) backup.Mode {
	if m == registry.ModeShared {
		return backup.ModeShared
	}
	return backup.ModeSchema
}

func migrated(res *backup.RestoreResult) string {
	if !res.Migrated {
		return ""
	}
	return fmt.Sprintf(", migrated from schema version %s to %s", orNone(res.FromVersion), res.ToVersion)
}

func orNone(s string) string {
	if s == "" {
		return "(unknown)"
	}
	return s
}

// restoredTenantID is the id of a tenant restored as new: id if given, else
// that of a provisioning tenant of the slug (an earlier restore of it
// failed, and the same command resumes it, as its error says), else a new
// one.
func restoredTenantID(ctx context.Context, s *registry.Store, slug, id string) (tenancy.ID, error) {
	if id != "" {
		return tenancy.ParseID(id)
	}
	if cur, err := s.Tenant(ctx, slug); err == nil && cur.State == registry.Provisioning {
		return cur.ID, nil
	}
	return tenancy.NewID(), nil
}
