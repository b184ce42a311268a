package registry

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/tenantry/tenantry/tenancy"
)

// Errors of registry operations. Each is wrapped with what was asked.
var (
	// ErrNotFound: no tenant, shard or plan of that name or id.
	ErrNotFound = errors.New("registry: not found")
	// ErrExists: a tenant, shard or plan of that name or id exists already.
	ErrExists = errors.New("registry: already exists")
	// ErrInvalid: a malformed name, DSN, mode or limit.
	ErrInvalid = errors.New("registry: invalid")
	// ErrNoCapacity: no shard accepts the tenant: every accepting shard is
	// full (or, for a dedicated placement, holds tenants). Add a shard
	// (tenantctl shards add) or raise a capacity.
	ErrNoCapacity = errors.New("registry: no shard accepts new tenants: add a shard (tenantctl shards add) or raise a shard's capacity")
	// ErrTransition: the tenant's state does not allow the change (e.g.
	// resuming a tenant that is not suspended).
	ErrTransition = errors.New("registry: state change not allowed")
	// ErrProvisioning: another caller is provisioning the tenant right now
	// (CreateTenant of the same slug). Wait until the tenant is active, or
	// run the create again once that caller has stopped.
	ErrProvisioning = errors.New("registry: the tenant is being provisioned by another caller: wait until it is active, or run the same create again once that caller has stopped (a caller that died is taken over after ProvisionStaleAfter)")
	// ErrNotInitialized: the registry database has no registry tables yet.
	// Run Init (tenantctl shards add does).
	ErrNotInitialized = errors.New("registry: not initialized: the registry tables do not exist; run tenantctl shards add (or Store.Init) first")
)

// State is a tenant's lifecycle state.
type State string

const (
	// Provisioning: registered and placed, schema not created yet. Not
	// served: routers answer tenancy.ErrUnknownTenant.
	Provisioning State = "provisioning"
	// Active: served.
	Active State = "active"
	// ReadOnly: reads served, writes fail with tenancy.ErrTenantReadOnly.
	ReadOnly State = "read_only"
	// Suspended: not served (tenancy.ErrTenantSuspended).
	Suspended State = "suspended"
	// Moving: being moved between placements; served like ReadOnly.
	Moving State = tenancy.StateMoving
	// Offboarded: offboarded softly (Store.Offboard): not served
	// (tenancy.ErrTenantDeleted), its schema renamed and kept until the
	// retention period ends; Store.RestoreOffboarded serves it again,
	// Store.Purge deletes it. Only those operations leave this state.
	Offboarded State = "offboarded"
	// Deleted: never served again (tenancy.ErrTenantDeleted).
	Deleted State = "deleted"
)

// transitions lists the states each state may change to.
var transitions = map[State][]State{
	Provisioning: {Active, Deleted},
	Active:       {ReadOnly, Suspended, Moving, Deleted},
	ReadOnly:     {Active, Suspended, Moving, Deleted},
	Suspended:    {Active, ReadOnly, Deleted},
	Moving:       {Active, ReadOnly, Suspended},
	Offboarded:   nil, // Offboard, RestoreOffboarded and Purge only
	Deleted:      nil,
}

func (s State) valid() bool { _, ok := transitions[s]; return ok }

// Mode is a placement's isolation level.
type Mode string

const (
	// ModeSchema: the tenant has its own schema, tenant_<id>.
	ModeSchema Mode = "schema"
	// ModeShared: the tenant shares a pooled schema with other tenants,
	// kept apart by the tenant_id filter and row-level security.
	ModeShared Mode = "shared"
	// ModeDedicated: the tenant has a shard of its own; the shard stops
	// accepting other tenants.
	ModeDedicated Mode = "dedicated"
)

func (m Mode) valid() bool { return m == ModeSchema || m == ModeShared || m == ModeDedicated }

// DefaultPlan is the plan that Init creates (with tenancy.DefaultLimits)
// and that tenants get when none is named.
const DefaultPlan = "default"

// DefaultSharedSchema is the schema of shared placements that name none.
// Shared schemas must start with tenancy.SharedSchemaPrefix, the prefix
// the migration runner discovers them by.
const DefaultSharedSchema = tenancy.DefaultSharedSchema

// Plan is a named set of per-tenant limits.
type Plan struct {
	Name string
	// Limits: the transaction-local settings (statement_timeout, work_mem,
	// lock_timeout, idle_in_transaction_session_timeout) and the admission
	// limits (MaxConns, RatePerSec, Burst, QueueTimeout). Limits.Plan is
	// the plan's name when read from the registry.
	Limits tenancy.Limits
	// ReplicaReads lets read-only transactions of the plan's tenants run on
	// their shard's replica.
	ReplicaReads bool
}

// Shard is one PostgreSQL database that holds tenant schemas.
type Shard struct {
	Name string
	// DSN is a postgres:// URL of the primary. Pools replace its user by
	// their role; the password is used only for the DSN's own user.
	DSN string
	// ReplicaDSN is a postgres:// URL of a read replica; empty: none.
	ReplicaDSN string
	Region     string
	// Capacity is how many tenants the shard may hold (default 1000).
	Capacity int
	// Accepting says whether new tenants may be placed on the shard.
	Accepting bool
	// Tenants is how many tenants, deleted ones aside, are placed on the
	// shard (filled by Shards).
	Tenants int
}

// String shows the shard with its DSNs redacted.
func (s Shard) String() string {
	replica := "none"
	if s.ReplicaDSN != "" {
		replica = Redact(s.ReplicaDSN)
	}
	return fmt.Sprintf("shard %s (dsn %s, replica %s, region %q, %d/%d tenants, accepting %t)",
		s.Name, Redact(s.DSN), replica, s.Region, s.Tenants, s.Capacity, s.Accepting)
}

// LogValue implements slog.LogValuer with the DSNs redacted.
func (s Shard) LogValue() slog.Value {
	return slog.GroupValue(slog.String("name", s.Name), slog.String("dsn", Redact(s.DSN)),
		slog.String("replica_dsn", Redact(s.ReplicaDSN)), slog.String("region", s.Region))
}

// Placement says where a tenant lives.
type Placement struct {
	Shard  string
	Schema string
	Mode   Mode
	// Epoch grows with every change routers must see.
	Epoch int64
}

// Tenant is a tenant as the registry knows it.
type Tenant struct {
	ID        tenancy.ID
	Slug      string
	State     State
	Plan      string
	Placement Placement
	CreatedAt time.Time
	UpdatedAt time.Time
}

// NewTenant describes a tenant to create.
type NewTenant struct {
	// ID is the tenant's id; zero: a random one.
	ID tenancy.ID
	// Slug is a unique, readable name: lower-case letters, digits, - and _.
	Slug string
	// Plan names the plan; empty: DefaultPlan.
	Plan string
	// Mode is the isolation level; empty: ModeSchema.
	Mode Mode
	// Shard names the shard; empty: the least loaded accepting shard. A
	// named shard must accept tenants and have room too.
	Shard string
	// Schema names the schema; empty: ID.SchemaName() for ModeSchema and
	// ModeDedicated, DefaultSharedSchema for ModeShared.
	Schema string
}

// Route is everything a router needs to serve a tenant.
type Route struct {
	Tenant tenancy.ID
	Slug   string
	State  State
	Epoch  int64
	Shard  Shard
	Schema string
	Mode   Mode
	Plan   Plan
}
