// Package schema is tenantry's control-plane data model, the registry:
// shards (PostgreSQL servers that hold tenant schemas), tenants, each
// tenant's placement (shard, schema, isolation mode, epoch) and plans (the
// resource limits a tenant runs under). Every schema is global
// (tenancy.Global()): the registry belongs to the operator, not to a tenant.
// The generated client is in the parent package; the operations on it
// (placement, state changes with their notifications) are in package
// registry.
package schema
