package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/tenantry/tenantry/migrate"
	"github.com/tenantry/tenantry/registry"
)

const offboardUsage = `usage:
  tenantctl tenants offboard [-retention 720h] [-reason TEXT] [-hard [-force]] TENANT
  tenantctl tenants restore-offboarded TENANT
  tenantctl tenants purge [-dry-run]
  tenantctl tenants offboardings [-open] [TENANT]
offboard stops serving TENANT at once and keeps its data for the retention
period (its schema renamed retired_<id>; a shared placement keeps its rows);
-hard then deletes the data, which is refused before the retention period
ends unless -force. restore-offboarded undoes a soft offboarding. purge
deletes the data of every offboarded tenant past its retention period.`

// isOffboardSubcommand reports whether tenants SUB is one of this file's.
func isOffboardSubcommand(sub string) bool {
	switch sub {
	case "offboard", "restore-offboarded", "purge", "offboardings":
		return true
	}
	return false
}

// runTenantsOffboard runs tenants offboard, restore-offboarded, purge and
// offboardings.
func runTenantsOffboard(ctx context.Context, sub string, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("tenants "+sub, flag.ContinueOnError)
	reg := registryFlag(fs)
	roles := migrate.DefaultRoles()
	fs.StringVar(&roles.Owner, "owner-role", roles.Owner, "role that owns tenant schemas (offboarding runs as it)")
	fs.StringVar(&roles.App, "app-role", roles.App, "application role")
	fs.StringVar(&roles.Admin, "admin-role", roles.Admin, "admin role")
	var (
		opt          registry.OffboardOptions
		dryRun, open bool
	)
	nargs := 1
	switch sub {
	case "offboard":
		fs.DurationVar(&opt.Retention, "retention", registry.DefaultRetention, "how long the data is kept before it may be purged")
		fs.StringVar(&opt.Reason, "reason", "", "why, recorded with the offboarding")
		fs.BoolVar(&opt.Hard, "hard", false, "delete the data too (after the retention period, or now with -force)")
		fs.BoolVar(&opt.Force, "force", false, "with -hard: delete the data before the retention period ends")
	case "purge":
		nargs = 0
		fs.BoolVar(&dryRun, "dry-run", false, "list what would be purged, change nothing")
	case "offboardings":
		nargs = -1
		fs.BoolVar(&open, "open", false, "only offboardings neither restored nor purged")
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if (nargs >= 0 && fs.NArg() != nargs) || (nargs < 0 && fs.NArg() > 1) {
		return fmt.Errorf("tenants %s: wrong number of arguments\n%s", sub, offboardUsage)
	}
	if opt.Force && !opt.Hard {
		return errors.New("tenants offboard: -force only goes with -hard")
	}
	if sub == "offboard" && opt.Retention <= 0 {
		// The registry reads 0 as its default (720h).
		return fmt.Errorf("tenants offboard: -retention %s: must be positive; to delete the data now, use -hard -force", opt.Retention)
	}
	// Init adds the offboarding table to older registries; listing (also
	// purge -dry-run) creates nothing where there is no registry.
	openReg := func(ctx context.Context, dsn string) (*registry.Store, error) { return openRegistry(ctx, dsn, true) }
	if sub == "offboardings" || (sub == "purge" && dryRun) {
		openReg = openRegistryToList
	}
	s, err := openReg(ctx, *reg)
	if err != nil {
		return err
	}
	defer s.Close()
	if sub == "offboardings" {
		f := registry.OffboardingFilter{Open: open}
		if fs.NArg() == 1 {
			t, err := s.Tenant(ctx, fs.Arg(0))
			if err != nil {
				return err
			}
			f.Tenant = t.ID
		}
		os, err := s.Offboardings(ctx, f)
		if err != nil {
			return err
		}
		return writeOffboardings(stdout, os)
	}
	if sub == "purge" && dryRun {
		due, err := s.Offboardings(ctx, registry.OffboardingFilter{Open: true, DueBy: time.Now()})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%d tenant(s) past retention would be purged:\n", len(due))
		return writeOffboardings(stdout, due)
	}
	// restore-offboarded brings a schema back to the graph tenants create
	// provisions.
	prov, err := newProvisioner(roles)
	if err != nil {
		return err
	}
	defer prov.Close()

	switch sub {
	case "offboard":
		t, err := s.Tenant(ctx, fs.Arg(0))
		if err != nil {
			return err
		}
		o, err := s.Offboard(ctx, t.ID, opt, prov)
		if errors.Is(err, registry.ErrRetention) && o.ID != 0 {
			// Offboarded, not purged: say the first, then why not the second.
			printOffboarding(stdout, o)
			return fmt.Errorf("tenants offboard: the data is not deleted: %w; add -force to delete it now", err)
		}
		if err != nil {
			return err
		}
		printOffboarding(stdout, o)
	case "restore-offboarded":
		t, err := s.Tenant(ctx, fs.Arg(0))
		if err != nil {
			return err
		}
		if t, err = s.RestoreOffboarded(ctx, t.ID, prov); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "tenant %s (%s) restored: %s in schema %s on shard %s (epoch %d; routers were notified)\n",
			t.Slug, t.ID, t.State, t.Placement.Schema, t.Placement.Shard, t.Placement.Epoch)
	case "purge":
		done, err := s.Purge(ctx, time.Now(), prov)
		for _, o := range done {
			printOffboarding(stdout, o)
		}
		fmt.Fprintf(stdout, "purged %d tenant(s)\n", len(done))
		return err
	}
	return nil
}

func printOffboarding(w io.Writer, o registry.Offboarding) {
	switch {
	case !o.PurgedAt.IsZero() && o.Mode == registry.ModeShared:
		fmt.Fprintf(w, "tenant %s (%s) purged: its rows deleted from %s on shard %s%s\n", o.Slug, o.Tenant, o.Schema, o.Shard, forcedText(o))
	case !o.PurgedAt.IsZero():
		fmt.Fprintf(w, "tenant %s (%s) purged: schema %s dropped on shard %s%s\n", o.Slug, o.Tenant, o.RetiredSchema, o.Shard, forcedText(o))
		if o.Mode == registry.ModeDedicated {
			fmt.Fprintf(w, "shard %s held only this tenant and does not accept tenants; reuse it with tenantctl shards, or remove it\n", o.Shard)
		}
	case o.Mode == registry.ModeShared:
		fmt.Fprintf(w, "tenant %s (%s) offboarded: not served; its rows stay in %s on shard %s until %s (restore with tenants restore-offboarded)\n",
			o.Slug, o.Tenant, o.Schema, o.Shard, o.RetainUntil.UTC().Format(time.RFC3339))
	default:
		fmt.Fprintf(w, "tenant %s (%s) offboarded: not served; schema %s kept as %s on shard %s until %s (restore with tenants restore-offboarded)\n",
			o.Slug, o.Tenant, o.Schema, o.RetiredSchema, o.Shard, o.RetainUntil.UTC().Format(time.RFC3339))
	}
}

func forcedText(o registry.Offboarding) string {
	if o.Forced {
		return " (forced, before the end of retention " + o.RetainUntil.UTC().Format(time.RFC3339) + ")"
	}
	return ""
}

func writeOffboardings(w io.Writer, os []registry.Offboarding) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TENANT\tID\tSHARD\tSCHEMA\tRETIRED AS\tMODE\tOFFBOARDED\tRETAIN UNTIL\tOUTCOME\tREASON")
	for _, o := range os {
		outcome := "retained"
		switch {
		case !o.PurgedAt.IsZero():
			outcome = "purged " + o.PurgedAt.UTC().Format(time.RFC3339)
			if o.Forced {
				outcome += " (forced)"
			}
		case !o.RestoredAt.IsZero():
			outcome = "restored " + o.RestoredAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", o.Slug, o.Tenant, o.Shard, o.Schema, orDash(o.RetiredSchema), o.Mode,
			o.OffboardedAt.UTC().Format(time.RFC3339), o.RetainUntil.UTC().Format(time.RFC3339), outcome, o.Reason)
	}
	return tw.Flush()
}
