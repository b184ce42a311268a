package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/tenantry/tenantry/migrate"
	"github.com/tenantry/tenantry/registry"
)

// registryEnv names the environment variable with the registry's DSN, the
// default of every -registry flag.
const registryEnv = "TENANTRY_REGISTRY"

// registryFlag adds -registry to fs. Its default is empty, not the value of
// $TENANTRY_REGISTRY, which usage output would show with its password:
// openRegistry reads the variable when the flag is not given.
func registryFlag(fs *flag.FlagSet) *string {
	return fs.String("registry", "", "registry database `URL` (default $"+registryEnv+")")
}

// openRegistry opens the registry at dsn, or at $TENANTRY_REGISTRY when dsn
// is empty; with initialize, it creates its tables first if needed.
func openRegistry(ctx context.Context, dsn string, initialize bool) (*registry.Store, error) {
	if dsn == "" {
		dsn = os.Getenv(registryEnv)
	}
	if dsn == "" {
		return nil, errors.New("no registry: give -registry postgres://... or set " + registryEnv)
	}
	s, err := registry.Open(ctx, dsn)
	if err != nil {
		return nil, err
	}
	if initialize {
		if err := s.Init(ctx); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

// openRegistryToList opens the registry for a listing: it creates nothing
// in a database that holds no registry (ErrNotInitialized), and adds to an
// older registry the tables it lacks (Init is additive), so that a listing
// of moves or offboardings works on it.
func openRegistryToList(ctx context.Context, dsn string) (*registry.Store, error) {
	s, err := openRegistry(ctx, dsn, false)
	if err != nil {
		return nil, err
	}
	if _, err := s.Shards(ctx); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.Init(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func shardsCommand() command {
	return command{
		name:    "shards",
		summary: "register shards in the registry, list them with their load, drain them, take base backups (add|list|drain|basebackup)",
		run:     runShards,
	}
}

const shardsUsage = `usage:
  tenantctl shards add   -name NAME -dsn postgres://... [-replica postgres://...] [-region R] [-capacity N] [-draining] [-ensure-roles] [-unchecked] [-owner-role R -app-role R -admin-role R]
  tenantctl shards list
  tenantctl shards drain [-undo] NAME
  tenantctl shards basebackup [-dir DIR] SHARD
Every subcommand takes -registry URL (default $` + registryEnv + `).`

func runShards(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New(shardsUsage)
	}
	sub, args := args[0], args[1:]
	if isHelp(sub) {
		fmt.Fprintln(stdout, shardsUsage)
		return nil
	}
	if sub == "basebackup" { // basebackup.go
		return runShardsBaseBackup(ctx, args, stdout)
	}
	fs := flag.NewFlagSet("shards "+sub, flag.ContinueOnError)
	reg := registryFlag(fs)
	switch sub {
	case "add":
		var sh registry.Shard
		fs.StringVar(&sh.Name, "name", "", "shard `name` (lower-case letters, digits, - and _)")
		fs.StringVar(&sh.DSN, "dsn", "", "primary `URL`, postgres://user[:password]@host:port/database; pools replace the user by their role")
		fs.StringVar(&sh.ReplicaDSN, "replica", "", "read replica `URL` (optional)")
		fs.StringVar(&sh.Region, "region", "", "region label")
		fs.IntVar(&sh.Capacity, "capacity", 1000, "how many tenants the shard may hold")
		draining := fs.Bool("draining", false, "add the shard without accepting new tenants")
		unchecked := fs.Bool("unchecked", false, "add the shard without connecting to it first (it is down now)")
		roles := migrate.DefaultRoles()
		fs.StringVar(&roles.Owner, "owner-role", roles.Owner, "role that owns tenant schemas (checked, or created with -ensure-roles)")
		fs.StringVar(&roles.App, "app-role", roles.App, "application role (checked, or created with -ensure-roles)")
		fs.StringVar(&roles.Admin, "admin-role", roles.Admin, "admin role (checked, or created with -ensure-roles)")
		ensureRoles := fs.Bool("ensure-roles", false, "create the owner/app/admin roles on the shard, connecting with -dsn as given (a superuser)")
		if err := fs.Parse(args); err != nil {
			return err
		}
		if sh.Name == "" || sh.DSN == "" {
			return errors.New("shards add: -name and -dsn are required\n" + shardsUsage)
		}
		sh.Accepting = !*draining
		if sh.Capacity < 1 {
			return fmt.Errorf("shards add: -capacity %d: a shard holds at least one tenant (drain it with -draining instead)", sh.Capacity)
		}
		if err := registry.ValidateShardDSN(sh.DSN); err != nil {
			return err
		}
		if *ensureRoles {
			if err := ensureShardRoles(ctx, sh.DSN, roles); err != nil {
				return fmt.Errorf("shards add %s: ensure roles: %w", sh.Name, err)
			}
		}
		if !*unchecked {
			// A shard nobody can reach, or without the roles, would be
			// given tenants whose provisioning then fails.
			if err := checkShard(ctx, sh.DSN, roles); err != nil {
				return fmt.Errorf("shards add %s: %w (add -unchecked to register it anyway)", sh.Name, err)
			}
		}
		s, err := openRegistry(ctx, *reg, true)
		if err != nil {
			return err
		}
		defer s.Close()
		if err := s.AddShard(ctx, sh); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "added %s\n", sh)
		return nil
	case "list":
		if err := fs.Parse(args); err != nil {
			return err
		}
		s, err := openRegistry(ctx, *reg, false)
		if err != nil {
			return err
		}
		defer s.Close()
		shards, err := s.Shards(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SHARD\tREGION\tTENANTS\tCAPACITY\tACCEPTING\tPRIMARY\tREPLICA")
		for _, sh := range shards {
			replica := "-"
			if sh.ReplicaDSN != "" {
				replica = registry.Redact(sh.ReplicaDSN)
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%t\t%s\t%s\n", sh.Name, orDash(sh.Region), sh.Tenants, sh.Capacity, sh.Accepting, registry.Redact(sh.DSN), replica)
		}
		return tw.Flush()
	case "drain":
		undo := fs.Bool("undo", false, "accept new tenants again")
		if err := fs.Parse(args); err != nil {
			return err
		}
		if fs.NArg() != 1 {
			return errors.New("shards drain: name one shard\n" + shardsUsage)
		}
		s, err := openRegistry(ctx, *reg, false)
		if err != nil {
			return err
		}
		defer s.Close()
		name := fs.Arg(0)
		if err := s.SetAccepting(ctx, name, *undo); err != nil {
			return err
		}
		if *undo {
			fmt.Fprintf(stdout, "shard %s accepts new tenants again\n", name)
		} else {
			fmt.Fprintf(stdout, "shard %s drained: it keeps serving its tenants and takes no new ones (move tenants off to empty it)\n", name)
		}
		return nil
	}
	return fmt.Errorf("shards: unknown subcommand %q\n%s", sub, shardsUsage)
}

// ensureShardRoles creates the tenantry roles on a shard database.
func ensureShardRoles(ctx context.Context, dsn string, roles migrate.Roles) error {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return err
	}
	db := stdlib.OpenDB(*cfg)
	defer func(db *sql.DB) { db.Close() }(db)
	return migrate.EnsureRoles(ctx, db, roles)
}

// checkShard connects to the shard's database as dsn gives it and checks
// that the roles tenantry connects as exist.
func checkShard(ctx context.Context, dsn string, roles migrate.Roles) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("connect: %s", registry.Redact(err.Error()))
	}
	defer conn.Close(context.WithoutCancel(ctx))
	want := []string{roles.Owner, roles.App, roles.Admin}
	var missing []string
	if err := conn.QueryRow(ctx, `SELECT coalesce(array_agg(r), '{}') FROM unnest($1::text[]) r WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r)`, want).Scan(&missing); err != nil {
		return fmt.Errorf("read roles: %w", err)
	}
	if len(missing) > 0 {
		return fmt.Errorf("roles %s do not exist on the shard: name the deployment's roles (-owner-role, -app-role, -admin-role), add -ensure-roles (with a superuser's DSN), or create them", strings.Join(missing, ", "))
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
