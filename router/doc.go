// Package router maps tenants to placements from the registry: it is the
// tenancy.Resolver of a fleet.
//
//	r, err := router.New(ctx, router.Config{RegistryDSN: dsn})
//	...
//	defer r.Close()
//	client := ent.NewClient(ent.Driver(tenancy.NewDriver(r)))
//
// A Router keeps every tenant's placement in memory (Resolve is a map lookup
// under a read lock and allocates nothing) and opens one pgxpool per shard
// for the app role, one for the admin role (Unscoped contexts) and, when the
// shard has a replica, one for the replica. Pools connect lazily.
//
// It hears about changes through LISTEN on registry.Channel over a
// dedicated connection: a notification carries a tenant id and the
// placement's new epoch, and the router reloads that tenant unless its
// cached epoch is already as new. Notifications that arrive together are
// reloaded in one query. When the listening connection breaks, the router
// reconnects with backoff and reloads everything, since notifications may
// have been missed meanwhile; every TTL it reloads everything anyway, as a
// fallback. A tenant not in the cache is looked up in the registry on first
// use (one lookup per tenant at a time); unknown tenants are remembered for
// NegativeTTL.
//
// When the registry cannot be reached, the router keeps serving what it has
// cached; only lookups of uncached tenants fail, with an error wrapping
// ErrRegistryUnavailable. The reload after a reconnect takes the registry's
// epochs as they are, lower ones too: a registry that failed over to a
// standby or was restored may have lost its last changes.
//
// When a shard's DSN changes (a failover), the first load that reads the
// new DSN opens new pools and queues a reload of every placement, which
// moves the shard's tenants and Unscoped access to them; the old pools
// close after RetiredPoolGrace. A load that read the registry before the
// change never swaps a shard back. A placement that cannot be built (a
// pool, a ConfigurePool hook, a bad DSN) fails its tenant's calls and is
// built again by every reload, and on use once NegativeTTL has passed.
//
// What Resolve answers, by the tenant's registry state:
//
//	active              the placement, with the plan's limits
//	read_only, moving   the placement, fenced for writes (tenancy.FenceWrites):
//	                    reads work, writes fail with tenancy.ErrTenantReadOnly (retryable)
//	suspended           tenancy.ErrTenantSuspended
//	deleted, offboarded tenancy.ErrTenantDeleted
//	provisioning, none  tenancy.ErrUnknownTenant
//
// The plan's ReplicaReads lets read-only transactions run on the shard's
// replica (tenancy.ReplicaReads). Errors and logs never show a DSN's
// password.
package router
