package loadtest

import (
	"context"
	"errors"

	"github.com/tenantry/tenantry/tenancy"
	"github.com/tenantry/tenantry/tenancy/admission"
	"github.com/tenantry/tenantry/tenancy/ratelimit"
)

// Op is what a request does.
type Op uint8

const (
	// Read is a point read of one of the tenant's rows.
	Read Op = iota
	// Write is a small write: one new row.
	Write
)

func (o Op) String() string {
	if o == Write {
		return "write"
	}
	return "read"
}

// Request is one request of one tenant.
type Request struct {
	Tenant tenancy.ID
	Op     Op
	// Seq numbers the request within its run; a target picks the row to
	// read and names the row it writes with it.
	Seq uint64
}

// Target serves requests. Do must be safe for concurrent use and return an
// error that Classify understands: errors wrapping ratelimit.ErrThrottled,
// admission.ErrTenantBusy or tenancy.ErrShardUnavailable for those
// conditions (an HTTP target maps 429 and 503 to them).
type Target interface {
	Do(ctx context.Context, r Request) error
}

// Kind is the class of a request's outcome.
type Kind uint8

const (
	OK        Kind = iota
	Throttled      // over its rate limit (ratelimit.ErrThrottled; HTTP 429)
	Busy           // no connection slot in time (admission.ErrTenantBusy; HTTP 429/503)
	ShardDown      // its shard cannot be reached (tenancy.ErrShardUnavailable; HTTP 503)
	Timeout        // the request's own deadline passed
	Other          // anything else: a bug or an unexpected failure
	numKinds
)

var kindNames = [numKinds]string{"ok", "throttled", "busy", "shard down", "timeout", "other"}

func (k Kind) String() string {
	if k < numKinds {
		return kindNames[k]
	}
	return "unknown"
}

// Classify returns the kind of a request's outcome.
func Classify(err error) Kind {
	switch {
	case err == nil:
		return OK
	case errors.Is(err, ratelimit.ErrThrottled):
		return Throttled
	case errors.Is(err, admission.ErrTenantBusy):
		return Busy
	case errors.Is(err, tenancy.ErrShardUnavailable):
		return ShardDown
	case errors.Is(err, context.DeadlineExceeded):
		return Timeout
	default:
		return Other
	}
}
