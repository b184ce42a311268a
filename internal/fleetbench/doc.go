// Package fleetbench holds the fleet-scale benchmarks of issue 5, run on
// real PostgreSQL clusters that internal/pgtest starts (they fail, never
// skip, when PostgreSQL or pgbench is missing):
//
//   - BenchmarkNoisyNeighborFleet: 60 victim tenants (40 in schemas of
//     their own, 20 in a shared schema) at a steady open-loop rate and one
//     aggressor tenant offering 100x their rate on the same shard, measured
//     in the same run, interleaved slice by slice: (a) the victims alone,
//     (b) with the aggressor through a plain driver over the shared pgxpool
//     (its FIFO acquire queue), (c) with the aggressor under tenantry's
//     admission gate and rate limiter;
//   - BenchmarkFleetThroughput: a thousand tenants doing point reads and
//     small writes through the scoped Ent client, closed loop, next to
//     `pgbench -S` on the same cluster in the same run;
//   - BenchmarkPlanCacheSchemaSwitch: what a prepared statement shared by
//     many schemas costs the server (re-analysis and re-planning at every
//     search_path change), against one statement per schema;
//   - BenchmarkThrottledRequest: what one request refused by the rate
//     limiter costs the app process.
//
// The figures and the exact commands are in BENCHMARKS.md. `go test`
// without -bench runs only short smoke tests of the same code. The
// package's non-test code sets up a fleet of tenants on a cluster (Setup),
// runs pgbench (InitPgbench, RunPgbench), reads CPU times from /proc
// (SelfCPU, ServerCPU) and summarises latencies (Latencies).
package fleetbench
