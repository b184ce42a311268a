// Package backup backs up one tenant into an archive and restores an
// archive into any shard, as the same tenant (replace) or as a new one
// (clone), touching no other tenant.
//
// pg_dump and pg_restore work per schema and cannot rename one, nor take
// one tenant's rows out of a shared schema, so archives have their own
// format: under the archive's name in a [Store], one gzip-compressed file of
// PostgreSQL COPY text per table ("data/NNN-table.copy.gz") and, written
// last, "manifest.json" ([Manifest]): tenant, placement mode, source shard
// and schema, schema version, snapshot time, the columns of every table
// with their types, row counts, SHA-256 and an order-independent row hash
// per table, and the sequences' values. [Dir] keeps archives in a local
// directory; an object store implements the same four-method [Store].
//
// [Manager.Backup] reads every table in one REPEATABLE READ READ ONLY
// transaction; with Parallel > 1, other connections import its snapshot
// (pg_export_snapshot, SET TRANSACTION SNAPSHOT) and copy tables at the
// same time. In a shared schema it copies only the tenant's rows of the
// tenant-scoped tables: the statement filters on tenant_id, and row-level
// security (which applies to the owner role it runs as) would drop any
// other row anyway.
//
// [Manager.Restore] refuses an archive whose schema is ahead of the desired
// state ([ErrSchemaAhead]) and migrates one that is behind; it checks every
// data file against the manifest while it streams in ([ErrCorrupt]), loads
// it under the tenant's row-level security, and compares the loaded rows
// with the manifest before anything becomes visible ([ErrVerify]). Into an
// own schema it loads a staging schema and swaps it in with one rename
// transaction, keeping the old schema as a retired one ([Retired],
// [DropRetired]); into a shared schema it deletes and reloads the tenant's
// rows in one transaction, keeping the old rows in a retired schema.
//
// Progress is logged through log/slog ([Config].Logger). Errors wrap the
// sentinel errors of this package; match them with errors.Is.
package backup
