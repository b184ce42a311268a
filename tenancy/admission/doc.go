// Package admission decides when a tenant's statement or transaction may
// take a connection from its shard's pool, so that one tenant cannot starve
// the others of connections.
//
// A [Gate] implements [tenancy.Gate]; put it in front of every shard pool
// with [tenancy.WithGate]:
//
//	gate := admission.New(admission.Config{RateLimiter: ratelimit.NewLocal()})
//	drv := tenancy.NewDriver(resolver, tenancy.WithGate(gate))
//
// Per shard pool it keeps as many statements and transactions running as
// the pool has connections (pgxpool's own acquire queue is FIFO, so the
// waiting happens here, not there); a shard's primary, replica and admin
// pools are counted apart. Per tenant and pool it applies the plan's limits
// from [tenancy.Limits]:
//
//   - MaxConns caps how many of the shard's connections the tenant holds
//     at once;
//   - QueueTimeout bounds how long a statement waits for a slot; past it,
//     Enter fails with an error wrapping [ErrTenantBusy] that carries a
//     retry-after;
//   - the optional [RateLimiter] (tenancy/ratelimit) runs first, so a
//     throttled tenant never takes a queue position.
//
// Waiting tenants are served by deficit round robin charged in connection
// time: every tenant with waiters earns the same quantum per round and pays
// its recent average connection hold time per admission. A tenant with a
// deep queue, or with slow queries, gets its share and no more; a tenant
// with a few quick queries waits about one slot release, whatever the
// others queue.
//
// The gate keeps state per pool and per tenant on it while they are in
// use, and drops it once they have been idle for Config.IdleTTL: its memory
// follows the tenants and pools in recent use, including across the pool
// replacements of a router's failovers.
//
// Enter and Leave do not allocate when the tenant is under its limits and a
// slot is free; waiting reuses pooled waiters.
package admission
