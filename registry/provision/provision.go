// Package provision does the shard side of a tenant's lifecycle for the
// registry: creating its schema (fast: a plan cached per desired version,
// run in one round trip per tenant, see migrate.Provisioner) and
// offboarding it (retiring the schema, restoring it, purging it). It is
// separate from package registry so that routers, which import registry,
// do not link the migration engine.
package provision

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tenantry/tenantry/migrate"
	"github.com/tenantry/tenantry/registry"
	"github.com/tenantry/tenantry/tenancy"
)

// ApplySchema returns the registry.ApplyFunc that creates (or brings up to
// date) a tenant schema: desired.Apply on the shard's primary, connected as
// roles.Owner — tables, composite foreign keys, row-level security and
// grants to roles.App and roles.Admin. The roles must exist on the shard
// (migrate.EnsureRoles; tenantctl shards add -ensure-roles does it).
//
// It inspects the schema and opens a connection per call: use a
// Provisioner to create many tenants (one round trip each).
func ApplySchema(desired *migrate.Desired, roles migrate.Roles, opts ...migrate.Options) registry.ApplyFunc {
	return func(ctx context.Context, sh registry.Shard, schema string) error {
		db, err := registry.OpenShard(sh, roles.Owner)
		if err != nil {
			return err
		}
		defer db.Close()
		_, err = desired.Apply(ctx, db, schema, roles, opts...)
		return err
	}
}

// Provisioner creates and offboards tenant schemas on the registry's
// shards. It keeps one small pool per shard (connected as the owner role)
// and the provisioning plan of the desired state; Close releases the
// pools. It is safe for concurrent use.
//
// Its Apply method is a registry.ApplyFunc, and it implements
// registry.OffboardOps.
type Provisioner struct {
	fast    *migrate.Provisioner
	roles   migrate.Roles
	opt     Options
	metrics *metrics

	ctx    context.Context // of background refills; canceled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	pools     map[string]*sql.DB // by shard name and DSN
	refilling map[*sql.DB]bool   // refill running; true: run it again
}

// Options tune a Provisioner. The zero value is the default.
type Options struct {
	// Provision tunes the schema creation (lock_timeout, ledger run id).
	Provision migrate.ProvisionOptions
	// Spares is how many spare schemas (migrate.Provisioner.Prepare) to
	// keep ready on each accepting shard a tenant is provisioned on: a new
	// tenant's schema is then a spare renamed, and the spare is replaced
	// in the background. Zero: none, every schema is created while its
	// tenant waits (one round trip). Spares are schemas like any other
	// (tenant_spare_<hex>): they take catalog space and fleet runs migrate
	// them; the registry does not count them as tenants.
	Spares int
	// Logger receives the errors of background refills (slog.Default()
	// when nil).
	Logger *slog.Logger
	// Registerer, when set, gets the provisioner's Prometheus metrics
	// (tenantry_provision_*, tenantry_offboard_operations_total; labels:
	// shard and path or operation, never the tenant).
	Registerer prometheus.Registerer
}

// PoolSize is the number of connections a Provisioner opens at most per
// shard.
const PoolSize = 4

// New returns a Provisioner of the desired state. roles.Owner owns the
// schemas it creates; the roles must exist on every shard
// (migrate.EnsureRoles).
// At most one Options may be given.
func New(desired *migrate.Desired, roles migrate.Roles, opts ...Options) (*Provisioner, error) {
	var opt Options
	switch len(opts) {
	case 0:
	case 1:
		opt = opts[0]
	default:
		return nil, fmt.Errorf("provision: at most one Options, got %d", len(opts))
	}
	if opt.Spares < 0 {
		return nil, fmt.Errorf("provision: negative number of spares %d", opt.Spares)
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	fast, err := migrate.NewProvisioner(desired, roles, opt.Provision)
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(opt.Registerer)
	if err != nil {
		return nil, fmt.Errorf("provision: metrics: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Provisioner{fast: fast, roles: roles, opt: opt, metrics: m, ctx: ctx, cancel: cancel,
		pools: make(map[string]*sql.DB), refilling: make(map[*sql.DB]bool)}, nil
}

// Warm makes sure the shard has Options.Spares spare schemas ready (see
// Options.Spares), creating the missing ones now, and returns how many it
// created.
func (p *Provisioner) Warm(ctx context.Context, sh registry.Shard) (int, error) {
	db, err := p.DB(sh)
	if err != nil {
		return 0, err
	}
	n, err := p.fast.Prepare(ctx, db, p.opt.Spares)
	p.metrics.setSpares(sh.Name, p.fast.Spares(db))
	return n, err
}

// refill replaces used spares of a shard in the background, one refill
// per shard at a time; a refill asked for while one runs makes it run
// again, so no use of a spare goes unreplaced.
func (p *Provisioner) refill(sh registry.Shard, db *sql.DB) {
	if p.opt.Spares == 0 || !sh.Accepting {
		return // a dedicated shard (no longer accepting) gets no spares
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ctx.Err() != nil {
		return
	}
	if _, running := p.refilling[db]; running {
		p.refilling[db] = true // again
		return
	}
	p.refilling[db] = false
	p.wg.Go(func() {
		for {
			_, err := p.fast.Prepare(p.ctx, db, p.opt.Spares)
			p.metrics.setSpares(sh.Name, p.fast.Spares(db))
			if err != nil && p.ctx.Err() == nil {
				p.metrics.refillFailed(sh.Name)
				p.opt.Logger.Warn("provision: could not refill spare schemas", "shard", sh.Name, "err", err)
			}
			p.mu.Lock()
			again := p.refilling[db] && err == nil && p.ctx.Err() == nil
			if !again {
				delete(p.refilling, db)
				p.mu.Unlock()
				return
			}
			p.refilling[db] = false
			p.mu.Unlock()
		}
	})
}

// Close stops background refills and closes the shard pools.
func (p *Provisioner) Close() error {
	p.cancel()
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for k, db := range p.pools {
		errs = append(errs, db.Close())
		delete(p.pools, k)
	}
	return errors.Join(errs...)
}

// DB returns the Provisioner's pool on a shard, connected as the owner
// role. Do not close it.
func (p *Provisioner) DB(sh registry.Shard) (*sql.DB, error) {
	key := sh.Name + "\x00" + sh.DSN
	p.mu.Lock()
	defer p.mu.Unlock()
	if db := p.pools[key]; db != nil {
		return db, nil
	}
	db, err := registry.OpenShard(sh, p.roles.Owner)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(PoolSize)
	db.SetMaxIdleConns(PoolSize)
	db.SetConnMaxIdleTime(time.Minute)
	p.pools[key] = db
	return db, nil
}

// Apply creates the schema on the shard at the desired state and records
// it in the shard's ledger at the desired version (migrate.Provisioner:
// one round trip for a new schema). A shared schema (named
// tenancy.SharedSchemaPrefix...) is only checked when the ledger has it
// at the desired version already: adding a tenant to it is a registry row.
// It has the signature of a registry.ApplyFunc.
func (p *Provisioner) Apply(ctx context.Context, sh registry.Shard, schema string) error {
	db, err := p.DB(sh)
	if err != nil {
		return err
	}
	start := time.Now()
	if strings.HasPrefix(schema, tenancy.SharedSchemaPrefix) {
		_, err = p.fast.Ensure(ctx, db, schema)
		p.metrics.provisioned(sh.Name, pathOf(nil, err, "shared"), time.Since(start))
		return err
	}
	res, err := p.fast.Provision(ctx, db, schema, "")
	p.metrics.provisioned(sh.Name, pathOf(res, err, ""), time.Since(start))
	if err == nil && (res.Spare || p.fast.Spares(db) < p.opt.Spares) {
		p.refill(sh, db) // also updates the spares gauge
	}
	return err
}

// pathOf names how a schema was provisioned, for the metrics.
func pathOf(res *migrate.Provisioned, err error, path string) string {
	switch {
	case err != nil:
		return "failed"
	case path != "":
		return path
	case res.Spare:
		return "spare"
	case res.Fast:
		return "created"
	}
	return "existing"
}

// lockTimeout bounds the lock waits of offboarding transactions.
const lockTimeout = 5 * time.Second

// begin starts a transaction on the shard as the owner role with a
// lock_timeout, holding the advisory locks of the named schemas (the locks
// migrations take), so no migration of them runs meanwhile.
func (p *Provisioner) begin(ctx context.Context, sh registry.Shard, schemas ...string) (*sql.Tx, error) {
	db, err := p.DB(sh)
	if err != nil {
		return nil, err
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	if _, err := tx.ExecContext(ctx, "SELECT set_config('role', $1, true), set_config('lock_timeout', $2, true)",
		p.roles.Owner, fmt.Sprintf("%dms", lockTimeout.Milliseconds())); err != nil {
		tx.Rollback()
		return nil, err
	}
	for _, s := range schemas {
		if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(hashtext('tenantry:' || $1))", s); err != nil {
			tx.Rollback()
			return nil, err
		}
	}
	return tx, nil
}

// schemasExist reports which of the two schemas exist.
func schemasExist(ctx context.Context, tx *sql.Tx, a, b string) (bool, bool, error) {
	var ea, eb bool
	err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1),
		EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $2)`, a, b).Scan(&ea, &eb)
	return ea, eb, err
}

// renameSchema renames a schema and its ledger state, in tx.
func renameSchema(ctx context.Context, tx *sql.Tx, from, to string) error {
	if _, err := tx.ExecContext(ctx, "ALTER SCHEMA "+ident(from)+" RENAME TO "+ident(to)); err != nil {
		return err
	}
	return ledgerExec(ctx, tx, `UPDATE tenantry.schema_state SET schema_name = $2, updated_at = clock_timestamp()
		WHERE schema_name = $1`, from, to)
}

// ledgerExec runs a statement on the shard's ledger, if it has one.
func ledgerExec(ctx context.Context, tx *sql.Tx, stmt string, args ...any) error {
	var ok bool
	if err := tx.QueryRowContext(ctx, "SELECT to_regclass('tenantry.schema_state') IS NOT NULL").Scan(&ok); err != nil || !ok {
		return err
	}
	_, err := tx.ExecContext(ctx, stmt, args...)
	return err
}

func ident(s string) string { return pgx.Identifier{s}.Sanitize() }

// Retire renames the tenant's schema to its retired name (in the
// ledger too) and revokes the app and admin roles' access to it, so that
// nothing reaches it by either name. It implements registry.OffboardOps.
func (p *Provisioner) Retire(ctx context.Context, sh registry.Shard, o registry.Offboarding) (err error) {
	defer func() { p.metrics.offboarded(sh.Name, "retire", err) }()
	if err := validRetirement(o); err != nil {
		return err
	}
	tx, err := p.begin(ctx, sh, o.Schema, o.RetiredSchema)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	live, retired, err := schemasExist(ctx, tx, o.Schema, o.RetiredSchema)
	if err != nil {
		return err
	}
	switch {
	case live && retired:
		return fmt.Errorf("provision: both %s and %s exist on shard %s: drop the stale one by hand", o.Schema, o.RetiredSchema, sh.Name)
	case !live && retired:
		return nil // done already
	case !live:
		return fmt.Errorf("provision: schema %s does not exist on shard %s", o.Schema, sh.Name)
	}
	if err := renameSchema(ctx, tx, o.Schema, o.RetiredSchema); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, "REVOKE ALL ON SCHEMA "+ident(o.RetiredSchema)+" FROM "+ident(p.roles.App)+", "+ident(p.roles.Admin)); err != nil {
		return err
	}
	return tx.Commit()
}

// Unretire renames the retired schema back and brings it to the desired
// state (grants included; fleet runs do not migrate retired schemas), with
// a ledger row. It implements registry.OffboardOps.
func (p *Provisioner) Unretire(ctx context.Context, sh registry.Shard, o registry.Offboarding) (err error) {
	defer func() { p.metrics.offboarded(sh.Name, "unretire", err) }()
	if err := validRetirement(o); err != nil {
		return err
	}
	tx, err := p.begin(ctx, sh, o.Schema, o.RetiredSchema)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	live, retired, err := schemasExist(ctx, tx, o.Schema, o.RetiredSchema)
	if err != nil {
		return err
	}
	switch {
	case live && retired:
		return fmt.Errorf("provision: both %s and %s exist on shard %s: drop the stale one by hand", o.Schema, o.RetiredSchema, sh.Name)
	case retired:
		if err := renameSchema(ctx, tx, o.RetiredSchema, o.Schema); err != nil {
			return err
		}
	case !live:
		return fmt.Errorf("provision: neither %s nor %s exists on shard %s: the data is gone", o.RetiredSchema, o.Schema, sh.Name)
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	db, err := p.DB(sh)
	if err != nil {
		return err
	}
	_, err = p.fast.Provision(ctx, db, o.Schema, o.Tenant.String())
	return err
}

// Purge deletes an offboarded tenant's data: drops its retired schema, or,
// for a shared placement, deletes its rows from every tenant-scoped table
// of the shared schema (under row-level security for that tenant, so no
// other tenant's row can be touched), children before parents. It
// implements registry.OffboardOps.
func (p *Provisioner) Purge(ctx context.Context, sh registry.Shard, o registry.Offboarding) (err error) {
	defer func() { p.metrics.offboarded(sh.Name, "purge", err) }()
	if o.Mode == registry.ModeShared {
		return p.purgeShared(ctx, sh, o)
	}
	if err := validRetirement(o); err != nil {
		return err
	}
	tx, err := p.begin(ctx, sh, o.Schema, o.RetiredSchema)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	live, retired, err := schemasExist(ctx, tx, o.Schema, o.RetiredSchema)
	if err != nil {
		return err
	}
	if live && !retired {
		return fmt.Errorf("provision: schema %s of an offboarded tenant was not retired: retire it first (offboard again)", o.Schema)
	}
	if _, err := tx.ExecContext(ctx, "DROP SCHEMA IF EXISTS "+ident(o.RetiredSchema)+" CASCADE"); err != nil {
		return err
	}
	if err := ledgerExec(ctx, tx, `DELETE FROM tenantry.schema_state WHERE schema_name = $1`, o.RetiredSchema); err != nil {
		return err
	}
	return tx.Commit()
}

func (p *Provisioner) purgeShared(ctx context.Context, sh registry.Shard, o registry.Offboarding) error {
	if !strings.HasPrefix(o.Schema, tenancy.SharedSchemaPrefix) || o.Tenant.IsZero() {
		return fmt.Errorf("provision: purge %s from %s: not a shared schema of a tenant", o.Tenant, o.Schema)
	}
	tx, err := p.begin(ctx, sh) // rows only: no DDL, migrations may run alongside
	if err != nil {
		return err
	}
	defer tx.Rollback()
	tables, err := deleteOrder(ctx, tx, o.Schema, p.fast.Desired().TenantTables())
	if err != nil {
		return err
	}
	// The owner is subject to row-level security (FORCE): it sees only
	// the tenant it names, and the WHERE clause says the same.
	if _, err := tx.ExecContext(ctx, "SELECT set_config('app.current_tenant_id', $1, true)", o.Tenant.String()); err != nil {
		return err
	}
	for _, t := range tables {
		if _, err := tx.ExecContext(ctx, "DELETE FROM "+ident(o.Schema)+"."+ident(t)+" WHERE tenant_id = $1", o.Tenant.String()); err != nil {
			return fmt.Errorf("delete from %s.%s: %w", o.Schema, t, err)
		}
	}
	return tx.Commit()
}

// deleteOrder orders the tables so that every table comes before the
// tables it references (children first), from the schema's foreign keys.
func deleteOrder(ctx context.Context, tx *sql.Tx, schema string, tables []string) ([]string, error) {
	rows, err := tx.QueryContext(ctx, `SELECT DISTINCT c.relname::text, r.relname::text
		FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_class r ON r.oid = k.confrelid
		JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE k.contype = 'f' AND n.nspname = $1 AND k.conrelid <> k.confrelid`, schema)
	if err != nil {
		return nil, err
	}
	refs := make(map[string][]string) // table → tables that reference it
	for rows.Next() {
		var child, parent string
		if err := rows.Scan(&child, &parent); err != nil {
			rows.Close()
			return nil, err
		}
		refs[parent] = append(refs[parent], child)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	want := make(map[string]bool, len(tables))
	for _, t := range tables {
		want[t] = true
	}
	var out []string
	state := make(map[string]int) // 1 visiting, 2 done
	var visit func(t string) error
	visit = func(t string) error {
		switch state[t] {
		case 1:
			return fmt.Errorf("provision: foreign keys of %s form a cycle through %s: delete its rows by hand", schema, t)
		case 2:
			return nil
		}
		state[t] = 1
		for _, c := range refs[t] {
			if err := visit(c); err != nil {
				return err
			}
		}
		state[t] = 2
		if want[t] {
			out = append(out, t)
		}
		return nil
	}
	for _, t := range tables {
		if err := visit(t); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func validRetirement(o registry.Offboarding) error {
	for _, s := range []string{o.Schema, o.RetiredSchema} {
		if err := migrate.ValidateSchemaName(s); err != nil {
			return err
		}
	}
	if !strings.HasPrefix(o.RetiredSchema, tenancy.RetiredSchemaPrefix) {
		return fmt.Errorf("provision: retired schema %q must start with %s", o.RetiredSchema, tenancy.RetiredSchemaPrefix)
	}
	return nil
}

var _ registry.OffboardOps = (*Provisioner)(nil)
