package loadtest_test

import (
	"context"
	"strings"
	"testing"

	"github.com/tenantry/tenantry/internal/loadtest"
)

// TestLoadHolds is the acceptance run: victims across two shards at a
// steady rate and one aggressor offering 100x a victim's rate (capped by
// its plan at 10x), through the whole runtime stack. Every victim request
// succeeds and the aggressor is limited to its plan (its failures are
// throttled or busy, nothing else). The victims' p99 is logged, not
// asserted: a latency target belongs to a benchmark (`tenantctl bench
// load`, internal/loadtest/BENCHMARKS.md), and this test shares the
// machine with every other package of `go test ./...`. Short by default
// (99 victims at 5 req/s for 6 s); TENANTRY_LONG=1 runs 1,000 tenants at
// 1 req/s for 30 s.
func TestLoadHolds(t *testing.T) {
	f, tenants, p := fleet(t)
	s := stack(t, f, tenants, loadtest.StackConfig{})
	cfg := config(tenants, p, p.duration)
	rep, err := loadtest.Run(context.Background(), s, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	rep.Write(&b)
	t.Logf("report:\n%s", b.String())
	checkLoad(t, rep, cfg)
	t.Logf("victims' p99 %s (target < 50 ms, checked by the benchmark), machine pressure %s, generator lag p99 %s",
		rep.Victims.Quantile(0.99), rep.Pressure, rep.LagP99)
}

// checkLoad checks what must hold in every run of TestLoadHolds, whatever
// the machine does.
func checkLoad(t *testing.T, rep *loadtest.Report, cfg loadtest.Config) {
	t.Helper()
	v, a := &rep.Victims, &rep.Agg
	wantVictims := float64(len(cfg.Victims)) * cfg.Rate * cfg.Duration.Seconds()
	if float64(v.Offered) < 0.95*wantVictims {
		t.Errorf("victims offered %d requests, want about %.0f", v.Offered, wantVictims)
	}
	if n := v.Errors(); n > 0 {
		t.Errorf("victims: %d errors, want none; first: %v", n, v.FirstErr)
	}
	if a.Count(loadtest.Throttled) == 0 {
		t.Errorf("the aggressor was never throttled at 100x a victim's rate")
	}
	for _, k := range []loadtest.Kind{loadtest.ShardDown, loadtest.Timeout, loadtest.Other} {
		if n := a.Count(k); n > 0 {
			t.Errorf("aggressor: %d %s errors, first: %v", n, k, a.FirstErr[k])
		}
	}
	// Its plan allows 10x a victim's rate, plus its burst.
	capRate := 10 * cfg.Rate
	if max := capRate*(cfg.Duration+cfg.Warmup).Seconds() + capRate/10 + 2; float64(a.Count(loadtest.OK)) > max {
		t.Errorf("aggressor: %d requests served, its plan allows at most %.0f", a.Count(loadtest.OK), max)
	}
}
