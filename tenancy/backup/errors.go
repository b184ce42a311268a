package backup

import (
	"errors"
	"fmt"
	"strings"
)

// Errors of backup and restore. Each is wrapped with what was asked; match
// them with errors.Is. The struct errors below match one of them too.
var (
	// ErrInvalid: a malformed argument (tenant, schema, mode, archive name,
	// options). Nothing was read or changed.
	ErrInvalid = errors.New("backup: invalid argument")

	// ErrNotFound: the archive does not exist (or has no manifest: an
	// interrupted backup), or a replace found no copy of the tenant to
	// replace.
	ErrNotFound = errors.New("backup: not found")

	// ErrExists: an archive of that name exists, or a restore that does not
	// replace found the tenant already present at the target (its schema
	// exists, or the shared schema holds rows of it). Nothing was changed.
	ErrExists = errors.New("backup: already exists")

	// ErrCorrupt: the archive does not match its manifest (a checksum, a row
	// count or the compressed stream is wrong, a file is missing, or it
	// holds rows of another tenant). A restore refuses it before anything
	// is committed: nothing was changed.
	ErrCorrupt = errors.New("backup: archive corrupt")

	// ErrVerify: the rows loaded by a restore differ from the archive's
	// (count or content hash). The restore was rolled back: nothing was
	// changed.
	ErrVerify = errors.New("backup: restored data does not match the archive")

	// ErrSchemaAhead: the archive's schema is ahead of the desired state
	// (it has tables or columns the desired state lacks, or the target
	// shard's ledger recorded its version after the desired one), or ahead
	// of an existing shared schema it would be restored into. Restoring it
	// would lose data: deploy the newer application (or migrate the shared
	// schema) first. Nothing was changed.
	ErrSchemaAhead = errors.New("backup: archive schema is ahead of the desired state")

	// ErrBusy: another restore of the same tenant is running on the target
	// shard, or a lock could not be had within the lock timeout (a
	// migration or a long transaction of the tenant). Nothing was changed;
	// retry later.
	ErrBusy = errors.New("backup: busy")

	// ErrUnsupported: the schema has a shape this version cannot restore
	// (a cycle of foreign keys between tables), or the archive has a format
	// it does not read.
	ErrUnsupported = errors.New("backup: unsupported")
)

// ChecksumError says which part of an archive does not match its manifest.
// It matches ErrCorrupt.
type ChecksumError struct {
	Archive string
	Table   string
	What    string // "rows", "sha256", "bytes", "stream", "tenant"
	Want    string
	Got     string
	Err     error // the underlying read error, if any
}

func (e *ChecksumError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%v: archive %s, table %s: ", ErrCorrupt, e.Archive, e.Table)
	switch {
	case e.Err != nil:
		fmt.Fprintf(&b, "%s: %v", e.What, e.Err)
	default:
		fmt.Fprintf(&b, "%s is %s, the manifest says %s", e.What, e.Got, e.Want)
	}
	return b.String()
}

// Is makes errors.Is(err, ErrCorrupt) true.
func (e *ChecksumError) Is(target error) bool { return target == ErrCorrupt }

// Unwrap returns the underlying read error.
func (e *ChecksumError) Unwrap() error { return e.Err }

// VerifyError says which restored table differs from the archive. It
// matches ErrVerify.
type VerifyError struct {
	Table string
	What  string // "rows" or "row hash"
	Want  string
	Got   string
}

func (e *VerifyError) Error() string {
	return fmt.Sprintf("%v: table %s: %s is %s after loading, the archive has %s", ErrVerify, e.Table, e.What, e.Got, e.Want)
}

// Is makes errors.Is(err, ErrVerify) true.
func (e *VerifyError) Is(target error) bool { return target == ErrVerify }

// SchemaAheadError lists why an archive is ahead of the state it would be
// restored into. It matches ErrSchemaAhead.
type SchemaAheadError struct {
	ArchiveVersion string // "" when the backup could not tell
	DesiredVersion string
	// Target is the existing shared schema that is behind, "" when the
	// comparison was with the desired state.
	Target string
	// Missing lists what the archive has and the state lacks:
	// "table t", "column t.c", or "version recorded after the desired".
	Missing []string
}

func (e *SchemaAheadError) Error() string {
	what := "the desired state " + e.DesiredVersion
	if e.Target != "" {
		what = "shared schema " + e.Target
	}
	return fmt.Sprintf("%v: archive at version %s is ahead of %s (%s); deploy the newer schema first",
		ErrSchemaAhead, orUnknown(e.ArchiveVersion), what, strings.Join(e.Missing, ", "))
}

// Is makes errors.Is(err, ErrSchemaAhead) true.
func (e *SchemaAheadError) Is(target error) bool { return target == ErrSchemaAhead }

func orUnknown(s string) string {
	if s == "" {
		return "(unknown)"
	}
	return s
}
