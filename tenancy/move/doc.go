// Package move moves one tenant between shards while it is being served
// (own schema → own schema or dedicated shard; shared schema → own schema):
// a snapshot copy and logical replication to the target, a short write
// fence, a final catch-up, and a flip of the registry. Every other tenant
// on both shards is served throughout; the moved tenant's reads are served
// throughout, its writes are refused (retryably) only during the fence.
//
// # Phases
//
// A move is a registry Job of kind "move" (one running job per tenant),
// recording the phase it entered, its parameters, its owner and a
// heartbeat:
//
//   - prepare: removes what an earlier move of the tenant left behind, and
//     creates the target schema at the desired state through the registry's
//     provisioning path ([Config].Apply, normally provision.ApplySchema),
//     without data.
//   - copy: on the source, a publication FOR TABLES IN SCHEMA and the
//     replication slot, created on a replication connection that exports
//     its snapshot (CREATE_REPLICATION_SLOT … (SNAPSHOT 'export')), so that
//     both shards may be databases of one cluster; the target's indexes
//     and constraints, primary keys included, are dropped; the mover
//     copies every table as of the slot's snapshot ([Config].CopyWorkers
//     tables at a time, binary COPY TO in transactions that imported the
//     snapshot, COPY FROM into the target, streamed through the mover),
//     rebuilds the indexes ([Config].IndexWorkers at a time) and
//     constraints, then creates the subscription WITH (create_slot = false,
//     slot_name = …, copy_data = false, synchronous_commit = on), which
//     applies what the source committed after the snapshot.
//   - catchup: waits until the slot's confirmed position is within
//     [Config].CatchupLag of the source's current WAL position.
//   - fence: the registry state becomes moving (routers then refuse writes
//     with tenancy.ErrTenantReadOnly, which is retryable); after
//     [Config].RouterGrace, the app and admin roles lose INSERT, UPDATE,
//     DELETE and TRUNCATE on the source schema's tables, so that a router
//     that missed the registry's notification fails rather than writing to
//     the copy that is about to die; then the transactions that were writing
//     when the fence went up are waited for (those still running after
//     [Config].DrainTimeout are terminated: their writes roll back, never
//     acknowledged).
//   - sync: waits until the slot's confirmed position reaches the source's
//     pg_current_wal_lsn() read after the drain, i.e. every acknowledged
//     write of the tenant is on the target; copies the sequences' values;
//     opens a REPEATABLE READ snapshot of the target for verification.
//   - flip: one registry transaction points the placement at the target,
//     sets the tenant active, bumps the epoch and notifies routers
//     (registry.Store.Cutover). The write-unavailability window is from the
//     registry fence to here ([Result].Window, metric
//     tenantry_move_cutover_window_seconds).
//   - verify: per table, count and an order-independent hash of every row
//     (md5 of the row's text, columns in name order, under fixed output
//     settings), on the fenced source against the target's snapshot taken
//     before the flip.
//   - cleanup: subscription (disabled, detached from its slot, dropped),
//     slot and publication are removed; the source schema is retired:
//     renamed to retired_<tenant>_<time> with no access for the app and
//     admin roles and a description in its comment, the same form as the
//     retired schemas of tenancy/backup, so backup.Retired lists it;
//     [Mover.DropRetired] drops those older than a retention period.
//
// # Failures, resume, abort
//
// A failure before the flip rolls back: writes given back on the source,
// the tenant's state as before, subscription, slot, publication and target
// schema removed ([PhaseError].RolledBack). What cannot be removed at once
// (e.g. the target shard is down) is removed by the next move of the
// tenant, which starts by cleaning up: replication objects have names
// derived from the tenant id. A failure after the flip leaves the tenant on
// the target and the job for [Mover.Resume].
//
// A mover that dies leaves its job running with an old heartbeat.
// [Mover.Resume] takes it over after [Config].StaleAfter and continues: a
// copy starts over, a catch-up continues on the existing subscription, a
// fenced move re-applies the fence and finishes the final catch-up, a
// flipped one finishes verification (skipped: the target took writes
// since) and cleanup. [Mover.Abort] rolls back any move that has not
// flipped: a live mover is asked through the job record and rolls back
// itself; a dead mover's move is rolled back by Abort.
//
// # The database fence
//
// Own schema (schema and dedicated placements): REVOKE of the writes on
// every table of the schema, from the app and admin roles. Privileges are
// checked at every execution against the catalog, so the revoke applies to
// the very next statement of every session, whatever its isolation level,
// and the drain waits only for the transactions that took a write lock on
// the tenant's tables before it. Rolling back grants back INSERT, UPDATE
// and DELETE (what migrate grants). A migrate run on the source during a
// fence would give the writes back (it reconciles grants): do not migrate
// a shard's moving tenants.
//
// Shared placement (a tenant leaving a shared schema for its own schema on
// another shard): a REVOKE is table-wide and would fence every tenant of
// the schema, and a restrictive row-level security policy cannot make a
// DELETE fail (it filters the rows silently: a lost write). The fence is
// instead a row per tenant in tenantry_move.fence, checked by a BEFORE
// INSERT OR UPDATE OR DELETE row trigger (SECURITY DEFINER) that raises
// SQLSTATE 25006 for the fenced tenant's rows; the trigger exists only
// while a move out of the schema runs. The drain waits for the backends
// whose application_name is the tenant's (the driver tags every
// transaction "tenant:<id>"), whatever locks they hold, so that a
// REPEATABLE READ transaction whose snapshot predates the fence row cannot
// write after it; and for the unscoped ones ("tenantry:unscoped") begun
// before the fence that hold a write lock in the schema or a snapshot (an
// admin job's REPEATABLE READ transaction, a statement under way). Like
// the tenant's, those still running after DrainTimeout are ended.
//
// Moves out of a shared schema differ in three more ways. The publication
// lists the tenant-scoped tables with a row filter WHERE (tenant_id = …);
// since a row filter may only use replica identity columns, the shared
// tables get REPLICA IDENTITY FULL for the move (otherwise every tenant's
// UPDATE and DELETE would fail), restored afterwards. PostgreSQL's logical
// replication maps tables by schema-qualified name, so the target copy is
// built in a staging schema of the shared schema's name (the target shard
// must not have one: ErrTargetExists) and renamed to the tenant's own
// schema at the flip. Cleanup moves the tenant's rows out of the shared
// schema into a retired schema, in one transaction.
//
// # Requirements
//
// The shard DSNs' user runs the move: it creates publications, slots and
// subscriptions (a superuser on PostgreSQL 15), and the source DSN is
// stored in the target's subscription (pg_subscription, readable by
// superusers only). Shards need wal_level = logical and room for one
// replication slot, one walsender and one apply worker per concurrent
// move, and during its copy one replication connection to the source and
// [Config].CopyWorkers connections to each shard.
//
// Progress goes to [Config].Progress (a line redrawn in place), logs to
// [Config].Logger (one line per phase), metrics to [Metrics].
package move
