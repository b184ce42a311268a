package tenancy

import (
	"context"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Shard is one PostgreSQL server (database) that holds tenant schemas.
type Shard struct {
	// Name identifies the shard in logs, metrics and errors. Never a DSN.
	Name string
	// Pool connects as the application role: not the owner of any table and
	// without BYPASSRLS, so row-level security applies to it.
	Pool *pgxpool.Pool
	// Admin connects as the admin role (BYPASSRLS). It serves Unscoped
	// contexts only; nil disables unscoped access to this shard.
	Admin *pgxpool.Pool
	// Replica connects as the application role to a read replica of the
	// shard. Read-only transactions (BeginTx with TxOptions.ReadOnly) of
	// placements made with ReplicaReads run on it; they may see data a
	// little older than the primary's. nil: every transaction runs on Pool.
	Replica *pgxpool.Pool
}

// Limits are a tenant's per-transaction resource limits, sent as
// transaction-local settings with every transaction. Zero durations disable
// the corresponding timeout; an empty WorkMem keeps the server's default.
type Limits struct {
	StatementTimeout         time.Duration
	LockTimeout              time.Duration
	IdleInTransactionTimeout time.Duration
	WorkMem                  string // e.g. "4MB"

	// Admission limits of the tenant's plan, enforced by a Gate
	// (tenancy/admission, tenancy/ratelimit) before a connection is taken,
	// not sent to the server. Zero means the gate's default.
	Plan         string        // plan name, for metrics and errors; keep the set of names small
	MaxConns     int           // statements and transactions running at once on each of the shard's pools (primary, replica, admin)
	RatePerSec   float64       // sustained statements and transactions per second
	Burst        int           // statements and transactions allowed at once above the rate
	QueueTimeout time.Duration // longest wait for a connection slot before ErrTenantBusy
}

// DefaultLimits are the limits of a tenant whose plan sets none.
var DefaultLimits = Limits{
	StatementTimeout:         30 * time.Second,
	LockTimeout:              5 * time.Second,
	IdleInTransactionTimeout: time.Minute,
	WorkMem:                  "4MB",
}

// Placement says where a tenant's data lives and how its transactions are
// limited. Build it with NewPlacement; it is immutable and safe to share.
type Placement struct {
	Tenant ID
	Shard  *Shard
	Schema string
	Limits Limits

	// scope and adminScope are the transaction-local settings, encoded once:
	// the request path sends them without formatting anything.
	scope      scopeValues
	adminScope scopeValues

	fence   string // non-empty: writes are fenced; the tenant's state, for errors
	replica bool   // ReplicaReads was given; onReplica says whether it applies

	// onReplica and onAdmin are the placement as a Gate sees work that
	// runs on the shard's replica or admin pool: the same tenant, schema
	// and limits, with that pool as Shard.Pool. A gate counts connections
	// per Shard.Pool, so a replica read or an Unscoped statement takes a
	// slot of the pool it runs on, not one of the primary's.
	onReplica, onAdmin *Placement
}

// PlacementOption sets an optional property of a placement.
type PlacementOption func(*Placement)

// FenceWrites makes every transaction of the placement read-only, on the
// server: statements outside a transaction run in a read-only implicit
// transaction, and transactions begin READ ONLY. A write then fails with an
// error wrapping ErrTenantReadOnly, which is retryable; reads are served as
// usual. state names why (the tenant's state, e.g. "read_only" or
// "moving") and appears in the error.
func FenceWrites(state string) PlacementOption {
	if state == "" {
		state = "read_only"
	}
	return func(p *Placement) { p.fence = state }
}

// ReplicaReads lets read-only transactions (BeginTx with TxOptions.ReadOnly)
// of the placement run on the shard's Replica pool, when it has one.
// Statements outside a transaction always run on the primary.
func ReplicaReads() PlacementOption {
	return func(p *Placement) { p.replica = true }
}

// Fenced reports whether writes of the placement are fenced, and why.
func (p *Placement) Fenced() (state string, ok bool) { return p.fence, p.fence != "" }

// ReadsFromReplica reports whether read-only transactions of the placement
// run on its shard's replica.
func (p *Placement) ReadsFromReplica() bool { return p.onReplica != nil }

// Errors of tenants that cannot be served as usual. A Resolver returns
// ErrTenantSuspended and ErrTenantDeleted instead of a placement; the Driver
// returns ErrTenantReadOnly for a write of a fenced placement. Each is
// wrapped with the tenant id and its state.
var (
	// ErrTenantSuspended: the tenant is suspended and nothing of it is
	// served. An operator resumes it (tenantctl tenants resume).
	ErrTenantSuspended = errors.New("tenancy: tenant suspended: none of its data is served until an operator resumes it (tenantctl tenants resume)")

	// ErrTenantDeleted: the tenant was deleted; its id is never served again.
	ErrTenantDeleted = errors.New("tenancy: tenant deleted: its data is no longer served")

	// ErrTenantReadOnly: the tenant is read-only or being moved between
	// shards. Reads are served; the write was refused and nothing of it was
	// applied. A *ReadOnlyError says which: a move's fence lifts within
	// seconds (retry the write), an operator's read_only only when the
	// operator makes the tenant active again (tell the user). Retryable
	// tells them apart.
	ErrTenantReadOnly = errors.New("tenancy: tenant is read-only: the write was refused and not applied; reads are served")
)

// failed is the one mapping of a statement's error on the request path:
// an unreachable shard becomes a *ShardUnavailableError (unavailable), a
// write refused by a fence ErrTenantReadOnly (fenced), anything else stays.
// pool and pc are where query ran.
func (p *Placement) failed(pool *pgxpool.Pool, pc *pgconn.PgConn, query string, err error) error {
	return p.fenced(p.unavailable(pool, pc, err), query)
}

// fenced maps the server's refusal of a write to ErrTenantReadOnly:
//
//   - on a placement known to be fenced, a write in its read-only
//     transaction (SQLSTATE 25006);
//   - on a placement not known to be fenced, the database-level fence of a
//     move (tenancy/move), which a router meets when it has not yet learned
//     the registry's fence (set first; routers learn it by NOTIFY, normally
//     within milliseconds): the shared-schema fence trigger's 25006 ("is
//     being moved"), and 42501 (insufficient_privilege) for an INSERT,
//     UPDATE or DELETE once the source schema's writes are revoked.
//     Migrations grant the app role writes on every tenant table, so
//     outside a fence that 42501 means broken grants: the error says to
//     check them if retries keep failing.
//
// query is the statement that failed.
func (p *Placement) fenced(err error, query string) error {
	if err == nil || p == nil {
		return err
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return err
	}
	switch {
	case p.fence != "" && pgErr.Code == "25006":
		return &ReadOnlyError{Tenant: p.Tenant, State: p.fence, Err: err}
	case p.fence == "" && pgErr.Code == "25006" && strings.Contains(pgErr.Message, "is being moved"):
		return &ReadOnlyError{Tenant: p.Tenant, State: StateMoving, Err: err,
			msg: fmt.Sprintf("tenant %s: writes fenced on the database for a move, which the router has not learned yet", p.Tenant)}
	case p.fence == "" && pgErr.Code == "42501" && isWrite(query):
		return &ReadOnlyError{Tenant: p.Tenant, State: StateMoving, Err: err,
			msg: fmt.Sprintf("tenant %s: the database refused the write (a move's fence the router has not learned yet; if retries keep failing, check the grants of schema %s: tenantctl migrate status)", p.Tenant, p.Schema)}
	}
	return err
}

// StateMoving is the state of a tenant being moved between shards (the
// registry's), as FenceWrites and ReadOnlyError name it: its writes are
// fenced for the move's cutover, tens of milliseconds.
const StateMoving = "moving"

// ReadOnlyError is the error of a write refused because the tenant's writes
// are fenced. errors.Is(err, ErrTenantReadOnly) holds for it, and errors.As
// reaches the server's error underneath.
type ReadOnlyError struct {
	Tenant ID
	// State is why: StateMoving for a move's fence, which lifts within
	// seconds, or the tenant's state given to FenceWrites otherwise (e.g.
	// "read_only", lifted only by an operator).
	State string
	// Err is the server's refusal of the write.
	Err error
	msg string // the driver's account of the refusal; empty: tenant and state
}

func (e *ReadOnlyError) Error() string {
	msg := e.msg
	if msg == "" {
		msg = fmt.Sprintf("tenant %s (state %s)", e.Tenant, e.State)
	}
	msg += ": " + ErrTenantReadOnly.Error()
	if e.State == StateMoving {
		msg += "; the tenant is being moved: retry the write in a few seconds"
	} else {
		msg += "; writes resume when an operator makes the tenant active again"
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap gives ErrTenantReadOnly and the server's error to errors.Is and
// errors.As.
func (e *ReadOnlyError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrTenantReadOnly}
	}
	return []error{ErrTenantReadOnly, e.Err}
}

// isWrite reports whether query starts with INSERT, UPDATE or DELETE, as
// Ent's writes do (leading blanks and case ignored).
func isWrite(query string) bool {
	q := strings.TrimLeft(query, " \t\r\n(")
	for _, verb := range [...]string{"INSERT", "UPDATE", "DELETE"} {
		if len(q) >= len(verb) && strings.EqualFold(q[:len(verb)], verb) {
			return true
		}
	}
	return false
}

var schemaNameRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// ErrInvalidPlacement is wrapped by NewPlacement for a missing shard pool, a
// schema name that is not a plain lower-case identifier or a malformed limit.
var ErrInvalidPlacement = errors.New("tenancy: invalid placement")

// NewPlacement validates and prepares a placement. schema must match
// ^[a-z_][a-z0-9_]{0,62}$ (ID.SchemaName always does); it is quoted anyway.
// WorkMem takes PostgreSQL's memory units: 4MB, 65536kB, 1GB, or plain kB.
func NewPlacement(tenant ID, shard *Shard, schema string, limits Limits, opts ...PlacementOption) (*Placement, error) {
	if shard == nil || shard.Pool == nil {
		return nil, fmt.Errorf("%w: tenant %s has no shard pool", ErrInvalidPlacement, tenant)
	}
	if !schemaNameRE.MatchString(schema) {
		return nil, fmt.Errorf("%w: schema name %q must match %s", ErrInvalidPlacement, schema, schemaNameRE)
	}
	for _, d := range []time.Duration{limits.StatementTimeout, limits.LockTimeout, limits.IdleInTransactionTimeout} {
		if d < 0 || d.Milliseconds() > math.MaxInt32 {
			return nil, fmt.Errorf("%w: timeout %s out of range", ErrInvalidPlacement, d)
		}
		if d > 0 && d < time.Millisecond {
			// Sent in milliseconds, it would become 0: no limit.
			return nil, fmt.Errorf("%w: timeout %s below 1ms (0 means no limit)", ErrInvalidPlacement, d)
		}
	}
	if limits.MaxConns < 0 || limits.RatePerSec < 0 || math.IsNaN(limits.RatePerSec) || limits.Burst < 0 || limits.QueueTimeout < 0 {
		return nil, fmt.Errorf("%w: negative admission limit", ErrInvalidPlacement)
	}
	workMem := limits.WorkMem
	if workMem == "" {
		workMem = DefaultLimits.WorkMem
	}
	kB, err := parseMemory(workMem)
	if err != nil {
		return nil, fmt.Errorf("%w: work_mem: %w", ErrInvalidPlacement, err)
	}
	p := &Placement{Tenant: tenant, Shard: shard, Schema: schema, Limits: limits}
	for _, o := range opts {
		o(p)
	}
	ms := func(d time.Duration) []byte { return strconv.AppendInt(nil, d.Milliseconds(), 10) }
	p.scope = scopeValues{
		[]byte(pgx.Identifier{schema}.Sanitize()),
		nil, // tenant, below
		[]byte("tenant:" + tenant.String()),
		ms(limits.StatementTimeout),
		ms(limits.LockTimeout),
		ms(limits.IdleInTransactionTimeout),
		strconv.AppendInt(nil, kB, 10),
	}
	p.adminScope = p.scope
	p.adminScope[2] = []byte("tenantry:unscoped")
	if !tenant.IsZero() {
		p.scope[1] = []byte(tenant.String())
		p.adminScope[1] = p.scope[1]
	} else {
		p.scope[1], p.adminScope[1] = []byte{}, []byte{}
	}
	if shard.Replica != nil && p.replica {
		p.onReplica = p.on(&Shard{Name: shard.Name, Pool: shard.Replica, Replica: shard.Replica})
	}
	if shard.Admin != nil {
		p.onAdmin = p.on(&Shard{Name: shard.Name, Pool: shard.Admin, Admin: shard.Admin})
	}
	return p, nil
}

// on returns a copy of p on shard, without views of its own.
func (p *Placement) on(shard *Shard) *Placement {
	v := *p
	v.Shard, v.onReplica, v.onAdmin = shard, nil, nil
	return &v
}

// parseMemory parses a PostgreSQL memory setting into kB.
func parseMemory(s string) (int64, error) {
	num, unit := s, ""
	if i := strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		num, unit = s[:i], strings.TrimSpace(s[i:])
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%q: want a positive size like 4MB", s)
	}
	mult := map[string]int64{"": 1, "kB": 1, "MB": 1 << 10, "GB": 1 << 20}[unit]
	if mult == 0 {
		return 0, fmt.Errorf("%q: unit must be kB, MB or GB", s)
	}
	if n > math.MaxInt32/mult {
		return 0, fmt.Errorf("%q: too large", s)
	}
	return n * mult, nil
}

// Resolver maps tenants to placements. Implementations must be safe for
// concurrent use and fast: Resolve runs for every statement outside a
// transaction and for every transaction.
type Resolver interface {
	// Resolve returns the tenant's placement, or an error wrapping
	// ErrUnknownTenant (or another typed error) when it cannot be served.
	Resolve(ctx context.Context, tenant ID) (*Placement, error)
	// ResolveUnscoped returns where an Unscoped context that names no tenant
	// runs (its Shard must have an Admin pool).
	ResolveUnscoped(ctx context.Context) (*Placement, error)
}

// StaticResolver is a Resolver over a fixed map, for tests and for
// deployments whose tenants are known at start-up. The registry-backed
// router replaces it in a fleet.
type StaticResolver struct {
	placements map[ID]*Placement
	unscoped   *Placement
}

// NewStaticResolver returns a resolver serving the given placements.
// unscoped may be nil, which makes Unscoped contexts without a tenant fail.
func NewStaticResolver(unscoped *Placement, placements ...*Placement) *StaticResolver {
	r := &StaticResolver{placements: make(map[ID]*Placement, len(placements)), unscoped: unscoped}
	for _, p := range placements {
		r.placements[p.Tenant] = p
	}
	return r
}

// Resolve implements Resolver.
func (r *StaticResolver) Resolve(_ context.Context, tenant ID) (*Placement, error) {
	if p, ok := r.placements[tenant]; ok {
		return p, nil
	}
	return nil, fmt.Errorf("tenant %s: %w", tenant, ErrUnknownTenant)
}

// ResolveUnscoped implements Resolver.
func (r *StaticResolver) ResolveUnscoped(context.Context) (*Placement, error) {
	if r.unscoped == nil {
		return nil, fmt.Errorf("%w: no placement for unscoped access without a tenant", ErrInvalidPlacement)
	}
	return r.unscoped, nil
}

// RuntimeParams returns the limits as connection start-up parameters, for a
// shard pool's pgx.ConnConfig.RuntimeParams. Connections that start with a
// plan's limits as their session defaults spare that plan's transactions a
// set_config per limit; the driver compares with each connection's actual
// session values, so other plans stay correct.
func (l Limits) RuntimeParams() (map[string]string, error) {
	if l.WorkMem == "" {
		l.WorkMem = DefaultLimits.WorkMem
	}
	kB, err := parseMemory(l.WorkMem)
	if err != nil {
		return nil, fmt.Errorf("%w: work_mem: %w", ErrInvalidPlacement, err)
	}
	ms := func(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }
	return map[string]string{
		"statement_timeout":                   ms(l.StatementTimeout),
		"lock_timeout":                        ms(l.LockTimeout),
		"idle_in_transaction_session_timeout": ms(l.IdleInTransactionTimeout),
		"work_mem":                            strconv.FormatInt(kB, 10),
	}, nil
}
