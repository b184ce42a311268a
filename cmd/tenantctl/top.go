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

	"github.com/tenantry/tenantry/registry"
	"github.com/tenantry/tenantry/tenancy"
)

// The driver tags every transaction with application_name 'tenant:<uuid>'
// (transaction-local), so pg_stat_activity shows whose work each backend runs.
const tenantAppPrefix = "tenant:"

func topCommand() command {
	return command{
		name:    "top",
		summary: "live per-tenant activity across shards; --cancel TENANT cancels that tenant's running queries",
		run:     runTop,
	}
}

// shardFlag is one --shard name=postgres://... flag; arg is the flag as
// given.
type shardFlag struct{ name, dsn, arg string }

type shardFlags []shardFlag

func (s *shardFlags) String() string { return fmt.Sprint(len(*s), " shards") }

// Set records a shard; check validates the shards after parsing, as the flag
// package's error for a value that Set refuses shows the value, password and
// all.
func (s *shardFlags) Set(v string) error {
	name, dsn, _ := strings.Cut(v, "=")
	*s = append(*s, shardFlag{name, dsn, v})
	return nil
}

// check returns an error for the first malformed shard, its password
// redacted.
func (s shardFlags) check() error {
	for _, f := range s {
		if f.name == "" || !strings.HasPrefix(f.dsn, "postgres") {
			return fmt.Errorf("want name=postgres://user@host:port/db, got %q", redactShard(f.arg))
		}
	}
	return nil
}

// redactShard returns a shard value, name=dsn or whatever was given
// instead, with any password replaced, for errors. The halves are redacted
// apart (a name= prefix hides a URL from registry.Redact), then the whole
// (a password=... keyword has no name).
func redactShard(v string) string {
	if name, dsn, ok := strings.Cut(v, "="); ok {
		v = registry.Redact(name) + "=" + registry.Redact(dsn)
	}
	return registry.Redact(v)
}

type topOptions struct {
	shards   shardFlags
	interval time.Duration
	once     bool
	limit    int
	cancel   string
}

func runTop(ctx context.Context, args []string, stdout io.Writer) error {
	var o topOptions
	fs := flag.NewFlagSet("top", flag.ContinueOnError)
	fs.Var(&o.shards, "shard", "a shard as name=postgres://user@host:port/db (repeat per shard); the role needs pg_read_all_stats, and pg_signal_backend for --cancel")
	fs.DurationVar(&o.interval, "interval", 2*time.Second, "refresh interval")
	fs.BoolVar(&o.once, "once", false, "print one snapshot and exit")
	fs.IntVar(&o.limit, "n", 20, "show the n busiest tenants")
	fs.StringVar(&o.cancel, "cancel", "", "cancel the running queries of this tenant (UUID) on every shard, and exit")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: tenantctl top --shard name=postgres://... [--shard ...] [--once] [--interval 2s] [--n 20] [--cancel TENANT]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("top: unexpected arguments %q: top takes no arguments, only flags", fs.Args())
	}
	if err := o.shards.check(); err != nil {
		return fmt.Errorf("top: --shard: %w", err)
	}
	if o.interval <= 0 {
		return fmt.Errorf("top: --interval %s: must be positive, e.g. 2s", o.interval)
	}
	if o.limit < 1 {
		return fmt.Errorf("top: --n %d: must be at least 1", o.limit)
	}
	if len(o.shards) == 0 {
		return errors.New("top: no shards: give --shard name=postgres://... for each shard")
	}
	conns := make([]*pgx.Conn, len(o.shards))
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close(context.Background())
			}
		}
	}()
	for i, s := range o.shards {
		c, err := pgx.Connect(ctx, s.dsn)
		if err != nil {
			return fmt.Errorf("top: shard %s: %w", s.name, err)
		}
		conns[i] = c
	}
	if o.cancel != "" {
		id, err := tenancy.ParseID(o.cancel)
		if err != nil {
			return fmt.Errorf("top: --cancel: %w", err)
		}
		return cancelTenant(ctx, o.shards, conns, id, stdout)
	}
	for {
		snap, err := topSnapshot(ctx, o.shards, conns)
		if err != nil {
			return err
		}
		if !o.once {
			fmt.Fprint(stdout, "\033[H\033[2J") // home, clear screen
		}
		printTop(stdout, snap, o.limit)
		if o.once {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(o.interval):
		}
	}
}

// tenantActivity is one tenant's activity on one shard.
type tenantActivity struct {
	shard      string
	tenant     string
	backends   int // in a transaction of the tenant
	active     int // running a statement
	idleInTx   int
	lockWaits  int
	longestQ   time.Duration
	longestTx  time.Duration
	oldestText string
}

type shardActivity struct {
	name             string
	clients, active  int
	tenants          int
	unscoped, scoped int
	err              error
}

type snapshot struct {
	at      time.Time
	shards  []shardActivity
	tenants []tenantActivity
}

const topSQL = `
SELECT substr(application_name, length($1) + 1) AS tenant,
       count(*),
       count(*) FILTER (WHERE state = 'active'),
       count(*) FILTER (WHERE state LIKE 'idle in transaction%'),
       count(*) FILTER (WHERE wait_event_type = 'Lock'),
       coalesce(max(extract(epoch FROM clock_timestamp() - query_start)) FILTER (WHERE state = 'active'), 0)::float8,
       coalesce(max(extract(epoch FROM clock_timestamp() - xact_start)), 0)::float8,
       coalesce((array_agg(left(regexp_replace(query, '\s+', ' ', 'g'), 80) ORDER BY query_start) FILTER (WHERE state = 'active'))[1], '')
FROM pg_stat_activity
WHERE application_name LIKE $1 || '%' AND pid <> pg_backend_pid()
GROUP BY 1`

const shardSQL = `
SELECT count(*),
       count(*) FILTER (WHERE state = 'active'),
       count(*) FILTER (WHERE application_name = 'tenantry:unscoped')
FROM pg_stat_activity
WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()`

func topSnapshot(ctx context.Context, shards shardFlags, conns []*pgx.Conn) (*snapshot, error) {
	snap := &snapshot{at: time.Now()}
	for i, s := range shards {
		sa := shardActivity{name: s.name}
		sa.err = conns[i].QueryRow(ctx, shardSQL).Scan(&sa.clients, &sa.active, &sa.unscoped)
		if sa.err == nil {
			var rows pgx.Rows
			rows, sa.err = conns[i].Query(ctx, topSQL, tenantAppPrefix)
			if sa.err == nil {
				for rows.Next() {
					t := tenantActivity{shard: s.name}
					var q, x float64
					if err := rows.Scan(&t.tenant, &t.backends, &t.active, &t.idleInTx, &t.lockWaits, &q, &x, &t.oldestText); err != nil {
						rows.Close()
						return nil, fmt.Errorf("top: shard %s: %w", s.name, err)
					}
					t.longestQ = time.Duration(q * float64(time.Second))
					t.longestTx = time.Duration(x * float64(time.Second))
					snap.tenants = append(snap.tenants, t)
					sa.tenants++
					sa.scoped += t.backends
				}
				rows.Close()
				sa.err = rows.Err()
			}
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		snap.shards = append(snap.shards, sa)
	}
	slices.SortFunc(snap.tenants, func(a, b tenantActivity) int {
		if a.active != b.active {
			return b.active - a.active
		}
		if a.backends != b.backends {
			return b.backends - a.backends
		}
		if a.longestTx != b.longestTx {
			return int(b.longestTx - a.longestTx)
		}
		return strings.Compare(a.tenant, b.tenant)
	})
	return snap, nil
}

func printTop(w io.Writer, snap *snapshot, limit int) {
	fmt.Fprintf(w, "tenantctl top  %s\n\n", snap.at.Format(time.DateTime))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SHARD\tCLIENTS\tACTIVE\tTENANTS\tIN TENANT TX\tUNSCOPED\t")
	for _, s := range snap.shards {
		if s.err != nil {
			fmt.Fprintf(tw, "%s\terror: %v\t\t\t\t\t\n", s.name, s.err)
			continue
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t\n", s.name, s.clients, s.active, s.tenants, s.scoped, s.unscoped)
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TENANT\tSHARD\tACTIVE\tIN TX\tIDLE IN TX\tLOCK WAITS\tLONGEST QUERY\tLONGEST TX\tOLDEST RUNNING QUERY")
	for i, t := range snap.tenants {
		if i == limit {
			fmt.Fprintf(tw, "… %d more\t\t\t\t\t\t\t\t\n", len(snap.tenants)-limit)
			break
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\t%s\n", t.tenant, t.shard, t.active, t.backends, t.idleInTx, t.lockWaits,
			round(t.longestQ), round(t.longestTx), t.oldestText)
	}
	if len(snap.tenants) == 0 {
		fmt.Fprintln(tw, "(no tenant transactions running)\t\t\t\t\t\t\t\t")
	}
	tw.Flush()
}

func round(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return d.Round(time.Millisecond).String()
}

// listSQL lists the tenant's backends running a statement now.
const listSQL = `
SELECT pid, query_start, left(regexp_replace(query, '\s+', ' ', 'g'), 80)
FROM pg_stat_activity
WHERE application_name = $1 AND state = 'active' AND pid <> pg_backend_pid()`

// cancelSQL cancels one backend only if it still runs the statement that
// was listed: same tenant tag, same statement start. The check and the
// signal are one statement on a fresh activity snapshot, so a backend that
// has meanwhile moved on to another tenant's transaction is left alone
// (short of a switch within the microseconds between the two).
const cancelSQL = `
SELECT pg_cancel_backend(a.pid)
FROM pg_stat_get_activity($1) a
WHERE a.application_name = $2 AND a.state = 'active' AND a.query_start = $3`

func cancelTenant(ctx context.Context, shards shardFlags, conns []*pgx.Conn, id tenancy.ID, w io.Writer) error {
	app := tenantAppPrefix + id.String()
	total := 0
	for i, s := range shards {
		type backend struct {
			pid   int32
			start time.Time
			query string
		}
		rows, err := conns[i].Query(ctx, listSQL, app)
		if err != nil {
			return fmt.Errorf("top: shard %s: %w", s.name, err)
		}
		list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (backend, error) {
			var b backend
			err := r.Scan(&b.pid, &b.start, &b.query)
			return b, err
		})
		if err != nil {
			return fmt.Errorf("top: shard %s: %w", s.name, err)
		}
		for _, b := range list {
			var ok bool
			err := conns[i].QueryRow(ctx, cancelSQL, b.pid, app, b.start).Scan(&ok)
			switch {
			case errors.Is(err, pgx.ErrNoRows): // finished meanwhile
				continue
			case err != nil:
				return fmt.Errorf("top: shard %s: cancel backend %d: %w (the role needs pg_signal_backend)", s.name, b.pid, err)
			case !ok:
				fmt.Fprintf(w, "%s: backend %d: cancel refused\n", s.name, b.pid)
				continue
			}
			total++
			fmt.Fprintf(w, "%s: cancelled backend %d of tenant %s, running %s: %s\n", s.name, b.pid, id, round(time.Since(b.start)), b.query)
		}
	}
	fmt.Fprintf(w, "cancelled %d running quer%s of tenant %s\n", total, map[bool]string{true: "y", false: "ies"}[total == 1], id)
	return nil
}
