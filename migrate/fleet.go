package migrate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"slices"
	"strings"
	"time"

	atlasmigrate "ariga.io/atlas/sql/migrate"

	"github.com/tenantry/tenantry/tenancy"
)

// Shard is one shard database of the fleet.
type Shard struct {
	// Name identifies the shard in targets, logs, metrics and reports.
	Name string
	// DB connects to the shard database as the owner role, a member of it,
	// or a superuser (migrations then switch to the owner role). A run uses
	// up to RunOptions.Concurrency + 2 of its connections; OpenShard sizes
	// the pool.
	DB *sql.DB
}

// OpenShard opens a shard's pool (pgx's database/sql driver, which the
// caller must import: _ "github.com/jackc/pgx/v5/stdlib") with room for
// concurrency migrations at once.
func OpenShard(name, dsn string, concurrency int) (Shard, error) {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return Shard{}, fmt.Errorf("migrate: shard %s: %w", name, err)
	}
	concurrency = max(concurrency, 1)
	db.SetMaxOpenConns(concurrency + 2)
	db.SetMaxIdleConns(concurrency + 2)
	db.SetConnMaxIdleTime(time.Minute)
	return Shard{Name: name, DB: db}, nil
}

// Target is one schema to migrate.
type Target struct {
	Shard  string `json:"shard"`
	Schema string `json:"schema"`
	// Tenant is the tenant's id when the schema belongs to one tenant
	// ("tenant_<32 hex digits>"), empty for shared schemas.
	Tenant string `json:"tenant,omitempty"`
	// Plan is the tenant's plan when the source knows it. Informational.
	Plan string `json:"plan,omitempty"`
}

func (t Target) String() string { return t.Shard + "/" + t.Schema }

// Targets is a source of the schemas to migrate, asked once per shard and
// run. Discover and TargetList are the two built in; a registry-backed
// source implements the same interface.
type Targets interface {
	Targets(ctx context.Context, shard Shard) ([]Target, error)
}

// DefaultPatterns are the LIKE patterns Discover uses by default: tenants'
// own schemas and shared (pooled) schemas, named as the registry names them
// (tenancy.SchemaPrefix, tenancy.SharedSchemaPrefix).
var DefaultPatterns = []string{tenancy.LikePrefix(tenancy.SchemaPrefix), tenancy.LikePrefix(tenancy.SharedSchemaPrefix)}

// Discover finds the targets in each shard's catalog: every schema whose
// name matches one of the LIKE patterns (DefaultPatterns when empty). The
// tenant of a "tenant_<32 hex>" schema is derived from its name.
type Discover struct {
	Patterns []string
}

// Targets implements Targets.
func (d Discover) Targets(ctx context.Context, shard Shard) ([]Target, error) {
	patterns := d.Patterns
	if len(patterns) == 0 {
		patterns = DefaultPatterns
	}
	rows, err := shard.DB.QueryContext(ctx, `SELECT nspname::text FROM pg_namespace
		WHERE nspname LIKE ANY ($1::text[]) AND nspname <> $2 ORDER BY 1`, patterns, LedgerSchema)
	if err != nil {
		return nil, fmt.Errorf("migrate: discover on %s: %w", shard.Name, err)
	}
	defer rows.Close()
	var out []Target
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, err
		}
		if ValidateSchemaName(name) != nil || strings.HasPrefix(name, scratchPrefix) {
			continue
		}
		out = append(out, Target{Shard: shard.Name, Schema: name, Tenant: TenantOfSchema(name)})
	}
	return out, rows.Err()
}

// TargetList is an explicit list of targets; each shard gets its own.
type TargetList []Target

// Targets implements Targets.
func (l TargetList) Targets(_ context.Context, shard Shard) ([]Target, error) {
	var out []Target
	for _, t := range l {
		if t.Shard == shard.Name {
			if err := ValidateSchemaName(t.Schema); err != nil {
				return nil, err
			}
			if t.Tenant == "" {
				t.Tenant = TenantOfSchema(t.Schema)
			}
			out = append(out, t)
		}
	}
	return out, nil
}

// TenantOfSchema returns the tenant id (canonical UUID text) of a schema
// named "tenant_" and 32 hex digits, as tenancy.ID.SchemaName makes them;
// "" for any other name.
func TenantOfSchema(schema string) string {
	h, ok := strings.CutPrefix(schema, "tenant_")
	if !ok || len(h) != 32 || strings.Trim(h, "0123456789abcdef") != "" {
		return ""
	}
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// Selector narrows a run to some targets. Empty fields select everything.
type Selector struct {
	// Shards names the shards to migrate: shards of the fleet (Plan and
	// Status reject other names with ErrUnknownShard).
	Shards []string `json:"shards,omitempty"`
	// Schemas are glob patterns (path.Match: *, ?, [...]) over schema names.
	Schemas []string `json:"schemas,omitempty"`
	// Tenants are tenant ids (tenancy.ParseID), not slugs.
	Tenants []string `json:"tenants,omitempty"`
}

// Validate checks the schema patterns and the tenant ids: an id that
// cannot be one (a slug, a typo) would match nothing.
func (s Selector) Validate() error {
	for _, p := range s.Schemas {
		if _, err := path.Match(p, ""); err != nil {
			return fmt.Errorf("migrate: schema pattern %q: %w", p, err)
		}
	}
	for _, id := range s.Tenants {
		if _, err := tenancy.ParseID(id); err != nil {
			return fmt.Errorf("migrate: selected tenant: %w", err)
		}
	}
	return nil
}

// Match reports whether the selector selects t.
func (s Selector) Match(t Target) bool {
	if len(s.Shards) > 0 && !slices.Contains(s.Shards, t.Shard) {
		return false
	}
	if len(s.Tenants) > 0 && (t.Tenant == "" || !slices.ContainsFunc(s.Tenants, func(id string) bool { return strings.EqualFold(id, t.Tenant) })) {
		return false
	}
	if len(s.Schemas) > 0 && !slices.ContainsFunc(s.Schemas, func(p string) bool {
		ok, _ := path.Match(p, t.Schema)
		return ok
	}) {
		return false
	}
	return true
}

// checkSelection validates opts.Select, and rejects shard names the fleet
// does not have, in opts.Select.Shards and in the targets of a TargetList:
// a misspelt name would select nothing and the run succeed, doing nothing.
func (f *Fleet) checkSelection(sel Selector) error {
	if err := sel.Validate(); err != nil {
		return err
	}
	known := make([]string, 0, len(f.Shards))
	for _, s := range f.Shards {
		known = append(known, s.Name)
	}
	slices.Sort(known)
	unknown := func(name, where string) error {
		return fmt.Errorf("%w %q%s (the fleet's shards: %s)", ErrUnknownShard, name, where, strings.Join(known, ", "))
	}
	for _, name := range sel.Shards {
		if !slices.Contains(known, name) {
			return unknown(name, " selected")
		}
	}
	if l, ok := f.Targets.(TargetList); ok {
		for _, t := range l {
			if !slices.Contains(known, t.Shard) {
				return unknown(t.Shard, " in target "+t.String())
			}
		}
	}
	return nil
}

func (s Selector) shardSelected(name string) bool {
	return len(s.Shards) == 0 || slices.Contains(s.Shards, name)
}

// Fleet migrates many schemas on many shards: declaratively to a Desired
// state, or by the files of a versioned migration directory (Dir).
type Fleet struct {
	Shards []Shard
	// Targets lists the schemas; Discover{} when nil.
	Targets Targets
	// Roles are the shard roles; DefaultRoles() when zero.
	Roles Roles
	// Desired is the state to migrate to (declarative mode). Exactly one of
	// Desired and Dir must be set.
	Desired *Desired
	// Dir is an Atlas migration directory with its atlas.sum (versioned
	// mode): pending files are applied to each schema in order.
	Dir atlasmigrate.Dir
	// Logger receives structured logs; slog.Default() when nil.
	Logger *slog.Logger
	// Metrics, when set, is updated as the run goes (NewMetrics).
	Metrics *Metrics
	// OnProgress, when set, is called after every schema's outcome, one
	// call at a time.
	OnProgress func(Progress)
}

// Defaults of RunOptions.
const (
	DefaultConcurrency  = 4
	DefaultRetries      = 5
	DefaultRetryBackoff = 250 * time.Millisecond
	maxRetryBackoff     = 5 * time.Second
)

// RunOptions tune a plan or a run. The zero value is safe: four schemas
// at a time per shard, halt at the first failure, no destructive change.
type RunOptions struct {
	Select Selector
	// Concurrency is the number of schemas migrated at once on each shard
	// (DefaultConcurrency when zero).
	Concurrency int
	// BatchSize splits the targets that need a change into batches run one
	// after the other across all shards; the failure budget is checked
	// between batches too. Zero: one batch.
	BatchSize int
	// Canary is the number of targets (the first ones, by shard and schema)
	// migrated first as a batch of their own, which must fully succeed
	// before anything else runs. CanarySchemas names them instead.
	Canary        int
	CanarySchemas []string
	// FailureBudget is the number of failed schemas tolerated; one more
	// halts the run (schemas in flight finish, the rest are skipped).
	// Negative: continue on error, whatever fails.
	FailureBudget int
	// AllowDestructive permits dropping tables and columns.
	AllowDestructive bool
	// LockTimeout bounds every lock wait of a schema's migration
	// (DefaultLockTimeout when zero); a timed-out schema is retried later.
	LockTimeout time.Duration
	// Retries is how often a schema is retried after a lock timeout or
	// deadlock (DefaultRetries when zero, none when negative), with
	// exponential backoff from RetryBackoff (DefaultRetryBackoff when zero).
	Retries      int
	RetryBackoff time.Duration
	// ConcurrentIndexes builds new indexes on existing tables with CREATE
	// INDEX CONCURRENTLY, outside the schema's transaction (declarative
	// mode). The ledger row is then written after the indexes are valid.
	ConcurrentIndexes bool
	// RunID names the run in the ledger and logs; generated when empty.
	RunID string
	// RequireExisting makes Plan fail with ErrNoSchema when a target's
	// schema does not exist, instead of planning to create it. Set it for
	// explicit target lists typed by people (a misspelt name would become a
	// new schema with every table); tenants' schemas are created when the
	// tenants are, by the registry's provisioning.
	RequireExisting bool
}

func (o RunOptions) withDefaults() RunOptions {
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.LockTimeout <= 0 {
		o.LockTimeout = DefaultLockTimeout
	}
	switch {
	case o.Retries == 0:
		o.Retries = DefaultRetries
	case o.Retries < 0:
		o.Retries = 0
	}
	if o.RetryBackoff <= 0 {
		o.RetryBackoff = DefaultRetryBackoff
	}
	if o.RunID == "" {
		o.RunID = newRunID()
	}
	return o
}

func newRunID() string {
	return time.Now().UTC().Format("20060102T150405.000Z")
}

func (f *Fleet) logger() *slog.Logger {
	if f.Logger != nil {
		return f.Logger
	}
	return slog.Default()
}

func (f *Fleet) roles() Roles {
	if f.Roles == (Roles{}) {
		return DefaultRoles()
	}
	return f.Roles
}

func (f *Fleet) targets() Targets {
	if f.Targets == nil {
		return Discover{}
	}
	return f.Targets
}

func (f *Fleet) mode() string {
	if f.Dir != nil {
		return ModeVersioned
	}
	return ModeDeclarative
}

// Modes of the ledger.
const (
	ModeDeclarative = "declarative"
	ModeVersioned   = "versioned"
)

func (f *Fleet) validate() error {
	switch {
	case len(f.Shards) == 0:
		return errors.New("migrate: fleet: no shards")
	case (f.Desired == nil) == (f.Dir == nil):
		return errors.New("migrate: fleet: set exactly one of Desired (declarative) and Dir (versioned)")
	}
	seen := make(map[string]bool)
	for _, s := range f.Shards {
		if s.Name == "" || s.DB == nil {
			return fmt.Errorf("migrate: fleet: shard %q: name and DB are required", s.Name)
		}
		if seen[s.Name] {
			return fmt.Errorf("migrate: fleet: shard %q listed twice", s.Name)
		}
		seen[s.Name] = true
	}
	return f.roles().validate()
}
