package migrate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"ariga.io/atlas/sql/migrate"
	"ariga.io/atlas/sql/postgres"
	atlas "ariga.io/atlas/sql/schema"
	"ariga.io/atlas/sql/sqlcheck"
	destructiveAnalyzer "ariga.io/atlas/sql/sqlcheck/destructive"
	"github.com/jackc/pgx/v5/pgconn"
)

// DefaultLockTimeout is the lock_timeout of an Apply transaction unless
// Options.LockTimeout says otherwise.
const DefaultLockTimeout = 2 * time.Second

// Options tune Apply. The zero value is the safe default.
type Options struct {
	// AllowDestructive lets Apply drop tables and columns (and schemas).
	// Without it such a plan fails with a *DestructiveError (ErrDestructive)
	// and nothing changes.
	AllowDestructive bool
	// LockTimeout bounds how long any statement of the migration waits for a
	// lock, so that DDL queued behind a busy table does not in turn queue
	// every tenant query behind itself. Zero means DefaultLockTimeout. A
	// timeout fails Apply with an error wrapping ErrLockTimeout.
	LockTimeout time.Duration
	// DryRun runs everything, reports it in the Result, and rolls back.
	DryRun bool
}

// Result reports what Apply did to one schema.
type Result struct {
	// Schema is the schema name Apply was given.
	Schema string
	// Statements are the statements that changed the schema, in the order
	// they ran: schema creation, the Atlas plan, then guard DDL (row-level
	// security, policies, grants). Empty when the schema was up to date.
	// Statements are unqualified; they ran under a transaction-local
	// search_path of exactly Schema.
	Statements []string
	// DryRun is set when Options.DryRun rolled everything back.
	DryRun bool
}

// Changed reports whether Apply ran any statement.
func (r *Result) Changed() bool { return len(r.Statements) > 0 }

// Apply brings the schema named schemaName to the desired state, in one
// transaction on db:
//
//  1. SET LOCAL ROLE roles.Owner unless db already connects as the owner
//     (a superuser or a member of the owner role may connect instead), so
//     every object is owned by the owner role;
//  2. pg_advisory_xact_lock on the schema name, so concurrent Applys of one
//     schema run one after the other;
//  3. a transaction-local lock_timeout (Options.LockTimeout);
//  4. CREATE SCHEMA ... AUTHORIZATION owner if the schema does not exist;
//  5. Atlas: inspect the schema, diff it against the desired state, plan,
//     and run the planned statements under a transaction-local search_path
//     of exactly that schema; drops are refused unless
//     Options.AllowDestructive (ErrDestructive);
//  6. reconcile the guard DDL: the deferrability of the guard foreign keys
//     (see NewDesired), ENABLE and FORCE row-level security and the
//     tenant_isolation policy on every tenant-scoped table (a missing or
//     altered policy is recreated, other permissive policies, which would
//     widen access, are dropped), USAGE on the schema, SELECT, INSERT,
//     UPDATE, DELETE on the tables and USAGE, SELECT on the sequences for
//     the app and admin roles, and nothing more for them;
//  7. commit.
//
// The roles must exist (EnsureRoles). At most one Options may be given.
// Applying to an up-to-date schema runs nothing and returns a Result with no
// statements.
func (d *Desired) Apply(ctx context.Context, db *sql.DB, schemaName string, roles Roles, opts ...Options) (*Result, error) {
	if err := ValidateSchemaName(schemaName); err != nil {
		return nil, err
	}
	if err := roles.validate(); err != nil {
		return nil, err
	}
	var opt Options
	switch len(opts) {
	case 0:
	case 1:
		opt = opts[0]
	default:
		return nil, fmt.Errorf("migrate: apply %q: at most one Options, got %d", schemaName, len(opts))
	}
	if opt.LockTimeout <= 0 {
		opt.LockTimeout = DefaultLockTimeout
	}
	res := &Result{Schema: schemaName, DryRun: opt.DryRun}
	if err := d.apply(ctx, db, schemaName, roles, opt, res); err != nil {
		var de *DestructiveError
		if errors.As(err, &de) {
			return nil, err
		}
		if pgErr := (*pgconn.PgError)(nil); errors.As(err, &pgErr) && pgErr.Code == "55P03" {
			err = fmt.Errorf("%w: %w", ErrLockTimeout, err)
		}
		return nil, fmt.Errorf("migrate: apply %q: %w", schemaName, err)
	}
	return res, nil
}

func (d *Desired) apply(ctx context.Context, db *sql.DB, name string, roles Roles, opt Options, res *Result) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() // no-op after Commit
	if err := prologue(ctx, tx, name, roles, opt.LockTimeout, false); err != nil {
		return err
	}
	p, err := d.reconcile(ctx, tx, name, roles, reconcileOptions{allowDestructive: opt.AllowDestructive, schemaRef: ident(name)})
	if err != nil {
		return err
	}
	res.Statements = p.statements(name)
	if opt.DryRun {
		return tx.Rollback()
	}
	return tx.Commit()
}

// prologue prepares a migration transaction of one schema: the owner role,
// the schema's advisory lock and a transaction-local lock_timeout. With
// boundLockWait the lock_timeout is set first, so that it also bounds the
// wait for the advisory lock (the fleet runner retries later rather than
// wait for another run); Apply waits for it.
func prologue(ctx context.Context, tx *sql.Tx, name string, roles Roles, lockTimeout time.Duration, boundLockWait bool) error {
	if err := actAsOwner(ctx, tx, roles); err != nil {
		return err
	}
	steps := []struct {
		stmt string
		arg  string
	}{
		{"SELECT pg_advisory_xact_lock(hashtext('tenantry:' || $1))", name},
		{"SELECT set_config('lock_timeout', $1, true)", lockTimeoutSetting(lockTimeout)},
	}
	if boundLockWait {
		steps[0], steps[1] = steps[1], steps[0]
	}
	for _, s := range steps {
		if _, err := tx.ExecContext(ctx, s.stmt, s.arg); err != nil {
			return err
		}
	}
	return nil
}

func lockTimeoutSetting(d time.Duration) string { return fmt.Sprintf("%dms", max(d.Milliseconds(), 1)) }

// schemaToken stands for the schema's quoted name in statements planned for
// a group of schemas; render replaces it. It is printable, so Atlas quotes
// it as it is.
const schemaToken = "⟨schema⟩"

// quotedToken is schemaToken as an identifier in a statement.
const quotedToken = `"` + schemaToken + `"`

// render replaces the schema token in a planned statement by the schema.
func render(stmt, schema string) string { return strings.ReplaceAll(stmt, quotedToken, ident(schema)) }

type reconcileOptions struct {
	allowDestructive bool
	// schemaRef is how the returned guard statements name the schema:
	// ident(name), or quotedToken when planning for a group.
	schemaRef string
	// concurrent plans new indexes on existing tables as CREATE INDEX
	// CONCURRENTLY IF NOT EXISTS, qualified with quotedToken, to run
	// outside the transaction. They are created in the transaction as plain
	// indexes meanwhile, so that the rest of the plan and the resulting
	// catalog state are what they will be.
	concurrent bool
	// fresh: the schema does not exist; plan from an empty schema without
	// inspecting it.
	fresh bool
}

// schemaPlan is what reconcile ran, in order.
type schemaPlan struct {
	created     bool            // CREATE SCHEMA ran
	create      string          // the CREATE SCHEMA statement (rendered)
	atlas       []atlasStmt     // Atlas's plan (unqualified)
	concurrent  []concurrentIdx // indexes to build outside the transaction
	guards      []string        // guard DDL; the schema named as schemaRef
	destructive []string        // destructive changes (refused unless allowed)
}

type atlasStmt struct {
	cmd  string
	args []any
}

// concurrentIdx is an index built with CREATE INDEX CONCURRENTLY.
type concurrentIdx struct {
	name, table string
	create      string // CREATE INDEX CONCURRENTLY IF NOT EXISTS ..., qualified with quotedToken
}

// empty reports whether the plan changes nothing.
func (p *schemaPlan) empty() bool {
	return !p.created && len(p.atlas) == 0 && len(p.concurrent) == 0 && len(p.guards) == 0
}

// statements returns the plan's statements for the schema name, in the
// order they ran.
func (p *schemaPlan) statements(name string) []string {
	var out []string
	if p.created {
		out = append(out, p.create)
	}
	for _, s := range p.atlas {
		out = append(out, s.cmd)
	}
	for _, c := range p.concurrent {
		out = append(out, render(c.create, name))
	}
	for _, g := range p.guards {
		out = append(out, render(g, name))
	}
	return out
}

// reconcile brings the schema to the desired state inside tx, which
// prologue prepared: it creates the schema if needed, sets a
// transaction-local search_path of exactly that schema, runs Atlas's plan,
// then the guard DDL. It returns what it ran.
func (d *Desired) reconcile(ctx context.Context, tx *sql.Tx, name string, roles Roles, o reconcileOptions) (*schemaPlan, error) {
	p := &schemaPlan{}
	exec := func(stmt string, args ...any) error {
		if _, err := tx.ExecContext(ctx, stmt, args...); err != nil {
			return fmt.Errorf("%s: %w", stmt, err)
		}
		return nil
	}
	var exists bool
	if err := tx.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", name).Scan(&exists); err != nil {
		return nil, err
	}
	if !exists {
		p.create = "CREATE SCHEMA IF NOT EXISTS " + ident(name) + " AUTHORIZATION " + ident(roles.Owner)
		if err := exec(p.create); err != nil {
			return nil, err
		}
		p.created = true
	}
	policy, err := d.policyText(ctx, tx)
	if err != nil {
		return nil, err
	}
	if err := exec("SELECT set_config('search_path', $1, true)", ident(name)); err != nil {
		return nil, err
	}

	// Tables, columns, indexes and foreign keys: Atlas.
	drv, err := postgres.Open(tx)
	if err != nil {
		return nil, err
	}
	current := atlas.New(name)
	if !o.fresh || exists {
		if current, err = drv.InspectSchema(ctx, name, nil); err != nil {
			return nil, fmt.Errorf("inspect: %w", err)
		}
	}
	desired, err := d.State(name)
	if err != nil {
		return nil, err
	}
	changes, err := drv.SchemaDiff(current, desired)
	if err != nil {
		return nil, fmt.Errorf("diff: %w", err)
	}
	if p.destructive, err = destructive(ctx, changes); err != nil {
		return nil, err
	}
	if len(p.destructive) > 0 && !o.allowDestructive {
		return nil, &DestructiveError{Schema: name, Changes: p.destructive}
	}
	var concurrent []*atlas.AddIndex
	if o.concurrent {
		changes, concurrent = splitConcurrent(changes)
	}
	if len(changes) > 0 {
		plan, err := drv.PlanChanges(ctx, "", changes, unqualified)
		if err != nil {
			return nil, fmt.Errorf("plan: %w", err)
		}
		for _, c := range plan.Changes {
			if err := exec(c.Cmd, c.Args...); err != nil {
				return nil, err
			}
			p.atlas = append(p.atlas, atlasStmt{cmd: c.Cmd, args: c.Args})
		}
	}
	for _, add := range concurrent {
		idx, err := d.planConcurrent(ctx, drv, add)
		if err != nil {
			return nil, err
		}
		// The same index, built plainly inside the transaction for now.
		if err := exec(strings.Replace(strings.Replace(idx.create, " CONCURRENTLY IF NOT EXISTS", "", 1), quotedToken+".", "", -1)); err != nil {
			return nil, err
		}
		p.concurrent = append(p.concurrent, idx)
	}

	// What Atlas does not manage: row-level security, policies, grants.
	guards, err := d.guardStatements(ctx, tx, name, roles, policy, o.schemaRef)
	if err != nil {
		return nil, err
	}
	for _, stmt := range guards {
		if err := exec(render(stmt, name)); err != nil {
			return nil, err
		}
	}
	p.guards = guards
	return p, nil
}

// splitConcurrent takes the new indexes of existing tables out of the
// changes, except unique indexes that a new foreign key of the same plan
// may need (they must exist before the key is added in the transaction).
func splitConcurrent(changes []atlas.Change) ([]atlas.Change, []*atlas.AddIndex) {
	needed := make(map[string]bool) // "table\x00col,col" referenced by new foreign keys
	key := func(t string, cols []*atlas.Column) string {
		names := make([]string, len(cols))
		for i, c := range cols {
			names[i] = c.Name
		}
		slices.Sort(names)
		return t + "\x00" + strings.Join(names, ",")
	}
	addFK := func(fk *atlas.ForeignKey) { needed[key(fk.RefTable.Name, fk.RefColumns)] = true }
	for _, c := range changes {
		switch c := c.(type) {
		case *atlas.AddTable:
			for _, fk := range c.T.ForeignKeys {
				addFK(fk)
			}
		case *atlas.ModifyTable:
			for _, mc := range c.Changes {
				if fk, ok := mc.(*atlas.AddForeignKey); ok {
					addFK(fk.F)
				}
			}
		}
	}
	var out []atlas.Change
	var adds []*atlas.AddIndex
	for _, c := range changes {
		m, ok := c.(*atlas.ModifyTable)
		if !ok {
			out = append(out, c)
			continue
		}
		var rest []atlas.Change
		for _, mc := range m.Changes {
			add, ok := mc.(*atlas.AddIndex)
			if !ok || (add.I.Unique && needed[key(m.T.Name, indexColumns(add.I))]) {
				rest = append(rest, mc)
				continue
			}
			if add.I.Table == nil {
				add.I.Table = m.T
			}
			adds = append(adds, add)
		}
		if len(rest) > 0 {
			m.Changes = rest
			out = append(out, m)
		}
	}
	return out, adds
}

func indexColumns(idx *atlas.Index) []*atlas.Column {
	var cols []*atlas.Column
	for _, p := range idx.Parts {
		if p.C != nil {
			cols = append(cols, p.C)
		}
	}
	return cols
}

// planConcurrent plans CREATE INDEX CONCURRENTLY IF NOT EXISTS for add,
// qualified with the schema token.
func (d *Desired) planConcurrent(ctx context.Context, drv migrate.Driver, add *atlas.AddIndex) (concurrentIdx, error) {
	add.Extra = append(add.Extra, &postgres.Concurrently{})
	t := add.I.Table
	plan, err := drv.PlanChanges(ctx, "", []atlas.Change{&atlas.ModifyTable{T: t, Changes: []atlas.Change{add}}}, func(o *migrate.PlanOptions) {
		q := schemaToken
		o.SchemaQualifier = &q
	})
	if err != nil {
		return concurrentIdx{}, fmt.Errorf("plan concurrent index %q: %w", add.I.Name, err)
	}
	if len(plan.Changes) != 1 || !strings.Contains(plan.Changes[0].Cmd, "INDEX CONCURRENTLY ") {
		return concurrentIdx{}, fmt.Errorf("plan concurrent index %q: unexpected plan %v", add.I.Name, plan.Changes)
	}
	cmd := strings.Replace(plan.Changes[0].Cmd, "INDEX CONCURRENTLY ", "INDEX CONCURRENTLY IF NOT EXISTS ", 1)
	return concurrentIdx{name: add.I.Name, table: t.Name, create: cmd}, nil
}

// unqualified plans statements without schema qualifiers; they run under
// the transaction-local search_path.
func unqualified(o *migrate.PlanOptions) {
	q := ""
	o.SchemaQualifier = &q
}

// destructive describes the changes that drop data, as Atlas's destructive
// analyzer (sqlcheck/destructive) finds them: dropped schemas, tables and
// non-virtual columns.
func destructive(ctx context.Context, changes []atlas.Change) ([]string, error) {
	az, err := destructiveAnalyzer.New(nil)
	if err != nil {
		return nil, err
	}
	file := &sqlcheck.File{}
	for i, c := range changes {
		file.Changes = append(file.Changes, &sqlcheck.Change{Changes: atlas.Changes{c}, Stmt: &migrate.Stmt{Pos: i}})
	}
	var diags []sqlcheck.Diagnostic
	pass := &sqlcheck.Pass{File: file, Reporter: sqlcheck.ReportWriterFunc(func(r sqlcheck.Report) {
		diags = append(diags, r.Diagnostics...)
	})}
	_ = az.Analyze(ctx, pass) // the error only repeats that diagnostics were found
	var drops []string
	for _, dg := range diags {
		what := dg.Text
		switch c := changes[dg.Pos].(type) {
		case *atlas.DropSchema:
			what = fmt.Sprintf("drop schema %q", c.S.Name)
		case *atlas.DropTable:
			what = fmt.Sprintf("drop table %q", c.T.Name)
		case *atlas.ModifyTable:
			var cols []string
			for _, mc := range c.Changes {
				if dc, ok := mc.(*atlas.DropColumn); ok {
					cols = append(cols, strconv.Quote(dc.C.Name))
				}
			}
			what = fmt.Sprintf("drop column %s of table %q", strings.Join(cols, ", "), c.T.Name)
		}
		drops = append(drops, what+" ("+dg.Code+")")
	}
	return drops, nil
}

// DropSchema drops the schema and everything in it (CASCADE), for tests and
// offboarding. It takes the same advisory lock as Apply, so it waits for a
// running Apply of that schema. Dropping a schema that does not exist is
// not an error.
func DropSchema(ctx context.Context, db *sql.DB, schemaName string) error {
	if err := ValidateSchemaName(schemaName); err != nil {
		return err
	}
	if err := dropSchema(ctx, db, schemaName); err != nil {
		return fmt.Errorf("migrate: drop schema %q: %w", schemaName, err)
	}
	return nil
}

func dropSchema(ctx context.Context, db *sql.DB, name string) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() // no-op after Commit
	if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(hashtext('tenantry:' || $1))", name); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, "DROP SCHEMA IF EXISTS "+ident(name)+" CASCADE"); err != nil {
		return err
	}
	return tx.Commit()
}
