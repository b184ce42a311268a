package migrate

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tenantry/tenantry/tenancy"
)

// ProvisionRunID is the run id of the ledger rows that Provisioner writes
// unless ProvisionOptions.RunID names another.
const ProvisionRunID = "provision"

// ProvisionOptions tune a Provisioner. The zero value is the default.
type ProvisionOptions struct {
	// LockTimeout bounds every lock wait of a provisioning transaction
	// (DefaultLockTimeout when zero).
	LockTimeout time.Duration
	// RunID is the run id of the ledger rows (ProvisionRunID when empty).
	RunID string
}

// SparePrefix starts the names of spare schemas (Provisioner.Prepare):
// schemas at the desired state created ahead of time, that Provision
// renames to a new tenant's schema. They match the runner's default
// discovery (tenant_%), so fleet runs keep them current.
const SparePrefix = tenancy.SpareSchemaPrefix

// Provisioner creates new schemas at the desired state in one round trip
// each. The statements that take an empty schema to the desired state are
// the same for every schema, so they are planned once per server version
// (Atlas's diff against an empty schema plus the guard DDL: composite
// tenant keys, row-level security and its policy, grants), inside a
// transaction that is rolled back, and cached. Each new schema then runs
// them in a single transaction sent as one pipeline: owner role,
// lock_timeout, the schema's advisory lock (the one Apply and fleet runs
// take), a ledger check that no version is recorded for the schema yet,
// CREATE SCHEMA, a transaction-local search_path of exactly that schema,
// the cached statements with the schema's quoted name, and the ledger rows
// at the desired version with the fingerprint the plan ends at — so a
// fleet run sees the schema as current and leaves it alone.
//
// A schema that exists already (a resumed provisioning, a shared schema)
// is brought to the desired state by Desired.Apply instead, and recorded in
// the ledger. It is safe for concurrent use; it holds no connection.
type Provisioner struct {
	desired *Desired
	roles   Roles
	opt     ProvisionOptions

	mu        sync.Mutex
	templates map[string]*template // by server_version
	ready     map[*sql.DB]string   // ledger ensured and version recorded, by pool → server_version
	spares    map[*sql.DB][]string // spare schemas known to be at the version, by pool
	taken     map[string]bool      // spares taken (claimed or found stale), kept out of Prepare's lists
}

// template is the cached plan from an empty schema.
type template struct {
	stmts       []string // after CREATE SCHEMA; the schema as quotedToken, tables unqualified
	fingerprint string   // what every schema provisioned with it has
	description []string
	planHash    string
}

// NewProvisioner returns a Provisioner of the desired state, creating
// schemas owned by roles.Owner and granted to roles.App and roles.Admin.
// At most one ProvisionOptions may be given.
func NewProvisioner(d *Desired, roles Roles, opts ...ProvisionOptions) (*Provisioner, error) {
	if d == nil {
		return nil, errors.New("migrate: provisioner: no desired state")
	}
	if err := roles.validate(); err != nil {
		return nil, err
	}
	var opt ProvisionOptions
	switch len(opts) {
	case 0:
	case 1:
		opt = opts[0]
	default:
		return nil, fmt.Errorf("migrate: provisioner: at most one ProvisionOptions, got %d", len(opts))
	}
	if opt.LockTimeout <= 0 {
		opt.LockTimeout = DefaultLockTimeout
	}
	if opt.RunID == "" {
		opt.RunID = ProvisionRunID
	}
	return &Provisioner{desired: d, roles: roles, opt: opt, templates: make(map[string]*template), ready: make(map[*sql.DB]string), spares: make(map[*sql.DB][]string), taken: make(map[string]bool)}, nil
}

// Desired returns the desired state the provisioner creates.
func (p *Provisioner) Desired() *Desired { return p.desired }

// Provisioned reports what Provision did to one schema.
type Provisioned struct {
	Schema string
	// Fast is set when the schema was new and the cached plan created it
	// in one round trip, or a spare was renamed to it (Spare); otherwise it
	// existed and Desired.Apply brought it up to date (Statements counts
	// what Apply ran, often nothing).
	Fast bool
	// Spare is set when a spare schema (Prepare) was renamed to it.
	Spare bool
	// Statements is the number of statements of the schema's transaction
	// that changed it (CREATE SCHEMA included).
	Statements int
	// Fingerprint is the catalog fingerprint (Fingerprints) the schema has
	// afterwards, as the cached plan promised it; empty on the slow path.
	Fingerprint string
	// Version is the desired version recorded in the ledger; for a schema
	// left Ahead, the version the ledger has for it ("" if none).
	Version string
	// Ahead lists what an existing schema has that the desired state lacks
	// (drops that Apply refused, see DestructiveError): a fleet run
	// migrated it to a newer version than the provisioner's, or it
	// drifted. Provision then leaves it as it is and does not fail.
	Ahead []string
}

// Provision creates the schema at the desired state on db (a pool of a
// shard database, connected as the owner role, a member of it, or a
// superuser, through pgx's database/sql driver) and records it in the
// shard's ledger, in the same transaction, at the desired version. tenant
// is the tenant id recorded with it ("" for a shared schema; derived from a
// tenant_<hex> name when empty). If the schema exists already it is brought
// up to date with Desired.Apply instead (never dropped or emptied); one that
// is ahead of the desired state is left as it is (Provisioned.Ahead).
func (p *Provisioner) Provision(ctx context.Context, db *sql.DB, schema, tenant string) (*Provisioned, error) {
	if err := ValidateSchemaName(schema); err != nil {
		return nil, err
	}
	if tenant == "" {
		tenant = TenantOfSchema(schema)
	}
	for range 2 { // a spare may have been taken by another process
		spare := p.takeSpare(db)
		if spare == "" {
			break
		}
		res, err := p.claim(ctx, db, spare, schema, tenant)
		switch code := pgCode(err); {
		case err == nil:
			return res, nil
		case code == "42P06" || (code == sqlstateChanged && aboutSchema(err, schema)):
			// The tenant's schema exists or is in the ledger: keep the spare.
			p.putSpare(db, spare)
			return p.provisionExisting(ctx, db, schema, tenant)
		case code != sqlstateChanged && code != "3F000":
			p.putSpare(db, spare)
			return nil, fmt.Errorf("migrate: provision %q from spare %q: %w", schema, spare, err)
		}
		// The spare is gone or not at the version: forget it.
	}
	res, err := p.provisionFast(ctx, db, schema, tenant)
	switch code := pgCode(err); {
	case err == nil:
		return res, nil
	case code == "42P06" || code == sqlstateChanged: // duplicate_schema; the ledger knows it
		return p.provisionExisting(ctx, db, schema, tenant)
	case code == "55P03":
		return nil, fmt.Errorf("migrate: provision %q: %w: %w", schema, ErrLockTimeout, err)
	default:
		return nil, fmt.Errorf("migrate: provision %q: %w", schema, err)
	}
}

// Ensure makes sure the schema exists at the desired version: when the
// shard's ledger records it at that version (one query), it does nothing;
// otherwise it provisions it as Provision does. It is meant for shared
// schemas, which many tenants' provisionings name.
func (p *Provisioner) Ensure(ctx context.Context, db *sql.DB, schema string) (*Provisioned, error) {
	if err := ValidateSchemaName(schema); err != nil {
		return nil, err
	}
	var version string
	err := db.QueryRowContext(ctx, `SELECT s.version FROM tenantry.schema_state s
		WHERE s.schema_name = $1 AND EXISTS (SELECT 1 FROM pg_namespace n WHERE n.nspname = $1)`, schema).Scan(&version)
	switch {
	case err == nil && version == p.desired.Version():
		return &Provisioned{Schema: schema, Version: version}, nil
	case err != nil && !errors.Is(err, sql.ErrNoRows) && pgCode(err) != "42P01": // 42P01: no ledger yet
		return nil, fmt.Errorf("migrate: ensure %q: ledger: %w", schema, err)
	}
	return p.Provision(ctx, db, schema, "")
}

// provisionFast runs the cached plan for a new schema in one round trip.
func (p *Provisioner) provisionFast(ctx context.Context, db *sql.DB, schema, tenant string) (*Provisioned, error) {
	// The plan first, holding no connection: planning needs some of the
	// pool's, and concurrent callers wait for it.
	tpl, err := p.template(ctx, db)
	if err != nil {
		return nil, err
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	var pc *pgx.Conn
	if err := conn.Raw(func(dc any) error {
		c, ok := dc.(interface{ Conn() *pgx.Conn })
		if !ok {
			return fmt.Errorf("migrate: shard connections must use pgx's database/sql driver (github.com/jackc/pgx/v5/stdlib), not %T", dc)
		}
		pc = c.Conn()
		return nil
	}); err != nil {
		return nil, err
	}
	rec := ledgerRecord{
		runID: p.opt.RunID, schema: schema, tenant: tenant, mode: ModeDeclarative, version: p.desired.Version(),
		fingerprint: tpl.fingerprint, statements: len(tpl.stmts) + 1, planHash: tpl.planHash, attempts: 1, started: time.Now(),
	}
	stmts := make([]string, 0, len(tpl.stmts)+8)
	stmts = append(stmts,
		fmt.Sprintf("SELECT set_config('role', %s, true), set_config('lock_timeout', %s, true)",
			literal(p.roles.Owner), literal(lockTimeoutSetting(p.opt.LockTimeout))),
		fmt.Sprintf("SELECT pg_advisory_xact_lock(hashtext('tenantry:' || %s))", literal(schema)),
		expectSQL(schema, ""),
		"CREATE SCHEMA "+ident(schema)+" AUTHORIZATION "+ident(p.roles.Owner),
		fmt.Sprintf("SELECT set_config('search_path', %s, true)", literal(ident(schema))),
	)
	for _, s := range tpl.stmts {
		stmts = append(stmts, render(s, schema))
	}
	stmts = append(stmts, rec.appliedSQL()...)
	err = conn.Raw(func(any) error { return pipeline(ctx, pc, stmts) })
	if err != nil {
		return nil, err
	}
	return &Provisioned{Schema: schema, Fast: true, Statements: rec.statements, Fingerprint: tpl.fingerprint, Version: rec.version}, nil
}

// pipeline sends the statements in one round trip, each parsed on its own
// (as Apply runs them, so that stored expressions are identical), before
// one Sync: one implicit transaction.
func pipeline(ctx context.Context, pc *pgx.Conn, stmts []string) error {
	b := &pgconn.Batch{}
	for _, s := range stmts {
		b.ExecParams(s, nil, nil, nil, nil)
	}
	results, err := pc.PgConn().ExecBatch(ctx, b).ReadAll()
	if err == nil {
		return nil
	}
	for i, res := range results {
		if res.Err != nil && i < len(stmts) {
			return fmt.Errorf("%s: %w", firstLine(stmts[i]), err)
		}
	}
	return err
}

// template returns the cached plan for db's server version, planning it
// the first time; it also makes sure, once per pool, that the shard has a
// ledger that knows the version's fingerprint. The caller must hold none
// of db's connections.
func (p *Provisioner) template(ctx context.Context, db *sql.DB) (*template, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if v, ok := p.ready[db]; ok {
		return p.templates[v], nil
	}
	var serverVersion string
	if err := db.QueryRowContext(ctx, "SHOW server_version_num").Scan(&serverVersion); err != nil {
		return nil, fmt.Errorf("migrate: provisioning plan: %w", err)
	}
	tpl := p.templates[serverVersion]
	if err := EnsureLedger(ctx, db, p.roles); err != nil {
		return nil, err
	}
	if tpl == nil {
		var err error
		if tpl, err = p.plan(ctx, db); err != nil {
			return nil, fmt.Errorf("migrate: provisioning plan: %w", err)
		}
		p.templates[serverVersion] = tpl
	}
	// Tell fleet runs what a fresh schema at the version looks like, so
	// they need not build one to know that provisioned schemas are current.
	if err := recordVersion(ctx, db, p.roles, ModeDeclarative, p.desired.Version(), tpl.fingerprint,
		strings.Join(tpl.description, "\n"), tpl.planHash); err != nil {
		return nil, fmt.Errorf("migrate: provisioning plan: record version: %w", err)
	}
	p.ready[db] = serverVersion
	return tpl, nil
}

// plan computes the statements from an empty schema in a scratch schema,
// inside a transaction that is rolled back, with the fingerprint and
// description they end at.
func (p *Provisioner) plan(ctx context.Context, db *sql.DB) (*template, error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	if err := actAsOwner(ctx, tx, p.roles); err != nil {
		return nil, err
	}
	name := scratchPrefix + fmt.Sprintf("%x", time.Now().UnixNano())
	sp, err := p.desired.reconcile(ctx, tx, name, p.roles, reconcileOptions{schemaRef: quotedToken, fresh: true})
	if err != nil {
		return nil, err
	}
	tpl := &template{}
	for _, s := range sp.atlas {
		if len(s.args) > 0 {
			return nil, fmt.Errorf("statement with arguments cannot be cached: %s", s.cmd)
		}
		tpl.stmts = append(tpl.stmts, s.cmd)
	}
	tpl.stmts = append(tpl.stmts, sp.guards...)
	if tpl.fingerprint, err = fingerprintTx(ctx, tx, name); err != nil {
		return nil, err
	}
	desc, err := describeTx(ctx, tx, name)
	if err != nil {
		return nil, err
	}
	tpl.description = desc[name]
	// The same hash a fleet run gives its plan for new schemas.
	h := sha256.New()
	fmt.Fprintf(h, "%v\n%s\n", true, strings.Join(tpl.stmts, ";\n"))
	tpl.planHash = fmt.Sprintf("%x", h.Sum(nil)[:6])
	return tpl, nil
}

// provisionExisting brings an existing schema to the desired state with
// Apply and records it in the ledger unless the ledger already has it at
// the version and nothing changed.
func (p *Provisioner) provisionExisting(ctx context.Context, db *sql.DB, schema, tenant string) (*Provisioned, error) {
	started := time.Now()
	res, err := p.desired.Apply(ctx, db, schema, p.roles, Options{LockTimeout: p.opt.LockTimeout})
	var de *DestructiveError
	if errors.As(err, &de) {
		// The schema has tables or columns this desired state lacks:
		// typically a fleet run migrated it to a newer version than this
		// (older) provisioner's. Provisioning never drops anything: it is
		// left as it is, and the ledger keeps its version.
		var have sql.NullString
		if qerr := db.QueryRowContext(ctx, "SELECT version FROM tenantry.schema_state WHERE schema_name = $1", schema).Scan(&have); qerr != nil && !errors.Is(qerr, sql.ErrNoRows) {
			return nil, fmt.Errorf("migrate: provision %q: ledger: %w", schema, qerr)
		}
		return &Provisioned{Schema: schema, Version: have.String, Ahead: de.Changes}, nil
	}
	if err != nil {
		return nil, err
	}
	out := &Provisioned{Schema: schema, Statements: len(res.Statements), Version: p.desired.Version()}
	if err := p.record(ctx, db, ledgerRecord{
		runID: p.opt.RunID, schema: schema, tenant: tenant, mode: ModeDeclarative, version: p.desired.Version(),
		statements: len(res.Statements), attempts: 1, started: started,
	}, res.Changed()); err != nil {
		return nil, fmt.Errorf("migrate: provision %q: ledger: %w", schema, err)
	}
	return out, nil
}

// record writes the ledger rows of a schema brought up to date outside a
// fleet run: always when changed, else only if the ledger has another
// version for it.
func (p *Provisioner) record(ctx context.Context, db *sql.DB, r ledgerRecord, changed bool) error {
	if err := EnsureLedger(ctx, db, p.roles); err != nil {
		return err
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := actAsOwner(ctx, tx, p.roles); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(hashtext('tenantry:' || $1))", r.schema); err != nil {
		return err
	}
	var have sql.NullString
	if err := tx.QueryRowContext(ctx, "SELECT version FROM tenantry.schema_state WHERE schema_name = $1", r.schema).Scan(&have); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	if !changed && have.String == r.version {
		return nil
	}
	r.from = have.String
	if r.fingerprint, err = fingerprintTx(ctx, tx, r.schema); err != nil {
		return err
	}
	for _, s := range r.appliedSQL() {
		if _, err := tx.ExecContext(ctx, s); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// Prepare makes sure db has at least n spare schemas at the desired state
// (named SparePrefix + random hex): it adopts the spares the shard's
// ledger has at the version and creates the missing ones, each in one
// round trip as Provision does, and returns how many it created. Provision
// then renames a spare to the new schema (one round trip of cheap
// statements: no table, index or file is created while the tenant waits)
// and falls back to creating the schema when none is left. Spares cost
// what the schemas cost; fleet runs migrate them like any tenant schema.
func (p *Provisioner) Prepare(ctx context.Context, db *sql.DB, n int) (int, error) {
	if err := EnsureLedger(ctx, db, p.roles); err != nil {
		return 0, err
	}
	rows, err := db.QueryContext(ctx, `SELECT s.schema_name FROM tenantry.schema_state s
		JOIN pg_namespace n ON n.nspname = s.schema_name
		WHERE s.schema_name LIKE $1 AND s.version = $2 ORDER BY 1`, tenancy.LikePrefix(SparePrefix), p.desired.Version())
	if err != nil {
		return 0, fmt.Errorf("migrate: spares: %w", err)
	}
	var have []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			rows.Close()
			return 0, fmt.Errorf("migrate: spares: %w", err)
		}
		have = append(have, s)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("migrate: spares: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("migrate: spares: %w", err) // the list may be cut short: keep the one we know
	}
	// A spare taken while the list was read may still be in it.
	p.mu.Lock()
	listed := make(map[string]bool, len(have))
	var fresh []string
	for _, s := range have {
		listed[s] = true
		if !p.taken[s] {
			fresh = append(fresh, s)
		}
	}
	for s := range p.taken {
		if !listed[s] {
			delete(p.taken, s) // gone from the ledger: nothing to filter any more
		}
	}
	have = fresh
	p.spares[db] = have
	p.mu.Unlock()
	created := 0
	for len(have)+created < n {
		if err := ctx.Err(); err != nil {
			return created, err
		}
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return created, err
		}
		name := SparePrefix + hex.EncodeToString(b[:])
		if _, err := p.provisionFast(ctx, db, name, ""); err != nil {
			return created, fmt.Errorf("migrate: spare %q: %w", name, err)
		}
		p.putSpare(db, name)
		created++
	}
	return created, nil
}

// Spares returns how many spare schemas of db the provisioner knows.
func (p *Provisioner) Spares(db *sql.DB) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.spares[db])
}

func (p *Provisioner) takeSpare(db *sql.DB) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	l := p.spares[db]
	if len(l) == 0 {
		return ""
	}
	s := l[len(l)-1]
	p.spares[db] = l[:len(l)-1]
	p.taken[s] = true
	return s
}

func (p *Provisioner) putSpare(db *sql.DB, s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.taken, s)
	if !slices.Contains(p.spares[db], s) {
		p.spares[db] = append(p.spares[db], s)
	}
}

// claim renames a spare to the schema in one round trip: owner role,
// lock_timeout, both advisory locks, ledger checks (the spare at the
// version, nothing recorded for the schema), the rename, and the ledger
// rows moved to the schema's name.
func (p *Provisioner) claim(ctx context.Context, db *sql.DB, spare, schema, tenant string) (*Provisioned, error) {
	version := p.desired.Version()
	rec := ledgerRecord{
		runID: p.opt.RunID, schema: schema, tenant: tenant, mode: ModeDeclarative, version: version, from: version,
		statements: 1, attempts: 1, started: time.Now(),
	}
	stmts := []string{
		fmt.Sprintf("SELECT set_config('role', %s, true), set_config('lock_timeout', %s, true)",
			literal(p.roles.Owner), literal(lockTimeoutSetting(p.opt.LockTimeout))),
		fmt.Sprintf("SELECT pg_advisory_xact_lock(hashtext('tenantry:' || %s))", literal(spare)),
		fmt.Sprintf("SELECT pg_advisory_xact_lock(hashtext('tenantry:' || %s))", literal(schema)),
		expectSQL(schema, ""),
		expectSQL(spare, version),
		"ALTER SCHEMA " + ident(spare) + " RENAME TO " + ident(schema),
		fmt.Sprintf("DELETE FROM tenantry.schema_state WHERE schema_name = %s", literal(spare)),
	}
	stmts = append(stmts, rec.appliedSQL()...)
	if err := execPipeline(ctx, db, stmts); err != nil {
		return nil, err
	}
	return &Provisioned{Schema: schema, Fast: true, Spare: true, Statements: 1, Version: version}, nil
}

// aboutSchema reports whether a tenantry.expect_version error is about
// the named schema (its message starts "schema <name> is at version").
func aboutSchema(err error, schema string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && strings.HasPrefix(pgErr.Message, "schema "+schema+" ")
}
