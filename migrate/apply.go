package migrate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"ariga.io/atlas/sql/migrate"
	"ariga.io/atlas/sql/postgres"
	atlas "ariga.io/atlas/sql/schema"
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
	exec := func(stmt string, args ...any) error {
		if _, err := tx.ExecContext(ctx, stmt, args...); err != nil {
			return fmt.Errorf("%s: %w", stmt, err)
		}
		return nil
	}
	// run executes a statement that changes the schema and records it.
	run := func(stmt string, args ...any) error {
		if err := exec(stmt, args...); err != nil {
			return err
		}
		res.Statements = append(res.Statements, stmt)
		return nil
	}

	var user string
	if err := tx.QueryRowContext(ctx, "SELECT current_user").Scan(&user); err != nil {
		return err
	}
	if user != roles.Owner {
		if err := exec("SET LOCAL ROLE " + ident(roles.Owner)); err != nil {
			return err
		}
	}
	if err := exec("SELECT pg_advisory_xact_lock(hashtext('tenantry:' || $1))", name); err != nil {
		return err
	}
	if err := exec("SELECT set_config('lock_timeout', $1, true)", fmt.Sprintf("%dms", opt.LockTimeout.Milliseconds())); err != nil {
		return err
	}
	var exists bool
	if err := tx.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", name).Scan(&exists); err != nil {
		return err
	}
	if !exists {
		if err := run("CREATE SCHEMA IF NOT EXISTS " + ident(name) + " AUTHORIZATION " + ident(roles.Owner)); err != nil {
			return err
		}
	}
	policy, err := d.policyText(ctx, tx)
	if err != nil {
		return err
	}
	if err := exec("SELECT set_config('search_path', $1, true)", ident(name)); err != nil {
		return err
	}

	// Tables, columns, indexes and foreign keys: Atlas.
	drv, err := postgres.Open(tx)
	if err != nil {
		return err
	}
	current, err := drv.InspectSchema(ctx, name, nil)
	if err != nil {
		return fmt.Errorf("inspect: %w", err)
	}
	desired, err := d.State(name)
	if err != nil {
		return err
	}
	changes, err := drv.SchemaDiff(current, desired)
	if err != nil {
		return fmt.Errorf("diff: %w", err)
	}
	if drops := destructive(changes); len(drops) > 0 && !opt.AllowDestructive {
		return &DestructiveError{Schema: name, Changes: drops}
	}
	if len(changes) > 0 {
		plan, err := drv.PlanChanges(ctx, "", changes, unqualified)
		if err != nil {
			return fmt.Errorf("plan: %w", err)
		}
		for _, c := range plan.Changes {
			if err := run(c.Cmd, c.Args...); err != nil {
				return err
			}
		}
	}

	// What Atlas does not manage: row-level security, policies, grants.
	guards, err := d.guardStatements(ctx, tx, name, roles, policy)
	if err != nil {
		return err
	}
	for _, stmt := range guards {
		if err := run(stmt); err != nil {
			return err
		}
	}
	if opt.DryRun {
		return tx.Rollback()
	}
	return tx.Commit()
}

// unqualified plans statements without schema qualifiers; they run under
// the transaction-local search_path.
func unqualified(o *migrate.PlanOptions) {
	q := ""
	o.SchemaQualifier = &q
}

// destructive describes the changes that drop data.
func destructive(changes []atlas.Change) []string {
	var drops []string
	for _, c := range changes {
		switch c := c.(type) {
		case *atlas.DropSchema:
			drops = append(drops, fmt.Sprintf("drop schema %q", c.S.Name))
		case *atlas.DropTable:
			drops = append(drops, fmt.Sprintf("drop table %q", c.T.Name))
		case *atlas.ModifyTable:
			for _, mc := range c.Changes {
				if dc, ok := mc.(*atlas.DropColumn); ok {
					drops = append(drops, fmt.Sprintf("drop column %q of table %q", dc.C.Name, c.T.Name))
				}
			}
		}
	}
	return drops
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
