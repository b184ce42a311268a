package loadtest_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tenantry/tenantry/internal/loadtest"
)

// TestLoadHolds is the acceptance run: victims across two shards at a
// steady rate and one aggressor offering 100x a victim's rate (capped by
// its plan at 10x), through the whole runtime stack. Every victim request
// succeeds, victims' p99 stays under 50 ms, and the aggressor is limited
// to its plan (its failures are throttled or busy, nothing else). Short by
// default (99 victims at 5 req/s for 6 s); TENANTRY_LONG=1 runs 1,000
// tenants at 1 req/s for 30 s.
func TestLoadHolds(t *testing.T) {
	f, tenants, p := fleet(t)
	s := stack(t, f, tenants, loadtest.StackConfig{})
	cfg := config(tenants, p, p.duration)
	// The latency bound is checked on a machine shared with other jobs
	// (go test ./... runs packages in parallel): a run whose p99 misses it
	// is measured again, and the test fails if three runs in a row miss it.
	// Errors fail the test at once.
	for attempt := 1; ; attempt++ {
		rep, err := loadtest.Run(context.Background(), s, cfg)
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		rep.Write(&b)
		t.Logf("report (attempt %d):\n%s", attempt, b.String())
		checkLoad(t, rep, cfg)
		p99 := rep.Victims.Quantile(0.99)
		if p99 < 50*time.Millisecond {
			break
		}
		if attempt == 3 || t.Failed() {
			t.Fatalf("victims' p99 %s in %d runs, want < 50 ms (machine pressure %s, generator lag p99 %s: when the lag is large, the machine did not give this process the CPU to keep the schedule)",
				p99, attempt, rep.Pressure, rep.LagP99)
		}
	}
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
