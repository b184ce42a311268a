package pitr

import (
	"errors"
	"fmt"
)

// Errors of base backups and point-in-time restores; match with errors.Is.
var (
	// ErrInvalid: a malformed argument. Nothing was done.
	ErrInvalid = errors.New("pitr: invalid argument")

	// ErrNoBaseBackup: no complete base backup of the shard finished before
	// the requested time. Pick a later time, or take base backups more
	// often (tenantctl shards basebackup). Nothing was changed.
	ErrNoBaseBackup = errors.New("pitr: no base backup of the shard before the requested time")

	// ErrFuture: the requested time is in the future. Nothing was changed.
	ErrFuture = errors.New("pitr: requested time is in the future")

	// ErrNotArchived: the WAL archive holds no transaction after the
	// requested time, so recovery cannot prove it reached it: the WAL up
	// to T is not archived yet (it is at the latest archive_timeout after
	// T: retry then, or run SELECT pg_switch_wal() on the shard), or
	// archiving is broken (see pg_stat_archiver on the shard). Nothing was
	// changed: a restore never silently restores less.
	ErrNotArchived = errors.New("pitr: WAL up to the requested time is not archived")

	// ErrRecovery: the scratch cluster failed to recover (a missing WAL
	// segment, a damaged base backup, settings the server refuses). The
	// *RecoveryError holds the server log's tail. Nothing was changed.
	ErrRecovery = errors.New("pitr: recovery of the scratch cluster failed")

	// ErrNotArchiving: a base backup was asked of a shard whose
	// archive_mode is off; it could never be recovered to any time after
	// it. Turn archiving on first (ArchiveCommand).
	ErrNotArchiving = errors.New("pitr: the shard does not archive its WAL")

	// ErrUnsupported: a base backup with tablespaces other than the
	// default ones.
	ErrUnsupported = errors.New("pitr: unsupported")
)

// RecoveryError is a failed recovery, with the scratch server's log. It
// matches ErrRecovery, or ErrNotArchived when the server ended recovery
// before reaching the target.
type RecoveryError struct {
	// Reason says what went wrong, e.g. "postgres exited".
	Reason string
	// Log is the tail of the scratch server's log.
	Log string
	// Kind is ErrRecovery or ErrNotArchived.
	Kind error
}

func (e *RecoveryError) Error() string {
	return fmt.Sprintf("%v: %s; server log (tail):\n%s", e.Kind, e.Reason, e.Log)
}

func (e *RecoveryError) Unwrap() error { return e.Kind }
