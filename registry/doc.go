// Package registry is tenantry's control plane: the store of shards,
// tenants, their placements and plans (the Ent graph in package ent), and the
// operations on it that routers must hear about.
//
// Every operation that changes how a tenant is served — its state
// (Suspend, Resume, SetState), its plan (SetPlan, PutPlan), its placement
// (MoveTo) or its activation (CreateTenant) — bumps the placement's epoch and
// sends NOTIFY on [Channel] with the payload "<tenant id> <epoch>", in the
// same transaction as the change: a router sees the notification if and only
// if the change committed, and compares the epoch with the one it caches.
//
// Placing a tenant picks the least loaded shard that accepts new tenants
// (placed tenants relative to capacity), under a transaction-level advisory
// lock so that concurrent creations cannot overfill a shard. Provisioning
// (CreateTenant) registers the tenant in state provisioning, creates its
// schema on the shard through an [ApplyFunc] (normally the Apply method of
// a provision.Provisioner: a plan cached per desired version, run in one
// round trip with the ledger row) and then activates it; a failed
// provisioning is resumed by calling CreateTenant again with the same slug.
//
// Offboarding (Offboard, RestoreOffboarded, Purge) moves a tenant to state
// offboarded (not served), retires its schema for a retention period
// through [OffboardOps] (provision.Provisioner), and records each
// offboarding ([Offboarding]); the purge deletes the data and marks the
// tenant deleted.
//
// Shard DSNs are postgres:// URLs and may hold a password. They are Sensitive
// in the Ent schema (never printed by String), and every error and log line
// of this package and of package router shows them through [Redact] only.
package registry
