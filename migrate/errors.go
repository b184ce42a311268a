package migrate

import (
	"errors"
	"fmt"
	"strings"
)

var (
	// ErrInvalidSchemaName is wrapped by every function given a schema name
	// that ValidateSchemaName rejects. Nothing is sent to the database.
	ErrInvalidSchemaName = errors.New("migrate: invalid schema name")

	// ErrDestructive is matched (errors.Is) by the *DestructiveError that
	// Apply returns when the plan would drop a table or a column and
	// Options.AllowDestructive is not set. Nothing was changed.
	ErrDestructive = errors.New("migrate: destructive change refused")

	// ErrLockTimeout is wrapped when a statement waited longer than
	// Options.LockTimeout for a lock (SQLSTATE 55P03), typically a DDL
	// statement behind a long-running transaction on the same table. The
	// transaction was rolled back; retrying later is safe.
	ErrLockTimeout = errors.New("migrate: lock timeout")

	// ErrNoTables is returned by NewDesired when given no tables.
	ErrNoTables = errors.New("migrate: no tables")

	// ErrUnknownShard is wrapped by a fleet's Plan and Status when a
	// selector or an explicit target names a shard the fleet does not have.
	ErrUnknownShard = errors.New("migrate: unknown shard")

	// ErrNoSchema is wrapped by a fleet's Plan when RunOptions.RequireExisting
	// is set and some targets' schemas do not exist.
	ErrNoSchema = errors.New("migrate: target schema does not exist")
)

// DestructiveError lists the destructive changes Apply (or a fleet run)
// refused to make, as Atlas's destructive analyzer reports them.
type DestructiveError struct {
	Schema string
	// Schemas is, for a fleet run, the number of schemas whose plan has
	// destructive changes; Schema is one of them. Zero for Apply.
	Schemas int
	Changes []string // e.g. `drop column "note" of table "orders" (DS103)`
}

func (e *DestructiveError) Error() string {
	if e.Schemas > 0 {
		return fmt.Sprintf("%v in %d schema(s), e.g. %q (allow destructive changes to apply): %s",
			ErrDestructive, e.Schemas, e.Schema, strings.Join(e.Changes, "; "))
	}
	return fmt.Sprintf("%v in schema %q (set Options.AllowDestructive to apply): %s",
		ErrDestructive, e.Schema, strings.Join(e.Changes, "; "))
}

// Is makes errors.Is(err, ErrDestructive) true.
func (e *DestructiveError) Is(target error) bool { return target == ErrDestructive }
