// Package migrate computes the desired state of a tenant schema and brings
// schemas to it: one schema at a time ([Desired.Apply]) or a whole fleet of
// schemas on many shards ([Fleet]).
//
// The desired state ([Desired], from [NewDesired]) is the Ent graph's tables,
// converted to an Atlas schema by Ent itself, plus guard state that keeps
// tenants apart even when many of them share one schema:
//
//   - for every foreign key between two tenant-scoped tables (tables with a
//     tenant_id column), a second, composite foreign key
//     (tenant_id, fk) → (tenant_id, ref) and the unique index it needs on the
//     referenced table, so no row can point at another tenant's row (it
//     cascades where Ent's key cascades, and is checked at commit where Ent's
//     key sets NULL, so that it never races Ent's key on a delete);
//   - row-level security, enabled and forced, with the policy
//     tenant_isolation on every tenant-scoped table;
//   - grants to the app and admin roles ([Roles], [EnsureRoles]).
//
// [Desired.Apply] brings one schema to that state in a single transaction:
// it takes a per-schema advisory lock, sets a short lock_timeout, creates the
// schema if needed, inspects it with Atlas, plans and runs the difference
// under a transaction-local search_path of exactly that schema, and then
// reconciles the guard DDL that Atlas does not manage (policies, RLS flags,
// grants). Applying an up-to-date schema runs nothing and returns an empty
// [Result]. Dropping tables or columns is refused with [ErrDestructive]
// unless [Options].AllowDestructive is set (Atlas's sqlcheck/destructive
// analyzer decides what is destructive).
//
// [Provisioner] creates new schemas in one round trip each: the plan from an
// empty schema is computed once per version and cached, and each new schema
// runs it in one transaction with its ledger row at the desired version (or
// renames a spare schema made ahead of time, [Provisioner.Prepare]).
//
// # Fleets
//
// A [Fleet] migrates every target schema ([Targets]: [Discover] by catalog
// pattern, or a [TargetList]) of every shard without inspecting each one:
//
//   - plan ([Fleet.Plan]): on all shards in parallel, one set-based catalog
//     query fingerprints every target ([Fingerprints]); the desired state is
//     fingerprinted once (built in a scratch schema inside a transaction that
//     is rolled back, and recorded in the ledger for later runs); targets at
//     a fingerprint known for the version are up to date and not touched;
//     the others are grouped by fingerprint and each group is planned once,
//     on a representative, inside a rolled-back transaction, which also
//     yields the fingerprint every member must end at;
//   - apply ([Fleet.Apply]): destructive plans are refused unless allowed;
//     each member runs its group's statements in one transaction, sent in
//     one round trip: owner role, lock_timeout, advisory lock, a check that
//     no other run migrated it meanwhile, transaction-local search_path, the
//     statements, and the ledger rows. Shards run in parallel, Concurrency
//     members at a time each; a canary batch first, then batches; lock
//     timeouts are retried with backoff; failures are recorded and counted
//     against a failure budget; a shard that stops answering fails its
//     remaining targets at once;
//   - verify: every migrated schema is fingerprinted again (one query per
//     shard); one that is not where its plan promised is repaired with a
//     full inspection, or reported as drifted when what differs is not
//     tenantry's to manage.
//
// The ledger lives in the schema tenantry of each shard database
// ([EnsureLedger], [Ledger]): one row per attempt, written in the same
// transaction as the schema's DDL when it succeeds (so a crash can never
// leave a schema migrated but unrecorded, or recorded but not migrated), and
// in a transaction of its own when it fails. [Fleet.Status] counts schemas
// per version and shard and shows drifted schemas with what differs
// ([Describe]); [Metrics] exports Prometheus metrics.
//
// With [Fleet].Dir set, the fleet runs versioned: the pending files of an
// Atlas migration directory (checked against atlas.sum) are applied to each
// schema in order, one transaction per file, through the same runner and
// ledger; [Diff] writes the next file from a change of the Ent graph.
package migrate
