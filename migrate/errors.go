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
)

// DestructiveError lists the destructive changes Apply refused to make.
type DestructiveError struct {
	Schema  string
	Changes []string // e.g. `drop column "note" of table "orders"`
}

func (e *DestructiveError) Error() string {
	return fmt.Sprintf("%v in schema %q (set Options.AllowDestructive to apply): %s",
		ErrDestructive, e.Schema, strings.Join(e.Changes, "; "))
}

// Is makes errors.Is(err, ErrDestructive) true.
func (e *DestructiveError) Is(target error) bool { return target == ErrDestructive }
