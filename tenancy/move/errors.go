package move

import (
	"errors"
	"fmt"
)

// Errors of moves. Each is wrapped with the tenant and what was asked;
// match them with errors.Is.
var (
	// ErrMoveInProgress: the tenant has a running move (or another running
	// job). Wait for it, resume it if its mover died (tenantctl tenants move
	// -resume TENANT) or abort it (-abort TENANT).
	ErrMoveInProgress = errors.New("move: the tenant is being moved already: wait, resume it (-resume) if its mover died, or abort it (-abort)")
	// ErrSameShard: the target is the shard the tenant is on. Name another
	// shard.
	ErrSameShard = errors.New("move: the tenant is on that shard already: name another shard")
	// ErrUnsupported: this kind of move is not implemented (see the
	// package documentation for what is).
	ErrUnsupported = errors.New("move: unsupported move (supported: own schema or shared schema → own schema or dedicated shard on another shard)")
	// ErrTargetExists: the target shard has a schema of that name that no
	// earlier move of this tenant left behind. Check what it is and drop or
	// rename it before moving.
	ErrTargetExists = errors.New("move: the target schema exists on the target shard and is not a leftover of a move of this tenant: check it and drop or rename it first")
	// ErrTargetNotEmpty: a dedicated placement needs a shard without tenants.
	ErrTargetNotEmpty = errors.New("move: a dedicated placement needs a shard that holds no tenant: add an empty shard (tenantctl shards add)")
	// ErrTargetRefuses: the target shard does not take the tenant: it
	// holds a dedicated tenant, or it is drained (not accepting) or full.
	// A drained or full shard takes it with Request.Force.
	ErrTargetRefuses = errors.New("move: the target shard does not take more tenants: name another shard, or, for a drained or full shard you mean to fill, force it (-force)")
	// ErrWalLevel: the source shard does not write the logical WAL a move
	// replicates from.
	ErrWalLevel = errors.New("move: the source shard needs wal_level = logical: set it in its postgresql.conf and restart it")
	// ErrNotServable: the tenant is not in a state a move starts from
	// (active or read_only).
	ErrNotServable = errors.New("move: the tenant must be active or read_only to be moved")
	// ErrNoMove: the tenant has no running move to resume or abort.
	ErrNoMove = errors.New("move: the tenant has no running move")
	// ErrAborted: the move was aborted (by Abort or tenantctl tenants move
	// -abort); the tenant is served by its source as before.
	ErrAborted = errors.New("move: aborted; the tenant is served by its source as before")
	// ErrTooLateToAbort: the registry points at the target already; the
	// move can only be finished (resume it).
	ErrTooLateToAbort = errors.New("move: too late to abort: the tenant is served by the target already; finish the move with -resume")
	// ErrMoverAlive: the running move's mover still sends heartbeats; it
	// cannot be resumed from elsewhere. Wait, or abort it.
	ErrMoverAlive = errors.New("move: its mover is alive (recent heartbeat): wait for it or abort the move")
	// ErrReplication: logical replication failed on the target (a table
	// sync or apply error). The target's server log says why; the move was
	// rolled back and may be run again once the cause is fixed.
	ErrReplication = errors.New("move: logical replication failed on the target (see its server log); the move was rolled back")
	// ErrTimeout: a phase did not finish within its limit (catch-up that
	// never gets close, a final catch-up or drain longer than allowed).
	ErrTimeout = errors.New("move: phase timed out")
	// ErrVerify: the target's rows differ from the source's after the
	// flip. The source is kept (retired schema); compare them before
	// dropping it.
	ErrVerify = errors.New("move: verification failed: the target's rows differ from the source's; the source copy is kept in a retired schema, compare before dropping it")
)

// PhaseError is a failure in one phase of a move. RolledBack says whether
// the tenant was returned to its source (phases before the flip); after
// the flip the move must be resumed instead.
type PhaseError struct {
	Tenant     string
	Phase      Phase
	RolledBack bool
	// Cleanup is the error of an incomplete rollback (e.g. the target shard
	// was down): the next move of the tenant finishes it.
	Cleanup error
	Err     error
}

func (e *PhaseError) Error() string {
	what := "the tenant is served by its source; run the move again"
	switch {
	case !e.RolledBack:
		what = "the tenant is served by the target; finish with tenantctl tenants move -resume " + e.Tenant
	case errors.Is(e.Cleanup, errStillFenced):
		what = fmt.Sprintf("the tenant is served by its source, but its writes stay refused: %v; once the source shard answers, roll back with tenantctl tenants move -abort %s", e.Cleanup, e.Tenant)
	case e.Cleanup != nil:
		what = fmt.Sprintf("the tenant is served by its source; some leftovers could not be removed yet (%v): the next move of the tenant removes them", e.Cleanup)
	}
	return fmt.Sprintf("move of tenant %s failed in phase %s: %v (%s)", e.Tenant, e.Phase, e.Err, what)
}

func (e *PhaseError) Unwrap() error { return e.Err }
