package loadtest_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/tenantry/tenantry/internal/loadtest"
	"github.com/tenantry/tenantry/internal/pgtest"
	"github.com/tenantry/tenantry/tenancy"
)

func TestMain(m *testing.M) {
	code := pgtest.Main(m)
	if env.fleet != nil {
		env.fleet.Close()
	}
	if benchEnvFleet.fleet != nil {
		benchEnvFleet.fleet.Close()
	}
	os.Exit(code)
}

// long says whether to run the long variants (TENANTRY_LONG=1).
func long() bool { return os.Getenv("TENANTRY_LONG") == "1" }

// params are the load of the tests: short by default, the acceptance
// figures (1,000 tenants, 20 s and more) with TENANTRY_LONG=1.
type params struct {
	tenants  int
	rate     float64       // per victim, requests/s
	duration time.Duration // of TestLoadHolds
}

func testParams() params {
	if long() {
		return params{tenants: 1000, rate: 1, duration: 30 * time.Second}
	}
	// ~200 requests/s in all (99 victims at 1/s, the aggressor at 100/s):
	// enough to have every fault happen under load, and little enough that
	// a CI machine busy with other work keeps up. At 1,000/s a slow run
	// timed out before any fault; at 400/s, with the CPU shared with three
	// busy loops, the HTTP target fell seconds behind (victims timed out,
	// Redis checks waited past the limiter's 100 ms for a pooled
	// connection).
	return params{tenants: 100, rate: 1, duration: 4 * time.Second}
}

// env is the fleet of the test binary, shared by the tests, which run one
// after the other and leave it as they found it (every server running).
var env struct {
	once    sync.Once
	err     error
	fleet   *loadtest.Fleet
	tenants []loadtest.Tenant // the aggressor first, on shard0
	p       params
}

// fleet returns the test binary's fleet: a registry and two shards, with
// testParams().tenants tenants round robin on the shards (the aggressor,
// tenant 0, on shard0), set up on first use.
func fleet(t *testing.T) (*loadtest.Fleet, []loadtest.Tenant, params) {
	t.Helper()
	env.once.Do(func() {
		start := time.Now()
		ctx := context.Background()
		env.p = testParams()
		env.fleet, env.err = loadtest.StartFleet(ctx, 2)
		if env.err != nil {
			return
		}
		victim, aggressor := loadtest.DefaultPlans(env.p.rate, 10)
		env.tenants, env.err = loadtest.Provision(ctx, env.fleet.Store, loadtest.Spec{
			Tenants: env.p.tenants, Shards: []string{loadtest.ShardName(0), loadtest.ShardName(1)},
			VictimPlan: victim, AggressorPlan: aggressor,
		})
		t.Logf("fleet: registry and 2 shards, %d tenants, set up in %s", len(env.tenants), time.Since(start).Round(100*time.Millisecond))
	})
	if env.err != nil {
		t.Fatalf("loadtest fleet: %v", env.err)
	}
	return env.fleet, env.tenants, env.p
}

// quiet is a logger for the stack that keeps its warnings in the test log.
func quiet(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// stack returns a seeded stack over the fleet.
func stack(t *testing.T, f *loadtest.Fleet, tenants []loadtest.Tenant, cfg loadtest.StackConfig) *loadtest.Stack {
	t.Helper()
	cfg.RegistryDSN = f.RegistryDSN
	if cfg.Logger == nil {
		cfg.Logger = quiet(t)
	}
	s, err := loadtest.NewStack(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Seed(context.Background(), ids(tenants), 5); err != nil {
		t.Fatal(err)
	}
	return s
}

// Targets: the load reaches the stack in process (the Stack target) or
// through the example app over HTTP on loopback (the HTTP target, over the
// same kind of stack). Fault scenarios run over both.
const (
	viaStack = "stack"
	viaHTTP  = "http"
)

// eachTarget runs scenario as a subtest per target.
func eachTarget(t *testing.T, scenario func(t *testing.T, via string)) {
	for _, via := range []string{viaHTTP, viaStack} {
		t.Run(via, func(t *testing.T) { scenario(t, via) })
	}
}

// target returns a seeded target of kind via over the fleet, and the stack
// under it (for HTTP, the app's own: its gate and client are the handlers').
func target(t *testing.T, via string, f *loadtest.Fleet, tenants []loadtest.Tenant, cfg loadtest.StackConfig) (loadtest.Target, *loadtest.Stack) {
	t.Helper()
	if via == viaStack {
		s := stack(t, f, tenants, cfg)
		return s, s
	}
	cfg.RegistryDSN = f.RegistryDSN
	if cfg.Logger == nil {
		cfg.Logger = quiet(t)
	}
	h, err := loadtest.NewHTTP(context.Background(), loadtest.HTTPConfig{Stack: cfg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Errorf("close the app: %v", err)
		}
	})
	if err := h.Seed(context.Background(), ids(tenants), 5); err != nil {
		t.Fatal(err)
	}
	return h, h.Stack
}

func ids(ts []loadtest.Tenant) []tenancy.ID {
	out := make([]tenancy.ID, len(ts))
	for i, t := range ts {
		out[i] = t.ID
	}
	return out
}

// config is the load of the tests over tenants (tenants[0] the aggressor).
func config(tenants []loadtest.Tenant, p params, d time.Duration) loadtest.Config {
	return loadtest.Config{
		Victims:   ids(tenants[1:]),
		Aggressor: tenants[0].ID,
		Rate:      p.rate,
		Factor:    100,
		Duration:  d,
		Warmup:    500 * time.Millisecond,
		Timeout:   5 * time.Second,
	}
}

// recorder keeps every result of a run.
type recorder struct {
	mu  sync.Mutex
	all []loadtest.Result
}

func (r *recorder) add(res loadtest.Result) {
	r.mu.Lock()
	r.all = append(r.all, res)
	r.mu.Unlock()
}

func (r *recorder) results() []loadtest.Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]loadtest.Result(nil), r.all...)
}
