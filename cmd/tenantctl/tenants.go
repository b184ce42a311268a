package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"

	appmigrate "github.com/tenantry/tenantry/examples/app/ent/migrate"
	"github.com/tenantry/tenantry/migrate"
	"github.com/tenantry/tenantry/registry"
	"github.com/tenantry/tenantry/registry/provision"
	"github.com/tenantry/tenantry/tenancy"
)

func tenantsCommand() command {
	return command{
		name:    "tenants",
		summary: "create, list, show, suspend, resume, offboard tenants, set their plan, back up and restore them (create|list|show|suspend|resume|abandon|set-plan|plans|put-plan|backup|restore|backups|offboard|restore-offboarded|purge|offboardings)",
		run:     runTenants,
	}
}

const tenantsUsage = `usage:
  tenantctl tenants create   -slug SLUG [-plan default] [-mode schema|shared|dedicated] [-shard NAME] [-schema NAME] [-id UUID]
  tenantctl tenants list     [-state STATE] [-shard NAME] [-plan NAME]
  tenantctl tenants show     TENANT
  tenantctl tenants suspend  TENANT
  tenantctl tenants resume   TENANT
  tenantctl tenants abandon  TENANT      give up a tenant stuck in provisioning (deleted; its schema dropped)
  tenantctl tenants set-plan TENANT PLAN
  tenantctl tenants plans
  tenantctl tenants put-plan -name NAME [-statement-timeout 30s] [-lock-timeout 5s] [-idle-in-transaction-timeout 1m]
                             [-work-mem 4MB] [-max-conns N] [-rate PER_SEC] [-burst N] [-queue-timeout D] [-replica-reads]
TENANT is a slug or a tenant id. Flags go before arguments. Every subcommand
takes -registry URL (default $` + registryEnv + `).
` + backupUsage + moveUsage + "\n" + offboardUsage

func runTenants(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New(tenantsUsage)
	}
	sub, args := args[0], args[1:]
	if isHelp(sub) {
		fmt.Fprintln(stdout, tenantsUsage)
		return nil
	}
	if isBackupSubcommand(sub) { // backup.go
		return runTenantsBackup(ctx, sub, args, stdout)
	}
	if sub == "move" || sub == "moves" { // move.go
		return runTenantsMove(ctx, sub, args, stdout)
	}
	if isOffboardSubcommand(sub) { // offboard.go
		return runTenantsOffboard(ctx, sub, args, stdout)
	}
	fs := flag.NewFlagSet("tenants "+sub, flag.ContinueOnError)
	reg := registryFlag(fs)
	nargs := map[string]int{"show": 1, "suspend": 1, "resume": 1, "abandon": 1, "set-plan": 2, "list": 0, "plans": 0, "create": 0, "put-plan": 0}
	want, known := nargs[sub]
	if !known {
		return fmt.Errorf("tenants: unknown subcommand %q\n%s", sub, tenantsUsage)
	}
	var (
		nt       registry.NewTenant
		id, mode string
		filter   registry.TenantFilter
		state    string
		roles    = migrate.DefaultRoles()
		plan     registry.Plan
	)
	switch sub {
	case "create":
		fs.StringVar(&nt.Slug, "slug", "", "unique readable `name` of the tenant")
		fs.StringVar(&nt.Plan, "plan", registry.DefaultPlan, "plan `name`")
		fs.StringVar(&mode, "mode", string(registry.ModeSchema), "isolation: schema (own schema), shared (pooled schema), dedicated (own shard)")
		fs.StringVar(&nt.Shard, "shard", "", "shard `name` (default: the least loaded accepting shard)")
		fs.StringVar(&nt.Schema, "schema", "", "schema `name` (default: tenant_<id>, or \""+registry.DefaultSharedSchema+"\" in shared mode)")
		fs.StringVar(&id, "id", "", "tenant `UUID` (default: random)")
		fs.StringVar(&roles.Owner, "owner-role", roles.Owner, "role that owns tenant schemas (creates them)")
		fs.StringVar(&roles.App, "app-role", roles.App, "application role granted access")
		fs.StringVar(&roles.Admin, "admin-role", roles.Admin, "admin role granted access")
	case "list":
		fs.StringVar(&state, "state", "", "only tenants in this state: "+joinStates(tenantStates))
		fs.StringVar(&filter.Shard, "shard", "", "only tenants on this shard")
		fs.StringVar(&filter.Plan, "plan", "", "only tenants on this plan")
	case "put-plan":
		definePlanFlags(fs, &plan)
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != want {
		return fmt.Errorf("tenants %s: want %d argument(s), got %d\n%s", sub, want, fs.NArg(), tenantsUsage)
	}
	if state != "" && !slices.Contains(tenantStates, registry.State(state)) {
		return fmt.Errorf("tenants list: -state %q: want one of %s", state, joinStates(tenantStates))
	}
	s, err := openRegistry(ctx, *reg, sub == "create" || sub == "put-plan")
	if err != nil {
		return err
	}
	defer s.Close()

	switch sub {
	case "create":
		if nt.Slug == "" {
			return errors.New("tenants create: -slug is required")
		}
		nt.Mode = registry.Mode(mode)
		if id != "" {
			if nt.ID, err = tenancy.ParseID(id); err != nil {
				return err
			}
		}
		prov, err := newProvisioner(roles)
		if err != nil {
			return err
		}
		defer prov.Close()
		start := time.Now()
		t, err := s.CreateTenant(ctx, nt, prov.Apply)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "created tenant %s (%s) on shard %s in schema %s (%s mode), plan %s, in %s\n",
			t.Slug, t.ID, t.Placement.Shard, t.Placement.Schema, t.Placement.Mode, t.Plan, time.Since(start).Round(time.Millisecond))
		return nil
	case "list":
		filter.State = registry.State(state)
		ts, err := s.Tenants(ctx, filter)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SLUG\tID\tSTATE\tPLAN\tSHARD\tSCHEMA\tMODE\tEPOCH")
		for _, t := range ts {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\n", t.Slug, t.ID, t.State, t.Plan,
				t.Placement.Shard, t.Placement.Schema, t.Placement.Mode, t.Placement.Epoch)
		}
		return tw.Flush()
	case "show":
		t, err := s.Tenant(ctx, fs.Arg(0))
		if err != nil {
			return err
		}
		p, err := s.Plan(ctx, t.Plan)
		if err != nil {
			return err
		}
		printTenant(stdout, t, p)
		return nil
	case "suspend", "resume":
		t, err := s.Tenant(ctx, fs.Arg(0))
		if err != nil {
			return err
		}
		if sub == "suspend" {
			t, err = s.Suspend(ctx, t.ID)
		} else {
			t, err = s.Resume(ctx, t.ID)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "tenant %s (%s) is %s (epoch %d; routers were notified)\n", t.Slug, t.ID, t.State, t.Placement.Epoch)
		return nil
	case "abandon":
		t, err := s.Tenant(ctx, fs.Arg(0))
		if err != nil {
			return err
		}
		if t, err = s.Abandon(ctx, t.ID); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "tenant %s (%s) abandoned: deleted, never served\n", t.Slug, t.ID)
		if t.Placement.Mode == registry.ModeShared {
			return nil // provisioning a shared placement creates nothing
		}
		// What provisioning created of the tenant's own schema: no
		// other tenant of the shard is placed in it (the registry
		// refuses that), and nothing of it was ever served.
		sh, err := s.Shard(ctx, t.Placement.Shard)
		if err != nil {
			return err
		}
		prov, err := newProvisioner(roles)
		if err != nil {
			return err
		}
		defer prov.Close()
		db, err := prov.DB(sh)
		if err != nil {
			return err
		}
		if _, err := db.ExecContext(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{t.Placement.Schema}.Sanitize()+" CASCADE"); err != nil {
			return fmt.Errorf("tenants abandon: drop schema %s on shard %s (drop it by hand): %w", t.Placement.Schema, sh.Name, err)
		}
		fmt.Fprintf(stdout, "schema %s dropped on shard %s (if provisioning had created it)\n", t.Placement.Schema, sh.Name)
		return nil
	case "set-plan":
		t, err := s.Tenant(ctx, fs.Arg(0))
		if err != nil {
			return err
		}
		if t, err = s.SetPlan(ctx, t.ID, fs.Arg(1)); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "tenant %s (%s) is on plan %s (epoch %d; routers were notified)\n", t.Slug, t.ID, t.Plan, t.Placement.Epoch)
		return nil
	case "plans":
		ps, err := s.Plans(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "PLAN\tSTATEMENT\tLOCK\tIDLE IN TX\tWORK MEM\tMAX CONNS\tRATE/S\tBURST\tQUEUE\tREPLICA READS")
		for _, p := range ps {
			l := p.Limits
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%g\t%d\t%s\t%t\n", p.Name, l.StatementTimeout, l.LockTimeout,
				l.IdleInTransactionTimeout, l.WorkMem, l.MaxConns, l.RatePerSec, l.Burst, l.QueueTimeout, p.ReplicaReads)
		}
		return tw.Flush()
	case "put-plan":
		if plan.Name == "" {
			return errors.New("tenants put-plan: -name is required")
		}
		// Flags not given keep the plan's current values (or the defaults
		// of a new plan): parse them again onto those.
		base := registry.Plan{Name: plan.Name, Limits: tenancy.DefaultLimits}
		if cur, err := s.Plan(ctx, plan.Name); err == nil {
			base = cur
		} else if !errors.Is(err, registry.ErrNotFound) {
			return err
		}
		again := flag.NewFlagSet(fs.Name(), flag.ContinueOnError)
		registryFlag(again)
		definePlanFlags(again, &base)
		if err := again.Parse(args); err != nil {
			return err
		}
		plan = base
		if err := s.PutPlan(ctx, plan); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "plan %s saved; its tenants' routers were notified\n", plan.Name)
		return nil
	}
	return nil
}

// tenantStates are the states of tenants, for tenants list -state.
var tenantStates = []registry.State{registry.Provisioning, registry.Active, registry.ReadOnly,
	registry.Suspended, registry.Moving, registry.Offboarded, registry.Deleted}

func joinStates(states []registry.State) string {
	s := make([]string, len(states))
	for i, st := range states {
		s[i] = string(st)
	}
	return strings.Join(s, ", ")
}

// definePlanFlags defines the flags of a plan on fs, with p's values as
// defaults.
func definePlanFlags(fs *flag.FlagSet, p *registry.Plan) {
	l := &p.Limits
	fs.StringVar(&p.Name, "name", p.Name, "plan `name`")
	fs.DurationVar(&l.StatementTimeout, "statement-timeout", l.StatementTimeout, "statement_timeout (0: none)")
	fs.DurationVar(&l.LockTimeout, "lock-timeout", l.LockTimeout, "lock_timeout (0: none)")
	fs.DurationVar(&l.IdleInTransactionTimeout, "idle-in-transaction-timeout", l.IdleInTransactionTimeout, "idle_in_transaction_session_timeout (0: none)")
	fs.StringVar(&l.WorkMem, "work-mem", l.WorkMem, "work_mem, e.g. 4MB")
	fs.IntVar(&l.MaxConns, "max-conns", l.MaxConns, "connections a tenant may hold at once on its shard (0: admission default)")
	fs.Float64Var(&l.RatePerSec, "rate", l.RatePerSec, "statements and transactions per second (0: unlimited)")
	fs.IntVar(&l.Burst, "burst", l.Burst, "burst above the rate")
	fs.DurationVar(&l.QueueTimeout, "queue-timeout", l.QueueTimeout, "longest wait for admission (0: admission default)")
	fs.BoolVar(&p.ReplicaReads, "replica-reads", p.ReplicaReads, "read-only transactions may use the shard's replica")
}

func printTenant(w io.Writer, t registry.Tenant, p registry.Plan) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	l := p.Limits
	rows := [][2]string{
		{"slug", t.Slug},
		{"id", t.ID.String()},
		{"state", string(t.State)},
		{"shard", t.Placement.Shard},
		{"schema", t.Placement.Schema},
		{"mode", string(t.Placement.Mode)},
		{"epoch", fmt.Sprint(t.Placement.Epoch)},
		{"plan", p.Name},
		{"  statement_timeout", l.StatementTimeout.String()},
		{"  lock_timeout", l.LockTimeout.String()},
		{"  idle_in_transaction", l.IdleInTransactionTimeout.String()},
		{"  work_mem", l.WorkMem},
		{"  max_conns", fmt.Sprint(l.MaxConns)},
		{"  rate/s, burst", fmt.Sprintf("%g, %d", l.RatePerSec, l.Burst)},
		{"  queue_timeout", l.QueueTimeout.String()},
		{"  replica_reads", fmt.Sprint(p.ReplicaReads)},
		{"created", t.CreatedAt.UTC().Format(time.RFC3339)},
		{"updated", t.UpdatedAt.UTC().Format(time.RFC3339)},
	}
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\n", r[0], r[1])
	}
	tw.Flush()
}

// newProvisioner provisions tenant schemas from the example app's Ent
// graph, the one application in this repository; an application
// provisions with provision.New on its own graph.
func newProvisioner(roles migrate.Roles) (*provision.Provisioner, error) {
	desired, err := migrate.NewDesired(appmigrate.Tables)
	if err != nil {
		return nil, err
	}
	return provision.New(desired, roles)
}
