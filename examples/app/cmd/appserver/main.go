// Command appserver serves the example SaaS app's HTTP API.
//
//	appserver [flags]                  serve
//	appserver token -tenant ID [-ttl 1h]   print an HS256 token for a tenant
//	appserver apikey -tenant ID        print a new API key and the line to store
//
// Secrets come from the environment, never from flags (which ps shows):
// APP_JWT_SECRET (at least 32 bytes, required), APP_ADMIN_TOKEN (enables
// /admin/ and /metrics), APP_API_KEY_PEPPER (enables API keys; stored keys from
// -api-keys). Tenants are routed by the registry (-registry or
// TENANTRY_REGISTRY), or statically with -shard and -tenant. Rate limits
// are per process, or shared across replicas through Redis (-redis).
//
// SIGINT/SIGTERM: stop accepting, drain in-flight requests (-drain), exit.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"

	"github.com/tenantry/tenantry/examples/app/admin"
	"github.com/tenantry/tenantry/examples/app/api"
	"github.com/tenantry/tenantry/examples/app/auth"
	"github.com/tenantry/tenantry/examples/app/server"
	"github.com/tenantry/tenantry/registry"
	"github.com/tenantry/tenantry/router"
	"github.com/tenantry/tenantry/tenancy"
	"github.com/tenantry/tenantry/tenancy/ratelimit"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	var err error
	switch {
	case len(os.Args) > 1 && os.Args[1] == "token":
		err = tokenCmd(os.Args[2:])
	case len(os.Args) > 1 && os.Args[1] == "apikey":
		err = apikeyCmd(os.Args[2:])
	default:
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err = serve(ctx, os.Args[1:], log)
		stop()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "appserver:", err)
		os.Exit(1)
	}
}

func authenticator() (*auth.Authenticator, error) {
	return auth.New(auth.Config{
		Secret:   []byte(os.Getenv("APP_JWT_SECRET")),
		Issuer:   os.Getenv("APP_JWT_ISSUER"),
		Audience: os.Getenv("APP_JWT_AUDIENCE"),
		Pepper:   []byte(os.Getenv("APP_API_KEY_PEPPER")),
	})
}

func tokenCmd(args []string) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	tenant := fs.String("tenant", "", "tenant id")
	ttl := fs.Duration("ttl", time.Hour, "validity")
	if err := fs.Parse(args); err != nil {
		return err
	}
	id, err := tenancy.ParseID(*tenant)
	if err != nil {
		return err
	}
	a, err := authenticator()
	if err != nil {
		return err
	}
	tok, err := a.Token(id, *ttl)
	if err != nil {
		return err
	}
	fmt.Println(tok)
	return nil
}

func apikeyCmd(args []string) error {
	fs := flag.NewFlagSet("apikey", flag.ContinueOnError)
	tenant := fs.String("tenant", "", "tenant id")
	if err := fs.Parse(args); err != nil {
		return err
	}
	id, err := tenancy.ParseID(*tenant)
	if err != nil {
		return err
	}
	a, err := authenticator()
	if err != nil {
		return err
	}
	key, stored, err := a.NewAPIKey(id)
	if err != nil {
		return err
	}
	fmt.Printf("key (give it to the customer once): %s\nstore this line in the -api-keys file: %s\n", key, stored)
	return nil
}

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

func serve(ctx context.Context, args []string, log *slog.Logger) error {
	fs := flag.NewFlagSet("appserver", flag.ContinueOnError)
	listen := fs.String("listen", envOr("APP_LISTEN", "127.0.0.1:8080"), "listen address")
	reg := fs.String("registry", os.Getenv("TENANTRY_REGISTRY"), "registry DSN (postgres://...); empty: static -shard/-tenant")
	unscopedShard := fs.String("unscoped-shard", "", "registry mode: shard of unscoped admin queries that name no tenant")
	var shards, tenants multi
	fs.Var(&shards, "shard", "static mode: NAME=postgres://... (repeatable); pools connect as tenantry_app and tenantry_admin")
	fs.Var(&tenants, "tenant", "static mode: TENANT_ID=SHARD/SCHEMA (repeatable)")
	keysFile := fs.String("api-keys", "", "file of stored API keys, one \"<key id> <tenant id> <hmac>\" a line")
	drain := fs.Duration("drain", 20*time.Second, "longest drain of in-flight requests on shutdown")
	redisAddr := fs.String("redis", os.Getenv("APP_REDIS"), "Redis host:port for rate limits shared across replicas; empty: in-process limits")
	replicas := fs.Int("replicas", 1, "with -redis: app replicas, so that each allows 1/N of a plan's rate while Redis is down")
	if err := fs.Parse(args); err != nil {
		return err
	}
	a, err := authenticator()
	if err != nil {
		return err
	}
	if *keysFile != "" {
		if err := loadKeys(a, *keysFile); err != nil {
			return err
		}
	}

	metricsReg := prometheus.NewRegistry()
	metricsReg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	var (
		resolver tenancy.Resolver
		checks   []server.Check
		shardsOf func() []*tenancy.Shard
		lister   admin.TenantLister
	)
	switch {
	case *reg != "":
		r, err := router.New(ctx, router.Config{RegistryDSN: *reg, UnscopedShard: *unscopedShard, Logger: log})
		if err != nil {
			return err
		}
		defer r.Close()
		store, err := registry.Open(ctx, *reg)
		if err != nil {
			return err
		}
		defer store.Close()
		resolver, shardsOf = r, r.Shards
		checks = append(checks, server.Check{Name: "registry", Check: func(ctx context.Context) error {
			if st := r.Stats(); !st.Listening {
				return fmt.Errorf("router not listening for placement changes: %s", st.LastError)
			}
			return nil
		}})
		lister = func(ctx context.Context) ([]tenancy.ID, error) {
			ts, err := store.Tenants(ctx, registry.TenantFilter{})
			if err != nil {
				return nil, err
			}
			ids := make([]tenancy.ID, 0, len(ts))
			for _, t := range ts {
				if t.State != registry.Deleted {
					ids = append(ids, t.ID)
				}
			}
			return ids, nil
		}
	case len(shards) > 0:
		res, list, err := static(ctx, shards, tenants)
		if err != nil {
			return err
		}
		resolver, shardsOf = res, func() []*tenancy.Shard { return list }
		ids := make([]tenancy.ID, 0, len(tenants))
		for _, t := range tenants {
			id, _ := tenancy.ParseID(strings.SplitN(t, "=", 2)[0])
			ids = append(ids, id)
		}
		lister = func(context.Context) ([]tenancy.ID, error) { return ids, nil }
		defer func() {
			for _, sh := range list {
				sh.Pool.Close()
				sh.Admin.Close()
			}
		}()
	default:
		return errors.New("set -registry (or TENANTRY_REGISTRY), or -shard and -tenant")
	}

	var opts server.StackOptions
	if *redisAddr != "" {
		rdb := redis.NewClient(&redis.Options{Addr: *redisAddr, MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
		defer rdb.Close()
		opts.RateLimiter = ratelimit.NewRedis(rdb, ratelimit.RedisOptions{FallbackShare: 1 / float64(max(*replicas, 1)), Logger: log})
	}
	stack, err := server.NewStack(resolver, metricsReg, opts)
	if err != nil {
		return err
	}
	checks = append(checks, server.Check{Name: "shards", Check: func(ctx context.Context) error {
		var errs []error
		for _, c := range server.ShardChecks(shardsOf()) {
			if err := c.Check(ctx); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", c.Name, err))
			}
		}
		return errors.Join(errs...)
	}})
	cfg := server.Config{
		API: &api.API{Client: stack.Client, Log: log}, Auth: a, Ready: checks,
		Metrics: metricsReg, Log: log, ShutdownTimeout: *drain,
		// A tenant the rate limiter refused is turned away before its
		// queries are built (80 ns instead of ~8 µs and 130 allocations).
		Precheck: stack.Gate.Check,
		// /metrics and the reasons of failing readiness checks are for
		// operators, who hold the admin token.
		OpsToken: os.Getenv("APP_ADMIN_TOKEN"),
	}
	if tok := os.Getenv("APP_ADMIN_TOKEN"); tok != "" {
		// The fleet report reads across tenants (examples/app/admin, on the
		// tenantlint allow-list); it is served only to the admin token.
		h, err := admin.NewHandler( //tenantlint:ok admin endpoints behind APP_ADMIN_TOKEN; the hatch stays in examples/app/admin
			&admin.Fleet{Client: stack.Admin, Resolver: resolver, Tenants: lister}, tok)
		if err != nil {
			return err
		}
		cfg.Admin = h
	}
	srv, err := server.New(cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	log.Info("appserver listening", "addr", ln.Addr().String())
	return srv.Serve(ctx, ln)
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func loadKeys(a *auth.Authenticator, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, err := auth.ParseStoredKey(line)
		if err != nil {
			return fmt.Errorf("%s:%d: %w", path, n, err)
		}
		if err := a.AddAPIKey(k); err != nil {
			return fmt.Errorf("%s:%d: %w", path, n, err)
		}
	}
	return sc.Err()
}

// static builds a resolver from -shard NAME=DSN and -tenant ID=SHARD/SCHEMA.
func static(ctx context.Context, shardArgs, tenantArgs []string) (*tenancy.StaticResolver, []*tenancy.Shard, error) {
	byName := map[string]*tenancy.Shard{}
	var list []*tenancy.Shard
	closeAll := func() {
		for _, sh := range list {
			sh.Pool.Close()
			sh.Admin.Close()
		}
	}
	for _, s := range shardArgs {
		name, dsn, ok := strings.Cut(s, "=")
		if !ok || name == "" {
			closeAll()
			return nil, nil, fmt.Errorf("-shard %q: want NAME=postgres://...", name)
		}
		sh := &tenancy.Shard{Name: name}
		var err error
		if sh.Pool, err = pool(ctx, dsn, "tenantry_app"); err == nil {
			if sh.Admin, err = pool(ctx, dsn, "tenantry_admin"); err != nil {
				sh.Pool.Close()
			}
		}
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("-shard %s: %w", name, err)
		}
		byName[name] = sh
		list = append(list, sh)
	}
	var ps []*tenancy.Placement
	for _, t := range tenantArgs {
		ids, where, _ := strings.Cut(t, "=")
		shard, schema, ok := strings.Cut(where, "/")
		id, err := tenancy.ParseID(ids)
		if err != nil || !ok || byName[shard] == nil {
			closeAll()
			return nil, nil, fmt.Errorf("-tenant %q: want TENANT_ID=SHARD/SCHEMA with a shard given by -shard", t)
		}
		p, err := tenancy.NewPlacement(id, byName[shard], schema, tenancy.DefaultLimits)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		ps = append(ps, p)
	}
	return tenancy.NewStaticResolver(nil, ps...), list, nil
}

func pool(ctx context.Context, dsn, role string) (*pgxpool.Pool, error) {
	dsn, err := registry.WithUser(dsn, role)
	if err != nil {
		return nil, err
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	params, err := tenancy.DefaultLimits.RuntimeParams()
	if err != nil {
		return nil, err
	}
	for k, v := range params {
		cfg.ConnConfig.RuntimeParams[k] = v
	}
	return pgxpool.NewWithConfig(ctx, cfg)
}
