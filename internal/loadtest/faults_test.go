package loadtest_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/redis/go-redis/v9"

	"github.com/tenantry/tenantry/examples/app/ent/customer"
	"github.com/tenantry/tenantry/examples/app/ent/order"
	"github.com/tenantry/tenantry/internal/loadtest"
	"github.com/tenantry/tenantry/internal/redistest"
	"github.com/tenantry/tenantry/registry"
	"github.com/tenantry/tenantry/router"
	"github.com/tenantry/tenantry/tenancy"
	"github.com/tenantry/tenantry/tenancy/ratelimit"
)

// during runs the load of cfg against s and, meanwhile, fault at offset
// after the start of the run (warm-up included). It returns the report and
// every result.
func during(t *testing.T, s loadtest.Target, cfg loadtest.Config, at time.Duration, fault func()) (*loadtest.Report, []loadtest.Result) {
	t.Helper()
	var rec recorder
	cfg.OnResult = rec.add
	var wg sync.WaitGroup
	wg.Go(func() {
		time.Sleep(at)
		fault()
	})
	rep, err := loadtest.Run(context.Background(), s, cfg)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	rep.Write(&b)
	t.Logf("report:\n%s", b.String())
	return rep, rec.results()
}

// onlyAdmission fails the test for any failure of the aggressor other
// than being throttled or busy.
func onlyAdmission(t *testing.T, results []loadtest.Result) {
	t.Helper()
	for _, r := range results {
		if r.Aggressor && r.Kind != loadtest.OK && r.Kind != loadtest.Throttled && r.Kind != loadtest.Busy {
			t.Errorf("aggressor: %s error: %v", r.Kind, r.Err)
			return
		}
	}
}

// noVictimErrors fails the test for any failed victim request.
func noVictimErrors(t *testing.T, results []loadtest.Result, why string) {
	t.Helper()
	n := 0
	var first loadtest.Result
	for _, r := range results {
		if !r.Aggressor && r.Err != nil {
			if n == 0 {
				first = r
			}
			n++
		}
	}
	if n > 0 {
		t.Errorf("%s: %d victim requests failed, want none; first (%s, tenant %s): %v", why, n, first.Kind, first.Tenant, first.Err)
	}
}

// TestShardKilled kills one shard's server (SIGKILL of the postmaster and
// its children) under load, then restarts it, with the load through the
// example app over HTTP and through the stack in process. The killed
// shard's tenants get errors wrapping tenancy.ErrShardUnavailable and
// nothing else (no timeouts, no untyped errors): over HTTP, 503 with code
// "unavailable" and a Retry-After; the other shard's tenants see no error
// at all (over HTTP: not one non-2xx answer); after the restart every
// tenant of the killed shard is served again within 10 s of the server
// accepting connections, without any manual step, and fails no more.
// (The clock starts when the restarted server is ready, not when the
// restart is called: PostgreSQL's crash recovery is not the stack's to
// speed up, and on a loaded machine it alone took 2.5 s.)
func TestShardKilled(t *testing.T) {
	eachTarget(t, shardKilled)
}

// shardDownErr says what is wrong with r, an error of a tenant of the
// killed shard1, or "" when it is the error the target should give.
func shardDownErr(via string, r loadtest.Result) string {
	if r.Kind != loadtest.ShardDown {
		return fmt.Sprintf("%s error, want tenancy.ErrShardUnavailable", r.Kind)
	}
	if via == viaHTTP {
		var he *loadtest.HTTPError
		if !errors.As(r.Err, &he) || he.Status != http.StatusServiceUnavailable || he.Code != "unavailable" || he.RetryAfterDuration() < time.Second {
			return "want HTTP 503, code unavailable, Retry-After ≥ 1 s"
		}
		return ""
	}
	var ue *tenancy.ShardUnavailableError
	if !errors.As(r.Err, &ue) || ue.Shard != loadtest.ShardName(1) || ue.Tenant != r.Tenant {
		return "want a *tenancy.ShardUnavailableError naming shard1 and the tenant"
	}
	return ""
}

func shardKilled(t *testing.T, via string) {
	f, tenants, p := fleet(t)
	s, _ := target(t, via, f, tenants, loadtest.StackConfig{})
	doomed := map[tenancy.ID]bool{}
	for _, tn := range tenants {
		if tn.Shard == loadtest.ShardName(1) {
			doomed[tn.ID] = true
		}
	}
	if doomed[tenants[0].ID] || len(doomed) == 0 {
		t.Fatal("want the aggressor on shard0 and victims on shard1")
	}
	var killedAt, restartAt, readyAt time.Time
	var faultErr error
	// Long: 8 s, killed at +2 s for 2 s; short: 5 s, killed at +1.5 s for 1.5 s.
	length, at, down := 5*time.Second, 1500*time.Millisecond, 1500*time.Millisecond
	if long() {
		length, at, down = 8*time.Second, 2*time.Second, 2*time.Second
	}
	cfg := config(tenants, p, length)
	_, results := during(t, s, cfg, at, func() {
		killedAt = time.Now()
		if faultErr = f.Shards[1].Kill(); faultErr != nil {
			return
		}
		time.Sleep(down)
		restartAt = time.Now()
		faultErr = f.Shards[1].Restart(context.Background())
		readyAt = time.Now()
	})
	if faultErr != nil {
		t.Fatal(faultErr)
	}
	t.Logf("shard1 killed at +0, restart called at +%s, accepting connections at +%s",
		restartAt.Sub(killedAt).Round(time.Millisecond), readyAt.Sub(killedAt).Round(time.Millisecond))

	// Recovery: each doomed tenant's first success that ended after the
	// restart began; tenants the load did not reach again are probed, for
	// up to 10 s after the server was ready.
	recovered := map[tenancy.ID]time.Time{}
	for _, r := range results {
		end := r.Scheduled.Add(r.Latency)
		if doomed[r.Tenant] && r.Kind == loadtest.OK && end.After(restartAt) {
			if old, ok := recovered[r.Tenant]; !ok || end.Before(old) {
				recovered[r.Tenant] = end
			}
		}
	}
	for id := range doomed {
		for seq := uint64(0); recovered[id].IsZero() && time.Since(readyAt) < 10*time.Second; seq++ {
			if err := s.Do(context.Background(), loadtest.Request{Tenant: id, Op: loadtest.Read, Seq: seq}); err == nil {
				recovered[id] = time.Now()
			} else {
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
	var slowest time.Duration
	for id := range doomed {
		at, ok := recovered[id]
		if !ok {
			t.Errorf("tenant %s of the killed shard not served within 10 s of the server accepting connections again", id)
			continue
		}
		slowest = max(slowest, at.Sub(readyAt))
	}
	if slowest > 10*time.Second {
		t.Errorf("slowest recovery %s after the server was ready again, want ≤ 10 s", slowest)
	}
	t.Logf("recovery: %d tenants, slowest first success %s after the server was ready (%s after the restart call; the server took %s to be ready)",
		len(recovered), slowest.Round(time.Millisecond), (slowest + readyAt.Sub(restartAt)).Round(time.Millisecond), readyAt.Sub(restartAt).Round(time.Millisecond))

	var ndown int
	var sample error
	for _, r := range results {
		switch {
		case r.Aggressor:
		case !doomed[r.Tenant]:
			if r.Err != nil {
				t.Errorf("tenant %s of the surviving shard failed (%s): %v", r.Tenant, r.Kind, r.Err)
			}
		case r.Err != nil:
			if why := shardDownErr(via, r); why != "" {
				t.Errorf("tenant %s of the killed shard: %s: %v", r.Tenant, why, r.Err)
				continue
			}
			if r.Scheduled.Add(r.Latency).Before(killedAt) {
				t.Errorf("tenant %s failed before the kill: %v", r.Tenant, r.Err)
			}
			if at := recovered[r.Tenant]; !at.IsZero() && r.Scheduled.After(at) {
				t.Errorf("tenant %s failed again after it recovered: %v", r.Tenant, r.Err)
			}
			ndown++
			if sample == nil {
				sample = r.Err
			}
		}
	}
	onlyAdmission(t, results)
	if ndown == 0 {
		t.Fatal("no request of the killed shard failed: the kill did not happen under load")
	}
	t.Logf("%d requests of the killed shard's tenants failed with ErrShardUnavailable, e.g.: %v", ndown, sample)
}

// TestRedisStopped stops Redis under load (through the example app over
// HTTP, and in process): the rate limiter's in-process fallback takes over, no request fails because of Redis (victims see no
// error at all), and the aggressor stays limited to its plan.
func TestRedisStopped(t *testing.T) {
	eachTarget(t, redisStopped)
}

func redisStopped(t *testing.T, via string) {
	f, tenants, p := fleet(t)
	srv := redistest.Start(t)
	// No retries, so that the stopped server (connections refused at once)
	// costs nothing; timeouts generous enough that the running one is not
	// taken for down when the machine stalls for 100 ms: each such error
	// hands the limiter's decisions to the fallback for its 1 s cool-down,
	// half of the time before the stop.
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, DialTimeout: 2 * time.Second,
		ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second})
	t.Cleanup(func() { rdb.Close() })
	tg, s := target(t, via, f, tenants, loadtest.StackConfig{Redis: rdb})
	cfg := config(tenants, p, 4*time.Second)
	var stoppedAt time.Time
	var before, after int64
	var stBefore ratelimit.RedisStats
	_, results := during(t, tg, cfg, 2*time.Second, func() {
		stBefore = s.Redis.Stats()
		stoppedAt = time.Now()
		srv.Stop()
	})
	// Before the stop, Redis decided: all the time on a quiet machine; on a
	// saturated one a check may exceed the limiter's 100 ms timeout and
	// fall back, but not for most requests.
	var sentBefore int
	for _, r := range results {
		if r.Scheduled.Before(stoppedAt) && !r.Shed {
			sentBefore++
		}
	}
	if stBefore.FallbackCalls*2 > uint64(sentBefore) {
		t.Errorf("before the stop the limiter should decide in Redis: %+v for %d requests", stBefore, sentBefore)
	}
	t.Logf("before the stop: %d requests, limiter %+v", sentBefore, stBefore)
	st := s.Redis.Stats()
	if !st.Down || st.FallbackCalls == 0 {
		t.Errorf("after the stop the fallback should decide: %+v", st)
	}
	noVictimErrors(t, results, "Redis stopped")
	onlyAdmission(t, results)
	// The aggressor's limit held on both sides of the stop: 10x a victim's
	// rate, plus one burst each (the fallback starts with a full bucket).
	var throttledAfter int64
	first := results[0].Scheduled
	for _, r := range results {
		if r.Scheduled.Before(first) {
			first = r.Scheduled
		}
	}
	for _, r := range results {
		if !r.Aggressor {
			continue
		}
		if r.Scheduled.Before(stoppedAt) {
			if r.Kind == loadtest.OK {
				before++
			}
		} else if r.Kind == loadtest.OK {
			after++
		} else if r.Kind == loadtest.Throttled {
			throttledAfter++
		}
	}
	capRate := 10 * cfg.Rate
	burst := capRate / 10
	end := first.Add(cfg.Warmup + cfg.Duration)
	limit := func(d time.Duration) int64 { return int64(capRate*d.Seconds() + 2*burst + 2) }
	if before > limit(stoppedAt.Sub(first)) || after > limit(end.Sub(stoppedAt)) {
		t.Errorf("aggressor served %d before and %d after the stop; its plan allows %d and %d", before, after, limit(stoppedAt.Sub(first)), limit(end.Sub(stoppedAt)))
	}
	if throttledAfter == 0 {
		t.Error("the aggressor was not throttled after Redis stopped")
	}
	t.Logf("aggressor served %d before the stop and %d after (throttled %d after); limiter %+v", before, after, throttledAfter, st)
}

// TestRegistryStopped stops the registry database under load (through the
// example app over HTTP, and in process): routing continues from the routers' caches and no request fails; an uncached
// tenant gets the typed router.ErrRegistryUnavailable. After the registry
// is back, the router listens again by itself.
func TestRegistryStopped(t *testing.T) {
	eachTarget(t, registryStopped)
}

func registryStopped(t *testing.T, via string) {
	f, tenants, p := fleet(t)
	tg, s := target(t, via, f, tenants, loadtest.StackConfig{})
	cfg := config(tenants, p, 3*time.Second)
	var stopErr, lookupErr error
	_, results := during(t, tg, cfg, 1200*time.Millisecond, func() {
		if stopErr = f.Registry.Stop(); stopErr != nil {
			return
		}
		for deadline := time.Now().Add(2 * time.Second); s.Router.Stats().Listening && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		_, lookupErr = s.Router.Resolve(context.Background(), tenancy.NewID())
	})
	if stopErr != nil {
		t.Fatal(stopErr)
	}
	t.Cleanup(func() {
		// Leave the fleet as found, whatever happened.
		if err := f.Registry.Restart(context.Background()); err != nil && !strings.Contains(err.Error(), "already running") {
			t.Errorf("restart the registry: %v", err)
		}
	})
	if s.Router.Stats().Listening {
		t.Error("the router did not notice that the registry stopped")
	}
	if !errors.Is(lookupErr, router.ErrRegistryUnavailable) {
		t.Errorf("an uncached tenant while the registry is down: got %v, want router.ErrRegistryUnavailable", lookupErr)
	}
	noVictimErrors(t, results, "registry stopped")
	onlyAdmission(t, results)

	if err := f.Registry.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); !s.Router.Stats().Listening; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the router did not listen to the registry again within 10 s")
		}
	}
}

// TestStatementTimeoutMidTransaction runs, under load, a transaction of a
// tenant whose plan has a 200 ms statement_timeout: two writes, then a
// statement that runs past the timeout. The server cancels it, the commit
// fails, and neither write exists afterwards; the tenant's next write
// works, and the load sees no error.
func TestStatementTimeoutMidTransaction(t *testing.T) {
	f, tenants, p := fleet(t)
	ctx := context.Background()
	short := registry.Plan{Name: "loadtest-short", Limits: tenancy.DefaultLimits}
	short.Limits.StatementTimeout = 200 * time.Millisecond
	if err := f.Store.PutPlan(ctx, short); err != nil {
		t.Fatal(err)
	}
	// In shard0's shared schema, which Provision created.
	tn, err := f.Store.CreateTenant(ctx, registry.NewTenant{Slug: "lt-short-" + uuid.NewString()[:8], Plan: short.Name,
		Mode: registry.ModeShared, Shard: loadtest.ShardName(0)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	all := append([]loadtest.Tenant{{ID: tn.ID, Shard: tn.Placement.Shard}}, tenants...)
	s := stack(t, f, all, loadtest.StackConfig{})
	tctx := tenancy.WithTenant(ctx, tn.ID)
	email, number := uuid.NewString()+"@timeout.test", "timeout-"+uuid.NewString()[:8]
	var txErr, slowErr, commitErr error
	_, results := during(t, s, config(tenants, p, 3*time.Second), 1500*time.Millisecond, func() {
		tx, err := s.Client.Tx(tctx)
		if err != nil {
			txErr = err
			return
		}
		c, err := tx.Customer.Create().SetName("partial").SetEmail(email).Save(tctx)
		if err == nil {
			err = tx.Order.Create().SetNumber(number).SetCustomer(c).SetTotalCents(100).Exec(tctx)
		}
		if err != nil {
			txErr = err
			tx.Rollback()
			return
		}
		_, slowErr = tx.Client().ExecContext(tctx, "SELECT pg_sleep(1)")
		commitErr = tx.Commit()
	})
	if txErr != nil {
		t.Fatal(txErr)
	}
	var pgErr *pgconn.PgError
	if !errors.As(slowErr, &pgErr) || pgErr.Code != "57014" {
		t.Fatalf("the slow statement: got %v, want SQLSTATE 57014 (statement_timeout)", slowErr)
	}
	if commitErr == nil {
		t.Fatal("the commit after a cancelled statement succeeded")
	}
	nc, err := s.Client.Customer.Query().Where(customer.Email(email)).Count(tctx)
	if err != nil {
		t.Fatal(err)
	}
	no, err := s.Client.Order.Query().Where(order.Number(number)).Count(tctx)
	if err != nil {
		t.Fatal(err)
	}
	if nc != 0 || no != 0 {
		t.Errorf("partial write: %d customers and %d orders of the timed-out transaction exist", nc, no)
	}
	if _, err := s.Client.Customer.Create().SetName("after").SetEmail(uuid.NewString() + "@timeout.test").Save(tctx); err != nil {
		t.Errorf("the tenant's next write: %v", err)
	}
	noVictimErrors(t, results, "statement timeout of another tenant")
	onlyAdmission(t, results)
}
