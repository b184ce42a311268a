// Package metrics exports Prometheus metrics of tenant activity without
// unbounded label cardinality: every series is labelled by plan (a small,
// operator-defined set; past MaxPlans they merge into "other") or by shard,
// and only the TopN busiest tenants get series of their own, labelled by
// tenant. Busiest means the most statements, admissions and rejections,
// decayed with a half-life (default one minute), plus those running and
// waiting at the scrape.
//
// A [Recorder] is a prometheus.Collector. It learns what happens from two
// places:
//
//   - as the admission.Observer of an admission.Gate: admissions, queue
//     wait, rejections (throttled, busy, cancelled), and, at scrape time,
//     queue depth and connections in use per shard and per tenant;
//
//   - through [Recorder.Driver], a dialect.Driver wrapping tenancy.Driver:
//     statements, their latency and their errors.
//
//     rec := metrics.New(metrics.Options{})
//     gate := admission.New(admission.Config{Observer: rec, RateLimiter: rl})
//     rec.WatchGate(gate)
//     prometheus.MustRegister(rec)
//     drv := rec.Driver(tenancy.NewDriver(resolver, tenancy.WithGate(gate)), resolver)
//     client := ent.NewClient(ent.Driver(drv))
//
// Metrics (namespace "tenantry" by default):
//
//	queries_total{plan}                       statements and transactions started
//	query_errors_total{plan}                  of which failed (admission rejections excluded)
//	query_duration_seconds{plan}              histogram: statement latency (to the first row for queries)
//	admission_wait_seconds{plan}              histogram: time queued at the gate
//	admission_rejected_total{plan,reason}     reason: throttled, busy, cancelled
//	shard_capacity{shard,pool} shard_in_flight{shard,pool} shard_queued{shard,pool}   pool: primary, replica, admin
//	top_tenant_queries_total{tenant,plan}     the same, for the TopN busiest tenants only
//	top_tenant_query_errors_total{tenant,plan}
//	top_tenant_rejected_total{tenant,plan,reason}
//	top_tenant_query_duration_seconds{tenant,plan}
//	top_tenant_in_flight{tenant,plan,shard} top_tenant_queued{tenant,plan,shard}
//
// A tenant's top_tenant_ counters count from the start of the process, so
// rate() over them is right while the tenant stays among the busiest; its
// series disappear when it drops out.
package metrics
