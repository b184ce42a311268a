// Package migrate computes the desired state of a tenant schema and applies
// it to one PostgreSQL schema at a time.
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
// unless [Options].AllowDestructive is set.
//
// Running Apply across a fleet of schemas (fingerprinting, grouping,
// batching, the ledger) is not this package's job yet; the fleet runner will
// call Apply, or its plan, per schema.
package migrate
