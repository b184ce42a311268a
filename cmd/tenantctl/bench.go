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

	"github.com/redis/go-redis/v9"

	"github.com/tenantry/tenantry/internal/loadtest"
	"github.com/tenantry/tenantry/internal/openloop"
	"github.com/tenantry/tenantry/registry"
	"github.com/tenantry/tenantry/tenancy"
)

func benchCommand() command {
	return command{
		name:    "bench",
		summary: "benchmarks: bench load runs many tenants and one aggressor at 100x through the example app over HTTP (or -target stack: in process)",
		run: func(ctx context.Context, args []string, stdout io.Writer) error {
			if len(args) == 0 || args[0] != "load" {
				return errors.New("usage: tenantctl bench load [flags] (tenantctl bench load -h lists them)")
			}
			return runBenchLoad(ctx, args[1:], stdout)
		},
	}
}

type benchLoadFlags struct {
	tenants, shards, ownEvery, customers, conns int
	duration, warmup, timeout                   time.Duration
	rate, factor, capFactor, writes             float64
	registryDSN, aggressor, redisAddr           string
	progress, target                            string
	p99Target                                   time.Duration
	httpConns                                   int
	baseline                                    bool
	rounds                                      int
	seed                                        uint64
}

func runBenchLoad(ctx context.Context, args []string, stdout io.Writer) error {
	var o benchLoadFlags
	fs := flag.NewFlagSet("bench load", flag.ContinueOnError)
	fs.IntVar(&o.tenants, "tenants", 1000, "tenants, the aggressor included")
	fs.IntVar(&o.shards, "shards", 2, "throwaway shards to start (without -registry)")
	fs.IntVar(&o.ownEvery, "own-every", 10, "every n-th tenant gets a schema of its own, the others share their shard's schema (without -registry)")
	fs.IntVar(&o.customers, "customers", 5, "customers per tenant, the rows the reads pick from (created when missing)")
	fs.IntVar(&o.conns, "conns", 8, "connections of each shard pool")
	fs.DurationVar(&o.duration, "duration", 30*time.Second, "measured length of the run")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "unmeasured start of the run")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Second, "timeout of one request")
	fs.Float64Var(&o.rate, "rate", 1, "requests per second of each victim (open loop)")
	fs.Float64Var(&o.factor, "aggressor", 100, "the aggressor's rate, in victim rates")
	fs.Float64Var(&o.capFactor, "aggressor-cap", 10, "the aggressor plan's rate limit, in victim rates (without -registry)")
	fs.Float64Var(&o.writes, "writes", 0.1, "share of requests that write (an order); the others read a customer")
	fs.StringVar(&o.registryDSN, "registry", "", "use the active tenants of this registry (postgres://...) instead of throwaway clusters; the run writes orders (and customers where fewer than -customers exist) into them")
	fs.StringVar(&o.aggressor, "aggressor-tenant", "", "with -registry: the aggressor's slug or id (default: the first tenant by slug); its plan applies as it is")
	fs.StringVar(&o.redisAddr, "redis", "", "host:port of a Redis for the rate limits (default: in-process limiter)")
	fs.StringVar(&o.progress, "progress", "auto", "progress line: auto (when stdout is a terminal), always or never")
	fs.Uint64Var(&o.seed, "seed", 0, "seed of the schedule (0: random)")
	fs.StringVar(&o.target, "target", "http", "http: through the example app (examples/app) on a loopback port, each tenant with its signed token; stack: the same stack in process, no HTTP (the comparison)")
	fs.IntVar(&o.httpConns, "http-conns", 1024, "with -target http: connections the load generator keeps open to the app")
	fs.DurationVar(&o.p99Target, "p99-target", loadtest.TargetP99, "the victims' p99 (with the aggressor) the run must hold: PASS or MISS")
	fs.BoolVar(&o.baseline, "baseline", true, "also measure the victims without the aggressor, interleaved with the run (-rounds slices each), and report the ratio")
	fs.IntVar(&o.rounds, "rounds", 3, "with -baseline: slices per phase; each phase is measured -duration in all")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: tenantctl bench load [-tenants 1000] [-duration 30s] [-rate 2] [-aggressor 100] [-registry postgres://...] [flags]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("bench load: unexpected arguments %q: bench load takes no arguments, only flags", fs.Args())
	}
	// Checked before any cluster starts; loadtest would take a zero for its
	// default, and a zero rate for the aggressor's plan means no limit.
	for _, c := range []struct {
		bad  bool
		want string
	}{
		{o.tenants < 2, "-tenants must be at least 2 (an aggressor and a victim)"},
		{o.shards < 1, "-shards must be at least 1"},
		{o.ownEvery < 1, "-own-every must be at least 1"},
		{o.customers < 1, "-customers must be at least 1"},
		{o.conns < 1, "-conns must be at least 1"},
		{o.httpConns < 1, "-http-conns must be at least 1"},
		{o.duration <= 0, "-duration must be positive"},
		{o.warmup < 0, "-warmup must not be negative"},
		{o.timeout <= 0, "-timeout must be positive"},
		{o.rate <= 0, "-rate must be positive"},
		{o.factor <= 0, "-aggressor must be positive"},
		{o.capFactor <= 0, "-aggressor-cap must be positive"},
		{o.writes < 0 || o.writes > 1, "-writes must be between 0 and 1"},
		{o.p99Target <= 0, "-p99-target must be positive"},
		{o.rounds < 1, "-rounds must be at least 1"},
	} {
		if c.bad {
			return errors.New("bench load: " + c.want)
		}
	}
	if o.target != "http" && o.target != "stack" {
		return fmt.Errorf("bench load: -target %q: want http or stack", o.target)
	}
	step := func(what string, f func() (string, error)) error {
		fmt.Fprintf(stdout, "%-62s ", what)
		start := time.Now()
		msg, err := f()
		if err != nil {
			fmt.Fprintln(stdout, "FAILED")
			return err
		}
		fmt.Fprintf(stdout, "%8s  %s\n", time.Since(start).Round(10*time.Millisecond), msg)
		return nil
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	dsn := o.registryDSN
	var tenants []tenancy.ID
	if dsn == "" {
		var f *loadtest.Fleet
		defer func() {
			if f != nil {
				f.Close()
				fmt.Fprintln(stdout, "removed the throwaway clusters")
			}
		}()
		if err := step(fmt.Sprintf("start a registry and %d shards (throwaway clusters)", o.shards), func() (string, error) {
			var err error
			f, err = loadtest.StartFleet(ctx, o.shards)
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("registry on 127.0.0.1:%d", f.Registry.Port()), nil
		}); err != nil {
			return err
		}
		dsn = f.RegistryDSN
		shards := make([]string, o.shards)
		for i := range shards {
			shards[i] = loadtest.ShardName(i)
		}
		victim, aggressor := loadtest.DefaultPlans(o.rate, o.capFactor)
		if err := step(fmt.Sprintf("provision %d tenants (1 in %d in its own schema)", o.tenants, o.ownEvery), func() (string, error) {
			ts, err := loadtest.Provision(ctx, f.Store, loadtest.Spec{
				Tenants: o.tenants, Shards: shards, OwnEvery: o.ownEvery, VictimPlan: victim, AggressorPlan: aggressor,
			})
			for _, t := range ts {
				tenants = append(tenants, t.ID)
			}
			return fmt.Sprintf("aggressor plan: %g req/s, burst %d, %d connections, queue timeout %s",
				aggressor.Limits.RatePerSec, aggressor.Limits.Burst, aggressor.Limits.MaxConns, aggressor.Limits.QueueTimeout), err
		}); err != nil {
			return err
		}
	} else {
		if err := step("read the active tenants of the registry", func() (string, error) {
			var err error
			tenants, err = registryTenants(ctx, dsn, o.aggressor, o.tenants)
			return fmt.Sprintf("%d tenants", len(tenants)), err
		}); err != nil {
			return err
		}
	}

	var rdb *redis.Client
	if o.redisAddr != "" {
		rdb = redis.NewClient(&redis.Options{Addr: o.redisAddr, MaxRetries: -1, DialTimeout: 100 * time.Millisecond,
			ReadTimeout: 100 * time.Millisecond, WriteTimeout: 100 * time.Millisecond})
		defer rdb.Close()
	}
	var s benchTarget
	title := "start the runtime stack (router, admission, limiter, client)"
	if o.target == "http" {
		title = "start the example app on loopback over the runtime stack"
	}
	if err := step(title, func() (string, error) {
		cfg := loadtest.StackConfig{RegistryDSN: dsn, Conns: o.conns, Logger: logger}
		limiter := "in-process rate limiter"
		if rdb != nil {
			cfg.Redis, limiter = rdb, "Redis rate limiter at "+o.redisAddr
		}
		if o.target == "stack" {
			st, err := loadtest.NewStack(ctx, cfg)
			s = st
			return fmt.Sprintf("in process, %d connections per shard, %s", o.conns, limiter), err
		}
		h, err := loadtest.NewHTTP(ctx, loadtest.HTTPConfig{Stack: cfg, Conns: o.httpConns})
		if err != nil {
			return "", err
		}
		s = h
		return fmt.Sprintf("%s (JWT per tenant, Precheck: Gate.Check), %d connections per shard, %s", h.URL, o.conns, limiter), nil
	}); err != nil {
		return err
	}
	defer s.Close()
	if err := step(fmt.Sprintf("seed %d customers per tenant", o.customers), func() (string, error) {
		return "", s.Seed(ctx, tenants, o.customers)
	}); err != nil {
		return err
	}
	cfg := loadtest.Config{
		Victims: tenants[1:], Aggressor: tenants[0], Rate: o.rate, Factor: o.factor, Writes: o.writes,
		Duration: o.duration, Warmup: o.warmup, Timeout: o.timeout, Seed: o.seed,
	}
	if o.writes == 0 {
		cfg.Writes = -1
	}
	if o.progress == "always" || (o.progress == "auto" && isTerminal(stdout)) {
		cfg.Progress = stdout
	}
	if !o.baseline {
		fmt.Fprintf(stdout, "run: %s warm-up + %s measured, open loop\n", o.warmup, o.duration)
		rep, err := loadtest.Run(ctx, s, cfg)
		if err != nil {
			return err
		}
		rep.Write(stdout)
		verdict(stdout, rep, o.p99Target)
		return nil
	}
	return benchInterleaved(ctx, stdout, s, cfg, o.rounds, o.p99Target)
}

// benchTarget is a load target that is seeded before the run and closed
// after it: loadtest.Stack or loadtest.HTTP.
type benchTarget interface {
	loadtest.Target
	Seed(ctx context.Context, tenants []tenancy.ID, perTenant int) error
	Close() error
}

// verdict prints PASS or MISS: the victims' p99 with the aggressor under
// target and no victim error.
func verdict(w io.Writer, rep *loadtest.Report, target time.Duration) {
	p99, errs := rep.Victims.Quantile(0.99), rep.Victims.Errors()
	v := "PASS"
	if p99 >= target || errs > 0 || rep.Victims.Count(loadtest.OK) == 0 {
		v = "MISS"
	}
	fmt.Fprintf(w, "%s: victims' p99 %.2f ms (target < %.2f ms), %d victim errors (target 0)\n",
		v, openloop.Ms(p99), openloop.Ms(target), errs)
}

// benchInterleaved measures the victims alone (the baseline) and with the
// aggressor in alternating slices, so that both phases meet the same
// machine noise, and reports both, the ratio of the victims' p99 and the
// verdict against the target.
func benchInterleaved(ctx context.Context, stdout io.Writer, s loadtest.Target, cfg loadtest.Config, rounds int, target time.Duration) error {
	fmt.Fprintf(stdout, "run: %d rounds of two interleaved phases, victims alone and with the aggressor, each slice %s warm-up + %s measured, open loop\n",
		rounds, cfg.Warmup, cfg.Duration/time.Duration(rounds))
	names := [2]string{"victims alone", "with the aggressor"}
	ph, err := loadtest.RunInterleaved(ctx, s, cfg, rounds, func(sl loadtest.Slice) {
		rep, k := sl.Report, 0
		if sl.WithAggressor {
			k = 1
		}
		fmt.Fprintf(stdout, "round %d %-24s victims p50 %6.2f ms  p99 %7.2f ms  service p99 %7.2f ms  errors %d  (machine %s)\n",
			sl.Round+1, names[k], openloop.Ms(rep.Victims.Quantile(0.5)), openloop.Ms(rep.Victims.Quantile(0.99)),
			openloop.Ms(rep.Victims.Service.Quantile(0.99)), rep.Victims.Errors(), sl.Pressure)
	})
	if err != nil {
		return err
	}
	for k, name := range []string{"baseline: victims alone", "with the aggressor"} {
		rep := ph.Alone
		if k == 1 {
			rep = ph.Aggressor
		}
		fmt.Fprintf(stdout, "\n%s (machine cpu pressure %.0f%%)\n", name, 100*ph.CPUPressure[k])
		rep.Write(stdout)
	}
	base, agg := ph.Alone.Victims.Quantile(0.99), ph.Aggressor.Victims.Quantile(0.99)
	fmt.Fprintf(stdout, "\nvictims' p99 with the aggressor / alone: %.2f ms / %.2f ms = %.2f\n",
		openloop.Ms(agg), openloop.Ms(base), ph.Ratio())
	verdict(stdout, ph.Aggressor, target)
	return nil
}

// registryTenants returns up to n active tenants of the registry at dsn,
// the aggressor (a slug or id; empty: the first by slug) first.
func registryTenants(ctx context.Context, dsn, aggressor string, n int) ([]tenancy.ID, error) {
	store, err := registry.Open(ctx, dsn)
	if err != nil {
		return nil, err
	}
	defer store.Close()
	ts, err := store.Tenants(ctx, registry.TenantFilter{State: registry.Active})
	if err != nil {
		return nil, err
	}
	var out []tenancy.ID
	if aggressor != "" {
		t, err := store.Tenant(ctx, aggressor)
		if err != nil {
			return nil, fmt.Errorf("-aggressor-tenant: %w", err)
		}
		if t.State != registry.Active {
			return nil, fmt.Errorf("-aggressor-tenant %s is %s, not active", aggressor, t.State)
		}
		out = append(out, t.ID)
	}
	for _, t := range ts {
		if len(out) >= n {
			break
		}
		if len(out) == 0 || t.ID != out[0] {
			out = append(out, t.ID)
		}
	}
	if len(out) < 2 {
		return nil, fmt.Errorf("the registry has %d active tenants; the run needs at least 2", len(out))
	}
	return out, nil
}
