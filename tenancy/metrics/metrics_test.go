package metrics_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/tenantry/tenantry/examples/app/ent"
	"github.com/tenantry/tenantry/internal/apptest"
	"github.com/tenantry/tenantry/internal/pgtest"
	"github.com/tenantry/tenantry/tenancy"
	"github.com/tenantry/tenantry/tenancy/admission"
	"github.com/tenantry/tenantry/tenancy/metrics"
	"github.com/tenantry/tenantry/tenancy/ratelimit"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func gather(t *testing.T, reg *prometheus.Registry) map[string]*dto.MetricFamily {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

func labels(m *dto.Metric) string {
	var parts []string
	for _, l := range m.GetLabel() {
		parts = append(parts, l.GetName()+"="+l.GetValue())
	}
	return strings.Join(parts, ",")
}

// find returns the metric of family name whose labels include every
// name=value in want.
func find(mfs map[string]*dto.MetricFamily, name string, want ...string) *dto.Metric {
	for _, m := range mfs[name].GetMetric() {
		ls := "," + labels(m) + ","
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(ls, ","+w+",")
		}
		if ok {
			return m
		}
	}
	return nil
}

// TestBoundedCardinality: 200 tenants on 40 plans yield series for at most
// TopN tenants and MaxPlans plans (+ "other").
func TestBoundedCardinality(t *testing.T) {
	rec := metrics.New(metrics.Options{TopN: 5, MaxPlans: 8, HalfLife: time.Millisecond})
	reg := prometheus.NewRegistry()
	reg.MustRegister(rec)
	shard := &tenancy.Shard{Name: "s0"}
	busiest := tenancy.NewID()
	for i := range 200 {
		p := &tenancy.Placement{Tenant: tenancy.NewID(), Shard: shard, Limits: tenancy.Limits{Plan: fmt.Sprintf("plan%d", i%40)}}
		if i == 0 {
			p.Tenant = busiest
		}
		for range 1 + 100*btoi(i == 0) + i%3 {
			rec.Admitted(p, time.Millisecond)
		}
		rec.Rejected(p, &admission.BusyError{}, 0)
	}
	mfs := gather(t, reg)
	if n := len(mfs["tenantry_top_tenant_rejected_total"].GetMetric()); n != 5*3 {
		t.Fatalf("%d top-tenant rejected series, want 5 tenants x 3 reasons", n)
	}
	if find(mfs, "tenantry_top_tenant_rejected_total", "tenant="+busiest.String(), "reason=busy") == nil {
		t.Fatal("the busiest tenant is not among the top")
	}
	plans := map[string]bool{}
	for _, m := range mfs["tenantry_admission_wait_seconds"].GetMetric() {
		plans[labels(m)] = true
	}
	if len(plans) != 9 || !plans["plan=other"] {
		t.Fatalf("plan label values: %v, want 8 plans and other", plans)
	}
	// After many half-lives without activity: no tenant series at all.
	time.Sleep(50 * time.Millisecond)
	mfs = gather(t, reg)
	if n := len(mfs["tenantry_top_tenant_rejected_total"].GetMetric()); n != 0 {
		t.Fatalf("%d top-tenant series without activity since the last scrape", n)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestThroughClient: queries, latency, errors, throttling and queue depth
// through the generated client, the gate and the wrapped driver.
func TestThroughClient(t *testing.T) {
	env := apptest.New(t)
	free := tenancy.DefaultLimits
	free.Plan, free.RatePerSec, free.Burst = "free", 0.5, 3
	pa, err := tenancy.NewPlacement(apptest.A, env.Shards[0], apptest.SharedSchema, free)
	if err != nil {
		t.Fatal(err)
	}
	pro := tenancy.DefaultLimits
	pro.Plan, pro.MaxConns = "pro", 1
	pc, err := tenancy.NewPlacement(apptest.C, env.Shards[0], apptest.C.SchemaName(), pro)
	if err != nil {
		t.Fatal(err)
	}
	rec := metrics.New(metrics.Options{})
	reg := prometheus.NewRegistry()
	reg.MustRegister(rec)
	gate := admission.New(admission.Config{Observer: rec, RateLimiter: ratelimit.NewLocal()})
	rec.WatchGate(gate)
	res := tenancy.NewStaticResolver(nil, pa, pc)
	drv := rec.Driver(tenancy.NewDriver(res, tenancy.WithGate(gate)), res)
	client := ent.NewClient(ent.Driver(drv))
	ctxA, ctxC := apptest.Ctx(apptest.A), apptest.Ctx(apptest.C)
	for range 3 {
		if _, err := client.Customer.Query().Count(ctxA); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := client.Customer.Query().Count(ctxA); !errors.Is(err, ratelimit.ErrThrottled) {
		t.Fatalf("A: %v, want ErrThrottled", err)
	}
	for range 10 {
		if _, err := client.Customer.Query().Count(ctxC); err != nil {
			t.Fatal(err)
		}
	}
	if err := drv.Exec(ctxC, "SELECT no_such_column", []any{}, nil); err == nil {
		t.Fatal("bad query did not fail")
	}
	// A transaction of C holds C's only slot; C's next statement queues.
	tx, err := client.Tx(ctxC)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Customer.Query().Count(ctxC); err != nil {
		t.Fatal(err)
	}
	queued := make(chan error)
	go func() {
		_, err := client.Customer.Query().Count(ctxC)
		queued <- err
	}()
	deadline := time.Now().Add(5 * time.Second)
	var mfs map[string]*dto.MetricFamily
	for {
		mfs = gather(t, reg)
		if m := find(mfs, "tenantry_top_tenant_queued", "tenant="+apptest.C.String()); m != nil && m.GetGauge().GetValue() == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("C's queued statement does not show in tenantry_top_tenant_queued")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if m := find(mfs, "tenantry_shard_in_flight", "shard=shard0"); m.GetGauge().GetValue() != 1 {
		t.Errorf("shard in flight = %v", m)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := <-queued; err != nil {
		t.Fatal(err)
	}

	mfs = gather(t, reg)
	check := func(name string, want float64, ls ...string) {
		t.Helper()
		m := find(mfs, name, ls...)
		var got float64
		switch {
		case m == nil:
			t.Errorf("%s{%s}: missing", name, strings.Join(ls, ","))
			return
		case m.Counter != nil:
			got = m.GetCounter().GetValue()
		case m.Histogram != nil:
			got = float64(m.GetHistogram().GetSampleCount())
		}
		if got != want {
			t.Errorf("%s{%s} = %v, want %v", name, strings.Join(ls, ","), got, want)
		}
	}
	check("tenantry_queries_total", 3, "plan=free")
	check("tenantry_queries_total", 14, "plan=pro") // 10 + bad + tx statement + commit + queued
	check("tenantry_query_errors_total", 1, "plan=pro")
	check("tenantry_query_duration_seconds", 14, "plan=pro")
	check("tenantry_admission_rejected_total", 1, "plan=free", "reason=throttled")
	check("tenantry_admission_wait_seconds", 3, "plan=free")
	check("tenantry_top_tenant_queries_total", 14, "tenant="+apptest.C.String(), "plan=pro")
	check("tenantry_top_tenant_query_errors_total", 1, "tenant="+apptest.C.String())
	check("tenantry_top_tenant_rejected_total", 1, "tenant="+apptest.A.String(), "plan=free", "reason=throttled")
	check("tenantry_top_tenant_query_duration_seconds", 3, "tenant="+apptest.A.String())
	if m := find(mfs, "tenantry_admission_wait_seconds", "plan=pro"); m.GetHistogram().GetSampleSum() <= 0 {
		t.Errorf("C's queued statement waited 0s: %v", m)
	}
}

func BenchmarkObserver(b *testing.B) {
	rec := metrics.New(metrics.Options{})
	p := &tenancy.Placement{Tenant: tenancy.NewID(), Shard: &tenancy.Shard{Name: "s0"}, Limits: tenancy.Limits{Plan: "pro"}}
	b.ReportAllocs()
	for b.Loop() {
		rec.Admitted(p, 0)
		rec.Released(p)
	}
}

// BenchmarkGateWithObserverAndLimiter: the full gate of the request path,
// uncontended: rate limiter, admission and metrics.
func BenchmarkGateWithObserverAndLimiter(b *testing.B) {
	rec := metrics.New(metrics.Options{})
	g := admission.New(admission.Config{Capacity: func(*tenancy.Shard) int { return 8 }, Observer: rec, RateLimiter: ratelimit.NewLocal()})
	p := &tenancy.Placement{Tenant: tenancy.NewID(), Shard: &tenancy.Shard{Name: "s0"}, Limits: tenancy.Limits{Plan: "pro", MaxConns: 4, RatePerSec: 1e12, Burst: 1 << 30}}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := g.Enter(ctx, p); err != nil {
			b.Fatal(err)
		}
		g.Leave(p)
	}
}
