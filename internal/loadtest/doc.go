// Package loadtest is tenantry's load and fault suite: an open-loop load
// generator over many tenants with one aggressor, the runtime stack an app
// uses to serve them, and (in its tests) the faults that stack must ride
// out while loaded.
//
// The generator ([Run]) offers each victim tenant requests at a fixed rate
// from a random phase, and one aggressor tenant Factor times that rate
// (100 by default), open loop (internal/openloop): requests start on their
// schedule whatever the earlier ones are doing, and latency counts from the
// scheduled start, so queueing anywhere is measured (no coordinated
// omission). A request is a point read or, with probability Writes, a small
// write. The [Report] gives, per class (victims, aggressor), p50/p99/p99.9
// of successful requests, error counts by kind ([Classify]: throttled,
// busy, shard down, timeout, other) and QPS.
//
// Requests go to a [Target]: one request of one tenant, an error back. The
// [Stack] target is what an app runs in process: the registry-backed
// router (package router), the admission gate with a rate limiter (local,
// or Redis with its local fallback), tenancy.Driver and the example app's
// scoped Ent client, over real shards. The [HTTP] target is the example
// app itself (examples/app/server with its API, JWT authentication and
// Gate.Check as precheck) on a loopback listener over such a stack: each
// tenant sends its signed token, and the answers come back as [HTTPError]
// unwrapping to the errors Classify knows (429 throttled or tenant_busy,
// 503 unavailable, read-only or timeout).
//
// [StartFleet] starts throwaway clusters (a registry and N shards, from
// internal/pgtest) and [Provision] creates tenants in them through the
// registry: every OwnEvery-th in a schema of its own, the others in each
// shard's shared schema. `tenantctl bench load` runs all of it and prints
// the report; the tests kill a shard, stop Redis, stop the registry and
// time out a statement mid-transaction during load, over both targets, and
// assert correctness only. The speed target ([TargetP99]) is held by
// BenchmarkLoadHTTP and `tenantctl bench load` ([RunInterleaved] measures
// the victims alone as the same run's baseline). Figures and commands are
// in BENCHMARKS.md.
package loadtest
