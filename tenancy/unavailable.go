package tenancy

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrShardUnavailable is wrapped by the *ShardUnavailableError the Driver
// returns when a tenant's shard cannot be reached: connections are refused,
// a connection broke under a statement, or the server is shutting down or
// starting up (SQLSTATE class 08, 57P01-57P03). Only that shard's tenants
// are affected. It is retryable: an HTTP layer answers 503 with a
// Retry-After of ShardUnavailableError.RetryAfter, and the driver needs no
// manual step to recover once the shard is back.
var ErrShardUnavailable = errors.New("tenancy: shard unavailable")

// shardRetryAfter is how long a caller should wait before retrying on an
// unavailable shard: about what a restarted PostgreSQL needs to accept
// connections again after crash recovery.
const shardRetryAfter = 2 * time.Second

// ShardUnavailableError says which shard could not serve which tenant, and
// why. errors.Is(err, ErrShardUnavailable) holds for it, and errors.As
// reaches the underlying pgconn or network error.
type ShardUnavailableError struct {
	Shard  string
	Tenant ID
	// Sent is true when the connection broke after the statement (or
	// COMMIT) was sent: a write may then have been applied or not.
	Sent bool
	Err  error
}

func (e *ShardUnavailableError) Error() string {
	outcome := "nothing was applied"
	if e.Sent {
		outcome = "the connection broke after the statement was sent: a write may or may not have been applied, so retry only idempotent writes or check first"
	}
	return fmt.Sprintf("tenancy: shard %q unavailable for tenant %s: %v: %s; retry after %s (other shards are not affected)",
		e.Shard, e.Tenant, e.Err, outcome, shardRetryAfter)
}

// Unwrap gives both ErrShardUnavailable and the underlying error to
// errors.Is and errors.As.
func (e *ShardUnavailableError) Unwrap() []error { return []error{ErrShardUnavailable, e.Err} }

// RetryAfter is how long to wait before retrying (an HTTP 503's Retry-After).
func (e *ShardUnavailableError) RetryAfter() time.Duration { return shardRetryAfter }

// unavailable returns err as a *ShardUnavailableError when it says the
// shard cannot be reached, and err unchanged otherwise. pc is the
// connection the statement ran on, taken from pool (both nil when none was
// acquired). A cancelled or expired context is the caller's doing, never
// the shard's.
//
// A connection that broke under a statement usually means the server went
// away or restarted, which breaks every other connection of the pool too:
// then the pool is reset, so that after a quick restart the next calls
// connect afresh instead of failing once per stale connection (pgxpool
// pings idle connections only after a second of idleness, which a loaded
// pool never reaches). But one backend can also be ended alone
// (pg_terminate_backend, e.g. by a move draining a fenced tenant's
// writers: also 57P01), and resetting the shard's pool for that would make
// every tenant on the shard reconnect; so the pool is reset only when a
// ping through it fails too.
func (p *Placement) unavailable(pool *pgxpool.Pool, pc *pgconn.PgConn, err error) error {
	if err == nil || p == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var ue *ShardUnavailableError
	if errors.As(err, &ue) {
		return err
	}
	down := false
	var (
		pgErr *pgconn.PgError
		cErr  *pgconn.ConnectError
	)
	switch {
	case errors.As(err, &cErr):
		down = true
	case errors.As(err, &pgErr):
		switch {
		case len(pgErr.Code) == 5 && pgErr.Code[:2] == "08": // connection exception
			// unless the server raised it on a connection that lives on:
			// 08P01 (protocol_violation) is a plain ERROR for a malformed
			// message, e.g. a Bind whose result formats do not match the
			// statement's columns.
			down = pc == nil || pc.IsClosed()
		case pgErr.Code == "57P01", // admin_shutdown
			pgErr.Code == "57P02", // crash_shutdown
			pgErr.Code == "57P03": // cannot_connect_now (starting up, recovering)
			down = true
		}
	case pc != nil && pc.IsClosed():
		// A network error: the connection died under the statement.
		down = true
	}
	if !down {
		return err
	}
	if pc != nil && pool != nil && cErr == nil && !serverUp(pool) {
		pool.Reset()
	}
	return &ShardUnavailableError{Shard: p.Shard.Name, Tenant: p.Tenant, Sent: pc != nil && !pgconn.SafeToRetry(err), Err: err}
}

// serverUp pings the shard through pool: a stale connection fails the ping
// (and is dropped), a fresh one fails to connect while the server is down.
func serverUp(pool *pgxpool.Pool) bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return pool.Ping(ctx) == nil
}
