// Package pitr restores one tenant to a point in time: it recovers a
// throwaway scratch cluster from a shard's base backup and WAL archive to
// time T, exports the tenant from it with tenancy/backup, and restores that
// export over the tenant (replace) or as a new tenant (clone), touching no
// other tenant.
//
// A shard that supports it archives its WAL (archive_mode = on, an
// archive_command copying each finished segment into a directory, see
// ArchiveCommand) with archive_timeout ≤ 60 s, and has base backups taken
// regularly with BaseBackup (pg_basebackup; `tenantctl shards basebackup`).
// archive_timeout bounds the recovery point: a restore to T needs the WAL
// up to T in the archive, which holds at most archive_timeout after T (a
// restore asked earlier fails with ErrNotArchived rather than restoring
// less).
//
// [Restorer.RestoreAt] picks the latest base backup of the tenant's shard
// that finished before T, extracts it into a scratch data directory,
// starts a postgres on it with recovery_target_time = T,
// recovery_target_action = promote and a restore_command reading the
// archive, as the postgres OS user when we run as root, reachable only on a
// unix socket in a private directory, and waits until it has promoted. The
// scratch cluster and its directory are removed at the end, on error and on
// panic, and by a reaper process if this one dies.
package pitr
