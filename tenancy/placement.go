package tenancy

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
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
}

// Limits are a tenant's per-transaction resource limits, sent as
// transaction-local settings with every transaction. Zero durations disable
// the corresponding timeout; an empty WorkMem keeps the server's default.
type Limits struct {
	StatementTimeout         time.Duration
	LockTimeout              time.Duration
	IdleInTransactionTimeout time.Duration
	WorkMem                  string // e.g. "4MB"
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

	// settings are the set_config values of scopeSQL, encoded once: the
	// request path sends them without formatting anything.
	settings      [][]byte
	adminSettings [][]byte
}

var schemaNameRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// ErrInvalidPlacement is wrapped by NewPlacement for a missing shard pool or
// a schema name that is not a plain lower-case identifier.
var ErrInvalidPlacement = errors.New("tenancy: invalid placement")

// NewPlacement validates and prepares a placement. schema must match
// ^[a-z_][a-z0-9_]{0,62}$ (ID.SchemaName always does); it is quoted anyway.
func NewPlacement(tenant ID, shard *Shard, schema string, limits Limits) (*Placement, error) {
	if shard == nil || shard.Pool == nil {
		return nil, fmt.Errorf("%w: tenant %s has no shard pool", ErrInvalidPlacement, tenant)
	}
	if !schemaNameRE.MatchString(schema) {
		return nil, fmt.Errorf("%w: schema name %q must match %s", ErrInvalidPlacement, schema, schemaNameRE)
	}
	if limits.WorkMem != "" && !workMemRE.MatchString(limits.WorkMem) {
		return nil, fmt.Errorf("%w: work_mem %q must look like 4MB or 65536kB", ErrInvalidPlacement, limits.WorkMem)
	}
	p := &Placement{Tenant: tenant, Shard: shard, Schema: schema, Limits: limits}
	p.settings = encodeSettings(p, tenant, "tenant:"+tenant.String())
	p.adminSettings = encodeSettings(p, tenant, "tenantry:unscoped")
	return p, nil
}

var workMemRE = regexp.MustCompile(`^[0-9]{1,10}\s?(kB|MB|GB)?$`)

// scopeSQL sets everything a statement needs, transaction-local, in one
// prepared statement. Its parameters are, in order: search_path, tenant,
// statement_timeout, lock_timeout, idle_in_transaction_session_timeout,
// work_mem, application_name.
const scopeSQL = `SELECT set_config('search_path', $1, true), set_config('app.current_tenant_id', $2, true), ` +
	`set_config('statement_timeout', $3, true), set_config('lock_timeout', $4, true), ` +
	`set_config('idle_in_transaction_session_timeout', $5, true), set_config('work_mem', $6, true), ` +
	`set_config('application_name', $7, true)`

func encodeSettings(p *Placement, tenant ID, appName string) [][]byte {
	ms := func(d time.Duration) []byte { return []byte(strconv.FormatInt(d.Milliseconds(), 10)) }
	workMem := p.Limits.WorkMem
	if workMem == "" {
		workMem = DefaultLimits.WorkMem
	}
	t := ""
	if !tenant.IsZero() {
		t = tenant.String()
	}
	return [][]byte{
		[]byte(pgx.Identifier{p.Schema}.Sanitize()),
		[]byte(t),
		ms(p.Limits.StatementTimeout),
		ms(p.Limits.LockTimeout),
		ms(p.Limits.IdleInTransactionTimeout),
		[]byte(workMem),
		[]byte(appName),
	}
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
