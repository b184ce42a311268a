package migrate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// Roles names the three database roles of a shard.
type Roles struct {
	// Owner owns every schema and table and runs migrations. It is subject
	// to row-level security (tables FORCE it).
	Owner string
	// App is the role of the application's request path: not the owner of
	// anything, no BYPASSRLS, and an empty search_path by default so that a
	// statement sent without the driver's transaction-local search_path finds
	// no table.
	App string
	// Admin has BYPASSRLS and serves only the unscoped escape hatch
	// (tenancy.Unscoped).
	Admin string
}

// DefaultRoles returns tenantry_owner, tenantry_app and tenantry_admin.
func DefaultRoles() Roles {
	return Roles{Owner: "tenantry_owner", App: "tenantry_app", Admin: "tenantry_admin"}
}

// validate checks that the three names are set and distinct.
func (r Roles) validate() error {
	if r.Owner == "" || r.App == "" || r.Admin == "" {
		return fmt.Errorf("migrate: roles %+v: owner, app and admin must all be named", r)
	}
	if r.Owner == r.App || r.Owner == r.Admin || r.App == r.Admin {
		return fmt.Errorf("migrate: roles %+v: owner, app and admin must be distinct roles", r)
	}
	return nil
}

// EnsureRoles creates the roles that do not exist yet and (re)asserts the
// attributes that isolation depends on, on a superuser connection:
//
//   - owner: LOGIN NOSUPERUSER NOBYPASSRLS, and CREATE and TEMPORARY on the
//     current database, to create tenant schemas (and, in Apply, a
//     temporary table that shows how the server prints policies);
//   - app: LOGIN NOSUPERUSER NOBYPASSRLS, and an empty search_path by default;
//   - admin: LOGIN NOSUPERUSER BYPASSRLS.
//
// Roles are cluster-wide, the CREATE grant is per database: run it once per
// shard database. It changes nothing when all is in place, and is safe to
// run concurrently.
func EnsureRoles(ctx context.Context, db *sql.DB, roles Roles) error {
	if err := roles.validate(); err != nil {
		return err
	}
	var err error
	for attempt := 1; attempt <= 3; attempt++ {
		// Two sessions creating or altering one role at once: one of them
		// fails with a duplicate or a concurrent-update error. The next
		// attempt sees the other's work and has nothing left to do.
		if err = ensureRoles(ctx, db, roles); !isCatalogRace(err) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("migrate: ensure roles: %w", err)
	}
	return nil
}

func isCatalogRace(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	switch pgErr.Code {
	case "42710", "23505": // duplicate_object; unique_violation on pg_authid
		return true
	case "XX000": // tuple concurrently updated
		return strings.Contains(pgErr.Message, "concurrently")
	}
	return false
}

func ensureRoles(ctx context.Context, db *sql.DB, roles Roles) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() // no-op after Commit
	type role struct {
		name, attrs string
		bypassRLS   bool
	}
	for _, r := range []role{
		{roles.Owner, "LOGIN NOSUPERUSER NOBYPASSRLS", false},
		{roles.App, "LOGIN NOSUPERUSER NOBYPASSRLS", false},
		{roles.Admin, "LOGIN NOSUPERUSER BYPASSRLS", true},
	} {
		var exists, ok bool
		err := tx.QueryRowContext(ctx, `SELECT count(*) > 0, coalesce(bool_and(rolcanlogin AND NOT rolsuper AND rolbypassrls = $2), false)
			FROM pg_roles WHERE rolname = $1`, r.name, r.bypassRLS).Scan(&exists, &ok)
		if err != nil {
			return err
		}
		var stmt string
		switch {
		case !exists:
			stmt = "CREATE ROLE " + ident(r.name) + " " + r.attrs
		case !ok:
			stmt = "ALTER ROLE " + ident(r.name) + " " + r.attrs
		default:
			continue
		}
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("%s: %w", stmt, err)
		}
	}
	var emptyPath, canCreate, canTemp bool
	var database string
	err = tx.QueryRowContext(ctx, `SELECT
			EXISTS (SELECT 1 FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole
				WHERE r.rolname = $1 AND s.setdatabase = 0 AND 'search_path=""' = ANY (s.setconfig)),
			has_database_privilege($2, current_database(), 'CREATE'),
			has_database_privilege($2, current_database(), 'TEMPORARY'),
			current_database()`, roles.App, roles.Owner).Scan(&emptyPath, &canCreate, &canTemp, &database)
	if err != nil {
		return err
	}
	var stmts []string
	if !emptyPath {
		stmts = append(stmts, "ALTER ROLE "+ident(roles.App)+" SET search_path = ''")
	}
	if !canCreate {
		stmts = append(stmts, "GRANT CREATE ON DATABASE "+ident(database)+" TO "+ident(roles.Owner))
	}
	if !canTemp {
		stmts = append(stmts, "GRANT TEMPORARY ON DATABASE "+ident(database)+" TO "+ident(roles.Owner))
	}
	for _, stmt := range stmts {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("%s: %w", stmt, err)
		}
	}
	return tx.Commit()
}
