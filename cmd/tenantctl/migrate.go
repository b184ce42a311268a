package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	atlasmigrate "ariga.io/atlas/sql/migrate"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver of the shard pools
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	appmigrate "github.com/tenantry/tenantry/examples/app/ent/migrate"
	"github.com/tenantry/tenantry/migrate"
	"github.com/tenantry/tenantry/registry"
	"github.com/tenantry/tenantry/tenancy"
)

// migrateTables is the Ent graph tenantctl migrates to: the example app's.
// An application builds its own tenantctl, or calls migrate.Fleet, with
// its generated ent/migrate.Tables.
var migrateTables = appmigrate.Tables

// envShards names the environment variable read when no --shard is given:
// name=postgres://... entries separated by spaces or commas.
const envShards = "TENANTRY_SHARDS"

func migrateCommand() command {
	return command{
		name:    "migrate",
		summary: "fleet schema migrations: plan | apply | status | diff (see tenantctl migrate -h)",
		run:     runMigrate,
	}
}

const migrateUsage = `usage: tenantctl migrate plan|apply|status [flags]
       tenantctl migrate diff NAME --dir DIR [flags]

  plan    show what apply would do: schemas per shard, up to date or not,
          one plan per group of identically shaped schemas; fails when a
          shard cannot be read or a group has no plan
  apply   migrate every target schema (declarative: to the Ent graph;
          with --dir: the pending files of a migration directory)
  status  schemas per version per shard, drifted schemas and what differs,
          schemas whose last migration failed
  diff    write the next versioned migration file NAME (and atlas.sum) to
          --dir, from the Ent graph's change since the directory's files

Shards: --shard name=postgres://owner@host:port/db (repeat), or $TENANTRY_SHARDS, or else
the shards registered in $TENANTRY_REGISTRY (connecting as the owner role).
Connect as the owner role (or a superuser). Run any subcommand with -h for its flags.`

func runMigrate(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintln(stdout, migrateUsage)
		if len(args) == 0 {
			return errors.New("migrate: no subcommand given")
		}
		return nil
	}
	sub, args := args[0], args[1:]
	switch sub {
	case "plan", "apply", "status":
		return runMigrateFleet(ctx, sub, args, stdout)
	case "diff":
		return runMigrateDiff(ctx, args, stdout)
	}
	fmt.Fprintln(stdout, migrateUsage)
	return fmt.Errorf("migrate: unknown subcommand %q", sub)
}

// migrateShard is one --shard flag; arg is the flag as given.
type migrateShard struct{ name, dsn, arg string }

type migrateShards []migrateShard

func (s *migrateShards) String() string { return fmt.Sprint(len(*s), " shards") }

// Set records a shard; check validates the shards after parsing, as the flag
// package's error for a value that Set refuses shows the value, password and
// all.
func (s *migrateShards) Set(v string) error {
	name, dsn, _ := strings.Cut(v, "=")
	*s = append(*s, migrateShard{name, dsn, v})
	return nil
}

// check returns an error for the first malformed or repeated shard, its
// password redacted.
func (s migrateShards) check() error {
	for i, sh := range s {
		if sh.name == "" || !(strings.HasPrefix(sh.dsn, "postgres://") || strings.HasPrefix(sh.dsn, "postgresql://")) {
			return fmt.Errorf("want name=postgres://user@host:port/db, got %q", redactShard(sh.arg))
		}
		for _, have := range s[:i] {
			if have.name == sh.name {
				return fmt.Errorf("shard %q given twice", sh.name)
			}
		}
	}
	return nil
}

// stringList is a repeatable string flag; commas also separate values.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}

// migrateFlags are the flags of plan, apply and status.
type migrateFlags struct {
	shards      migrateShards
	dir         string
	patterns    stringList
	targets     stringList
	targetsFile string
	onlyShards  stringList
	schemas     stringList
	tenants     stringList
	roles       string
	jsonOut     bool
	logLevel    string
	logFormat   string

	concurrency       int
	batch             int
	canary            int
	canarySchemas     stringList
	failureBudget     int
	continueOnError   bool
	allowDestructive  bool
	lockTimeout       time.Duration
	retries           int
	retryBackoff      time.Duration
	concurrentIndexes bool
	create            bool
	runID             string
	metricsAddr       string
	metricsFile       string
	progress          string
}

func (o *migrateFlags) common(fs *flag.FlagSet) {
	fs.Var(&o.shards, "shard", "a shard as name=postgres://owner@host:port/db (repeat per shard; default $"+envShards+")")
	fs.StringVar(&o.dir, "dir", "", "versioned mode: an Atlas migration directory (files + atlas.sum) instead of the Ent graph")
	fs.Var(&o.patterns, "pattern", "discover target schemas by this LIKE pattern (repeatable; default tenant\\_% and shared\\_%)")
	fs.Var(&o.targets, "target", "an explicit target as shard/schema (repeatable; replaces discovery)")
	fs.StringVar(&o.targetsFile, "targets-file", "", "explicit targets, one per line: shard schema [tenant] (replaces discovery)")
	fs.Var(&o.onlyShards, "only-shard", "only targets on this shard (repeatable)")
	fs.Var(&o.schemas, "schema", "only schemas matching this glob, e.g. 'tenant_00*' (repeatable)")
	fs.Var(&o.tenants, "tenant", "only this tenant, by id (a UUID: tenantctl tenants show SLUG prints it; repeatable)")
	fs.StringVar(&o.roles, "roles", "", "owner,app,admin role names (default tenantry_owner,tenantry_app,tenantry_admin)")
	fs.BoolVar(&o.jsonOut, "json", false, "print the result as JSON")
	fs.StringVar(&o.logLevel, "log-level", "", "debug, info, warn or error (default warn on a terminal, info otherwise)")
	fs.StringVar(&o.logFormat, "log-format", "text", "structured logs on stderr: text or json")
}

func (o *migrateFlags) run(fs *flag.FlagSet) {
	fs.IntVar(&o.concurrency, "concurrency", migrate.DefaultConcurrency, "schemas migrated at once per shard (the shard pool is sized to it)")
	fs.IntVar(&o.batch, "batch", 0, "migrate in batches of this many schemas across the fleet (0: one batch)")
	fs.IntVar(&o.canary, "canary", 0, "migrate the first N schemas first; halt unless all succeed")
	fs.Var(&o.canarySchemas, "canary-schema", "a canary schema (repeatable; instead of --canary N)")
	fs.IntVar(&o.failureBudget, "failure-budget", 0, "failed schemas tolerated before the run halts")
	fs.BoolVar(&o.continueOnError, "continue-on-error", false, "never halt on failures; report every failed schema at the end")
	fs.BoolVar(&o.allowDestructive, "allow-destructive", false, "allow dropping tables and columns")
	fs.DurationVar(&o.lockTimeout, "lock-timeout", migrate.DefaultLockTimeout, "longest lock wait of a schema's migration before it is retried later")
	fs.IntVar(&o.retries, "retries", migrate.DefaultRetries, "retries of a schema after a lock timeout or deadlock")
	fs.DurationVar(&o.retryBackoff, "retry-backoff", migrate.DefaultRetryBackoff, "first retry delay (doubling, with jitter)")
	fs.BoolVar(&o.concurrentIndexes, "concurrent-indexes", false, "build new indexes on existing tables with CREATE INDEX CONCURRENTLY")
	fs.BoolVar(&o.create, "create", false, "create explicit targets (--target, --targets-file) whose schema does not exist, with every table;\nwithout it they are refused (tenants are created, schema and all, by tenantctl tenants create)")
	fs.StringVar(&o.runID, "run-id", "", "name of the run in the ledger and logs (default: a timestamp)")
	fs.StringVar(&o.metricsAddr, "metrics-addr", "", "serve Prometheus metrics at this address (e.g. :9464) while the run lasts")
	fs.StringVar(&o.metricsFile, "metrics-file", "", "write the run's Prometheus metrics to this file at the end (textfile collector format)")
	fs.StringVar(&o.progress, "progress", "auto", "progress line: auto (when stdout is a terminal), always or never")
}

func (o *migrateFlags) options() migrate.RunOptions {
	opts := migrate.RunOptions{
		Select:            migrate.Selector{Shards: o.onlyShards, Schemas: o.schemas, Tenants: o.tenants},
		Concurrency:       o.concurrency,
		BatchSize:         o.batch,
		Canary:            o.canary,
		CanarySchemas:     o.canarySchemas,
		FailureBudget:     o.failureBudget,
		AllowDestructive:  o.allowDestructive,
		LockTimeout:       o.lockTimeout,
		Retries:           o.retries,
		RetryBackoff:      o.retryBackoff,
		ConcurrentIndexes: o.concurrentIndexes,
		RunID:             o.runID,
		// An explicit target that does not exist is a typo more often than
		// a schema to create: refused unless --create.
		RequireExisting: (len(o.targets) > 0 || o.targetsFile != "") && !o.create,
	}
	if o.continueOnError {
		opts.FailureBudget = -1
	}
	if o.retries == 0 {
		opts.Retries = -1 // --retries 0 means none
	}
	return opts
}

func parseRoles(s string) (migrate.Roles, error) {
	if s == "" {
		return migrate.DefaultRoles(), nil
	}
	p := strings.Split(s, ",")
	if len(p) != 3 {
		return migrate.Roles{}, fmt.Errorf("--roles: want owner,app,admin, got %q", s)
	}
	return migrate.Roles{Owner: strings.TrimSpace(p[0]), App: strings.TrimSpace(p[1]), Admin: strings.TrimSpace(p[2])}, nil
}

// shardsFromRegistry lists the shards of the registry at
// $TENANTRY_REGISTRY, connecting as owner (migrations run as the owner).
func shardsFromRegistry(ctx context.Context, owner string) (migrateShards, error) {
	s, err := openRegistry(ctx, "", false)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	shards, err := s.Shards(ctx)
	if err != nil {
		return nil, fmt.Errorf("shards of $%s: %w", registryEnv, err)
	}
	out := make(migrateShards, 0, len(shards))
	for _, sh := range shards {
		dsn, err := registry.WithUser(sh.DSN, owner)
		if err != nil {
			return nil, err
		}
		out = append(out, migrateShard{name: sh.Name, dsn: dsn})
	}
	return out, nil
}

// shardsFromEnv parses $TENANTRY_SHARDS.
func shardsFromEnv() (migrateShards, error) {
	var out migrateShards
	for _, f := range strings.FieldsFunc(os.Getenv(envShards), func(r rune) bool { return r == ' ' || r == ',' || r == '\n' }) {
		out.Set(f) // never fails: check validates
	}
	if err := out.check(); err != nil {
		return nil, fmt.Errorf("$%s: %w", envShards, err)
	}
	return out, nil
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func newLogger(o *migrateFlags, tty bool) (*slog.Logger, error) {
	level := slog.LevelInfo
	if tty {
		level = slog.LevelWarn
	}
	if o.logLevel != "" {
		if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
			return nil, fmt.Errorf("--log-level: %w", err)
		}
	}
	ho := &slog.HandlerOptions{Level: level}
	switch o.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, ho)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, ho)), nil
	}
	return nil, fmt.Errorf("--log-format: want text or json, got %q", o.logFormat)
}

// openFleet opens the shard pools and builds the fleet from the flags.
func openFleet(ctx context.Context, o *migrateFlags, logger *slog.Logger) (*migrate.Fleet, func(), error) {
	roles, err := parseRoles(o.roles)
	if err != nil {
		return nil, nil, err
	}
	if len(o.shards) == 0 {
		if o.shards, err = shardsFromEnv(); err != nil {
			return nil, nil, err
		}
	}
	if len(o.shards) == 0 && os.Getenv(registryEnv) != "" {
		if o.shards, err = shardsFromRegistry(ctx, roles.Owner); err != nil {
			return nil, nil, err
		}
	}
	if len(o.shards) == 0 {
		return nil, nil, fmt.Errorf("no shards: give --shard name=postgres://... per shard, set $%s, or register shards in $%s (tenantctl shards add)", envShards, registryEnv)
	}
	f := &migrate.Fleet{Roles: roles, Logger: logger}
	closeAll := func() {
		for _, s := range f.Shards {
			s.DB.Close()
		}
	}
	for _, s := range o.shards {
		sh, err := migrate.OpenShard(s.name, s.dsn, max(o.concurrency, 1))
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		f.Shards = append(f.Shards, sh)
	}
	if f.Targets, err = o.targetSource(); err != nil {
		closeAll()
		return nil, nil, err
	}
	if o.dir != "" {
		dir, err := atlasmigrate.NewLocalDir(o.dir)
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("--dir: %w", err)
		}
		f.Dir = dir
	} else if f.Desired, err = migrate.NewDesired(migrateTables); err != nil {
		closeAll()
		return nil, nil, err
	}
	return f, closeAll, nil
}

func (o *migrateFlags) targetSource() (migrate.Targets, error) {
	var list migrate.TargetList
	for _, t := range o.targets {
		shard, schema, ok := strings.Cut(t, "/")
		if !ok {
			return nil, fmt.Errorf("--target: want shard/schema, got %q", t)
		}
		list = append(list, migrate.Target{Shard: shard, Schema: schema})
	}
	if o.targetsFile != "" {
		b, err := os.ReadFile(o.targetsFile)
		if err != nil {
			return nil, err
		}
		for i, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) == 0 || strings.HasPrefix(f[0], "#") {
				continue
			}
			if len(f) < 2 {
				return nil, fmt.Errorf("%s:%d: want shard schema [tenant]", o.targetsFile, i+1)
			}
			t := migrate.Target{Shard: f[0], Schema: f[1]}
			if len(f) > 2 {
				t.Tenant = f[2]
			}
			list = append(list, t)
		}
	}
	if len(list) > 0 {
		if len(o.patterns) > 0 {
			return nil, errors.New("--pattern and explicit targets (--target, --targets-file) exclude each other")
		}
		return list, nil
	}
	return migrate.Discover{Patterns: o.patterns}, nil
}

func runMigrateFleet(ctx context.Context, sub string, args []string, stdout io.Writer) error {
	var o migrateFlags
	fs := flag.NewFlagSet("migrate "+sub, flag.ContinueOnError)
	fs.SetOutput(stdout)
	o.common(fs)
	if sub != "status" {
		o.run(fs)
	}
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: tenantctl migrate %s --shard name=postgres://... [--shard ...] [flags]\n", sub)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("migrate %s: unexpected arguments %q", sub, fs.Args())
	}
	if err := o.shards.check(); err != nil {
		return fmt.Errorf("migrate %s: --shard: %w", sub, err)
	}
	for _, id := range o.tenants {
		if _, err := tenancy.ParseID(id); err != nil {
			return fmt.Errorf("--tenant: %w; give the tenant's id (tenantctl tenants show %s prints it)", err, id)
		}
	}
	if sub != "status" {
		// migrate.RunOptions takes a zero or negative value for a default
		// (a negative budget for no limit): refuse what was not meant.
		for _, f := range []struct {
			name   string
			v, min int
		}{{"concurrency", o.concurrency, 1}, {"batch", o.batch, 0}, {"canary", o.canary, 0}, {"failure-budget", o.failureBudget, 0}, {"retries", o.retries, 0}} {
			if f.v < f.min {
				return fmt.Errorf("migrate %s: --%s %d: must be at least %d", sub, f.name, f.v, f.min)
			}
		}
	}
	tty := isTerminal(stdout)
	logger, err := newLogger(&o, tty)
	if err != nil {
		return err
	}
	f, closeAll, err := openFleet(ctx, &o, logger)
	if err != nil {
		return err
	}
	defer closeAll()
	opts := o.options()

	switch sub {
	case "status":
		st, err := f.Status(ctx, opts)
		if err != nil {
			return err
		}
		if o.jsonOut {
			return writeJSON(stdout, st)
		}
		if err := st.WriteText(stdout); err != nil {
			return err
		}
		return st.Err()
	case "plan":
		p, err := f.Plan(ctx, opts)
		if err != nil {
			return planError(err)
		}
		if o.jsonOut {
			err = writeJSON(stdout, p)
		} else {
			err = p.WriteText(stdout)
		}
		if err != nil {
			return err
		}
		// A shard not read or a group without a plan fails the command, as
		// it fails apply: "migrate plan && migrate apply" stops here.
		return p.Err()
	}

	// apply
	reg := prometheus.NewRegistry()
	if f.Metrics, err = migrate.NewMetrics(reg); err != nil {
		return err
	}
	if o.metricsAddr != "" {
		ln, err := net.Listen("tcp", o.metricsAddr)
		if err != nil {
			return fmt.Errorf("--metrics-addr: %w", err)
		}
		srv := &http.Server{Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(ln)
		defer srv.Close()
		logger.Info("serving metrics", "addr", ln.Addr().String())
	}
	showProgress := o.progress == "always" || (o.progress == "auto" && tty && !o.jsonOut)
	var bar *progressLine
	if showProgress {
		bar = &progressLine{w: stdout, shards: make(map[string]migrate.Counts)}
		f.OnProgress = bar.update
	}
	p, err := f.Plan(ctx, opts)
	if err != nil {
		return planError(err)
	}
	if bar != nil {
		bar.total = p.Changes()
		bar.start = time.Now()
	}
	rep, err := f.Apply(ctx, p)
	if bar != nil {
		bar.clear()
	}
	if err != nil {
		return err
	}
	if o.metricsFile != "" {
		if err := prometheus.WriteToTextfile(o.metricsFile, reg); err != nil {
			return fmt.Errorf("--metrics-file: %w", err)
		}
	}
	if o.jsonOut {
		if err := writeJSON(stdout, rep); err != nil {
			return err
		}
	} else if err := rep.WriteTable(stdout); err != nil {
		return err
	}
	return rep.Err()
}

// planError adds to a plan's error what to do about it.
func planError(err error) error {
	if errors.Is(err, migrate.ErrNoSchema) {
		return fmt.Errorf("%w\n(tenants are created, schema and all, with tenantctl tenants create -slug SLUG; to create these schemas here anyway, pass --create)", err)
	}
	return err
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// progressLine redraws one line on a terminal: per shard and in all, how
// many schemas are done, failed and retried, the rate and the time left.
type progressLine struct {
	mu     sync.Mutex
	w      io.Writer
	total  int
	done   int
	start  time.Time
	last   time.Time
	shards map[string]migrate.Counts
	drawn  bool
}

func (b *progressLine) update(p migrate.Progress) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.shards[p.Target.Shard] = p.Shard
	now := time.Now()
	// Every target the run attempts reports its outcome once, whatever it
	// is (applied, failed, skipped, or up to date after all when another
	// run migrated it first); the targets of a shard found down at planning
	// come on top of the plan's changes.
	b.done++
	done := b.done
	b.total = max(b.total, done)
	if now.Sub(b.last) < 100*time.Millisecond && done < b.total {
		return
	}
	b.last = now
	var parts []string
	for _, name := range sortedNames(b.shards) {
		c := b.shards[name]
		parts = append(parts, fmt.Sprintf("%s %d✓ %d✗", name, c.Applied, c.Failed))
	}
	elapsed := now.Sub(b.start)
	rate := float64(done) / max(elapsed.Seconds(), 0.001)
	eta := "-"
	if rate > 0 && b.total > done {
		eta = (time.Duration(float64(b.total-done)/rate) * time.Second).Round(time.Second).String()
	}
	pct := 100.0
	if b.total > 0 {
		pct = 100 * float64(done) / float64(b.total)
	}
	line := fmt.Sprintf("%d/%d %.1f%% | %s | %d retries | %.0f/s | ETA %s", done, b.total, pct,
		strings.Join(parts, " | "), p.Total.Retries, rate, eta)
	fmt.Fprintf(b.w, "\r\033[K%s", line)
	b.drawn = true
}

func (b *progressLine) clear() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.drawn {
		fmt.Fprint(b.w, "\r\033[K")
	}
}

func sortedNames(m map[string]migrate.Counts) []string {
	return slices.Sorted(maps.Keys(m))
}

func runMigrateDiff(ctx context.Context, args []string, stdout io.Writer) error {
	var (
		shards  migrateShards
		dirPath string
		roles   string
		jsonOut bool
	)
	fs := flag.NewFlagSet("migrate diff", flag.ContinueOnError)
	fs.SetOutput(stdout)
	fs.StringVar(&dirPath, "dir", "", "the Atlas migration directory to write to (created if missing)")
	fs.Var(&shards, "shard", "the database to replay the directory in, inside a rolled-back transaction: any shard, or a development database, as name=postgres://... (default: the first of $"+envShards+")")
	fs.StringVar(&roles, "roles", "", "owner,app,admin role names (default tenantry_owner,tenantry_app,tenantry_admin)")
	fs.BoolVar(&jsonOut, "json", false, "print the result as JSON")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: tenantctl migrate diff NAME --dir DIR [--shard name=postgres://...]")
		fs.PrintDefaults()
	}
	// NAME may come before, between or after the flags.
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil
			}
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(positional) > 1 {
		return fmt.Errorf("migrate diff: want one NAME, got %q", positional)
	}
	if err := shards.check(); err != nil {
		return fmt.Errorf("migrate diff: --shard: %w", err)
	}
	var name string
	if len(positional) == 1 {
		name = positional[0]
	}
	if name == "" || dirPath == "" {
		fs.Usage()
		return errors.New("migrate diff: NAME and --dir are required")
	}
	r, err := parseRoles(roles)
	if err != nil {
		return err
	}
	if len(shards) == 0 {
		if shards, err = shardsFromEnv(); err != nil {
			return err
		}
	}
	if len(shards) == 0 {
		return fmt.Errorf("migrate diff: give --shard name=postgres://... (a database to replay the directory in) or set $%s", envShards)
	}
	if err := os.MkdirAll(dirPath, 0o755); err != nil {
		return err
	}
	dir, err := atlasmigrate.NewLocalDir(dirPath)
	if err != nil {
		return err
	}
	desired, err := migrate.NewDesired(migrateTables)
	if err != nil {
		return err
	}
	sh, err := migrate.OpenShard(shards[0].name, shards[0].dsn, 1)
	if err != nil {
		return err
	}
	defer sh.DB.Close()
	res, err := migrate.Diff(ctx, sh.DB, dir, name, desired, r)
	if err != nil {
		return err
	}
	if jsonOut {
		return writeJSON(stdout, res)
	}
	if res.File == "" {
		fmt.Fprintf(stdout, "%s is at the desired state (version %s): no file written\n", dirPath, desired.Version())
		return nil
	}
	fmt.Fprintf(stdout, "wrote %s (%d statements) and atlas.sum\n", res.File, len(res.Statements))
	for _, d := range res.Destructive {
		fmt.Fprintf(stdout, "DESTRUCTIVE: %s (review the file before applying it)\n", d)
	}
	return nil
}
