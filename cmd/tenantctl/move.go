package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"text/tabwriter"
	"time"

	appmigrate "github.com/tenantry/tenantry/examples/app/ent/migrate"
	"github.com/tenantry/tenantry/migrate"
	"github.com/tenantry/tenantry/registry"
	"github.com/tenantry/tenantry/registry/provision"
	"github.com/tenantry/tenantry/tenancy/move"
)

const moveUsage = `
  tenantctl tenants move  -to SHARD [-mode schema|dedicated] TENANT   move TENANT to SHARD while it is served
  tenantctl tenants move  -resume [-force] TENANT                     finish a move whose mover died
  tenantctl tenants move  -abort TENANT                               roll a move back (before its flip)
  tenantctl tenants move  -drop-retired RETENTION                      drop sources retired by moves longer ago (e.g. 168h)
  tenantctl tenants moves [TENANT]                                    list moves
  move also takes -progress auto|always|never, -v (logs to stderr), -router-grace, -drain-timeout,
  -sync-timeout and the role flags.`

// runTenantsMove runs tenants move and tenants moves.
func runTenantsMove(ctx context.Context, sub string, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("tenants "+sub, flag.ContinueOnError)
	reg := registryFlag(fs)
	roles := migrate.DefaultRoles()
	fs.StringVar(&roles.Owner, "owner-role", roles.Owner, "role that owns tenant schemas (creates the target schema)")
	fs.StringVar(&roles.App, "app-role", roles.App, "application role (fenced on the source during the cutover)")
	fs.StringVar(&roles.Admin, "admin-role", roles.Admin, "admin role (fenced on the source during the cutover)")
	var (
		to, mode, progress   string
		resume, abort, force bool
		verbose              bool
		cfg                  move.Config
		dropRetired          time.Duration
	)
	if sub == "move" {
		fs.StringVar(&to, "to", "", "target shard `name`")
		fs.StringVar(&mode, "mode", string(registry.ModeSchema), "target placement: schema (own schema) or dedicated (the shard must hold no tenant)")
		fs.BoolVar(&resume, "resume", false, "resume the tenant's move whose mover died (no heartbeat for -stale-after)")
		fs.BoolVar(&force, "force", false, "with -resume: take the move over even if its mover's heartbeat is recent (only when it is known to be dead); with -to: move to a drained or full shard")
		fs.BoolVar(&abort, "abort", false, "abort the tenant's move: it is served by its source as before")
		fs.DurationVar(&dropRetired, "drop-retired", 0, "drop the sources that moves retired longer than this `retention` ago, on every shard (no TENANT)")
		fs.StringVar(&progress, "progress", "auto", "progress line: auto (when stdout is a terminal), always or never")
		fs.BoolVar(&verbose, "v", false, "log each phase to stderr")
		fs.DurationVar(&cfg.RouterGrace, "router-grace", 25*time.Millisecond, "wait between the registry fence and the database fence")
		fs.DurationVar(&cfg.DrainTimeout, "drain-timeout", 2*time.Second, "longest wait for writes under way at the fence, and, out of a shared schema, for unscoped transactions holding an older snapshot (then they are ended)")
		fs.DurationVar(&cfg.SyncTimeout, "sync-timeout", 30*time.Second, "longest final catch-up while writes are fenced (then the move rolls back)")
		fs.DurationVar(&cfg.StaleAfter, "stale-after", 10*time.Second, "a mover without heartbeat for this long is taken for dead")
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	// Init adds the jobs table to older registries; listing creates nothing.
	openReg := openRegistryToList
	if sub == "move" {
		openReg = func(ctx context.Context, dsn string) (*registry.Store, error) { return openRegistry(ctx, dsn, true) }
	}
	s, err := openReg(ctx, *reg)
	if err != nil {
		return err
	}
	defer s.Close()
	if sub == "moves" {
		if fs.NArg() > 1 {
			return fmt.Errorf("tenants moves: want at most one TENANT\n%s", moveUsage)
		}
		return listMoves(ctx, s, fs.Arg(0), stdout)
	}
	if dropRetired > 0 {
		if fs.NArg() != 0 || resume || abort || to != "" {
			return fmt.Errorf("tenants move: -drop-retired takes no TENANT and no other action\n%s", moveUsage)
		}
		m, err := move.New(move.Config{Store: s, Apply: func(context.Context, registry.Shard, string) error { return nil }})
		if err != nil {
			return err
		}
		dropped, err := m.DropRetired(ctx, dropRetired)
		for _, d := range dropped {
			fmt.Fprintf(stdout, "dropped %s\n", d)
		}
		fmt.Fprintf(stdout, "%d retired sources older than %s dropped\n", len(dropped), dropRetired)
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("tenants move: want one TENANT\n%s", moveUsage)
	}
	tenant := fs.Arg(0)
	if n := btoi(resume) + btoi(abort) + btoi(to != ""); n != 1 {
		return fmt.Errorf("tenants move: give exactly one of -to SHARD, -resume and -abort\n%s", moveUsage)
	}
	desired, err := migrate.NewDesired(appmigrate.Tables)
	if err != nil {
		return err
	}
	cfg.Store, cfg.Apply, cfg.Roles = s, provision.ApplySchema(desired, roles), roles
	cfg.Logger = slog.New(slog.DiscardHandler)
	if verbose {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if progress == "always" || (progress == "auto" && isTerminal(stdout)) {
		cfg.Progress = stdout
	}
	m, err := move.New(cfg)
	if err != nil {
		return err
	}
	if abort {
		if err := m.Abort(ctx, tenant); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "move of tenant %s aborted; it is served by its source\n", tenant)
		return nil
	}
	var res *move.Result
	if resume {
		res, err = m.Resume(ctx, tenant, force)
	} else {
		res, err = m.Move(ctx, move.Request{Tenant: tenant, Shard: to, Mode: registry.Mode(mode), Force: force})
	}
	if cfg.Progress != nil {
		fmt.Fprint(stdout, "\r\033[K")
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "moved tenant %s from %s/%s to %s/%s (%s mode) in %s; writes fenced %s; copied %.1f MB in %s; %d rows verified: %t; source kept as %s\n",
		tenant, res.From.Shard, res.From.Schema, res.To.Shard, res.To.Schema, res.To.Mode,
		res.Duration.Round(time.Millisecond), res.Window.Round(time.Millisecond), float64(res.Bytes)/1e6,
		res.Copy.Round(time.Millisecond), res.Rows, res.Verified, orNone(res.Retired))
	return nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func listMoves(ctx context.Context, s *registry.Store, tenant string, stdout io.Writer) error {
	f := registry.JobFilter{Kind: move.Kind, Limit: 100}
	if tenant != "" {
		t, err := s.Tenant(ctx, tenant)
		if err != nil {
			return err
		}
		f.Tenant = t.ID
	}
	jobs, err := s.Jobs(ctx, f)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tTENANT\tFROM\tTO\tPHASE\tSTATE\tOWNER\tHEARTBEAT\tERROR")
	for _, j := range jobs {
		from, to := "", ""
		if p, ok := j.Params["from"].(map[string]any); ok {
			from = fmt.Sprint(p["Shard"])
		}
		if p, ok := j.Params["to"].(map[string]any); ok {
			to = fmt.Sprint(p["Shard"])
		}
		hb := ""
		if !j.Heartbeat.IsZero() {
			hb = time.Since(j.Heartbeat).Round(time.Second).String() + " ago"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", j.ID, j.Tenant, from, to, j.Phase, j.State, j.Owner, hb, j.Error)
	}
	return tw.Flush()
}
