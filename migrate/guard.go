package migrate

import (
	"context"
	"database/sql"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// policyText is the policy expressions as the server prints them back
// (pg_get_expr), to compare with what a table has.
type policyText struct{ using, check string }

// createPolicy returns the statement creating the policy on table.
func createPolicy(table string) string {
	return "CREATE POLICY " + ident(PolicyName) + " ON " + ident(table) +
		" AS PERMISSIVE FOR ALL TO PUBLIC USING (" + PolicyExpr + ") WITH CHECK (" + PolicyExpr + ")"
}

// policyText learns how this server version prints the policy expressions,
// by creating the policy on a temporary table once per server version. The
// text differs between PostgreSQL versions, so it is not hard-coded.
func (d *Desired) policyText(ctx context.Context, tx *sql.Tx) (policyText, error) {
	var version string
	if err := tx.QueryRowContext(ctx, "SHOW server_version_num").Scan(&version); err != nil {
		return policyText{}, err
	}
	if p, ok := d.policies.Load(version); ok {
		return p.(policyText), nil
	}
	const probe = "pg_temp.tenantry_policy_probe"
	var p policyText
	for _, stmt := range []string{
		"CREATE TEMP TABLE " + probe + " (tenant_id uuid) ON COMMIT DROP",
		strings.Replace(createPolicy("tenantry_policy_probe"), `"tenantry_policy_probe"`, probe, 1),
	} {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return policyText{}, fmt.Errorf("policy probe: %s: %w", stmt, err)
		}
	}
	err := tx.QueryRowContext(ctx, `SELECT pg_get_expr(polqual, polrelid), pg_get_expr(polwithcheck, polrelid)
		FROM pg_policy WHERE polrelid = '`+probe+`'::regclass`).Scan(&p.using, &p.check)
	if err != nil {
		return policyText{}, fmt.Errorf("policy probe: %w", err)
	}
	if _, err := tx.ExecContext(ctx, "DROP TABLE "+probe); err != nil {
		return policyText{}, fmt.Errorf("policy probe: %w", err)
	}
	d.policies.Store(version, p)
	return p, nil
}

// Privileges of the app and admin roles; anything else they hold is revoked.
// public is the key of the privileges granted to PUBLIC (grantee 0), which
// no role can be named.
const public = "PUBLIC"

var (
	schemaPrivileges   = []string{"USAGE"}
	tablePrivileges    = []string{"SELECT", "INSERT", "UPDATE", "DELETE"}
	sequencePrivileges = []string{"USAGE", "SELECT"}
)

type relation struct {
	kind             string // r, p (tables), S (sequences)
	rls, forceRLS    bool
	policies         []policy
	privileges       map[string]map[string]bool // role → privilege → grantable
	schemaPrivileges map[string]map[string]bool // only on the schema's entry
}

type policy struct {
	name, cmd    string
	permissive   bool
	public       bool
	using, check sql.NullString
}

// guardStatements returns the statements that bring row-level security,
// policies and grants of the schema to the desired state; none when they are
// already there. Statements on the schema itself name it as schemaRef.
func (d *Desired) guardStatements(ctx context.Context, tx *sql.Tx, schema string, roles Roles, want policyText, schemaRef string) ([]string, error) {
	rels := make(map[string]*relation)
	rows, err := tx.QueryContext(ctx, `
		SELECT c.relname, c.relkind::text, c.relrowsecurity, c.relforcerowsecurity
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'S')`, schema)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var name string
		r := &relation{privileges: make(map[string]map[string]bool)}
		if err := rows.Scan(&name, &r.kind, &r.rls, &r.forceRLS); err != nil {
			rows.Close()
			return nil, err
		}
		rels[name] = r
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}

	rows, err = tx.QueryContext(ctx, `
		SELECT c.relname, p.polname, p.polcmd::text, p.polpermissive, p.polroles = '{0}'::oid[],
			pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid)
		FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1`, schema)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var table string
		var p policy
		if err := rows.Scan(&table, &p.name, &p.cmd, &p.permissive, &p.public, &p.using, &p.check); err != nil {
			rows.Close()
			return nil, err
		}
		if r := rels[table]; r != nil {
			r.policies = append(r.policies, p)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}

	const schemaEntry = "" // key of the schema's own privileges
	rels[schemaEntry] = &relation{kind: "n", privileges: make(map[string]map[string]bool)}
	rows, err = tx.QueryContext(ctx, `
		SELECT c.relname, COALESCE(r.rolname, $4), a.privilege_type, a.is_grantable
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		CROSS JOIN LATERAL aclexplode(c.relacl) a LEFT JOIN pg_roles r ON r.oid = a.grantee
		WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'S') AND (r.rolname IN ($2, $3) OR a.grantee = 0)
		UNION ALL
		SELECT '', COALESCE(r.rolname, $4), a.privilege_type, a.is_grantable
		FROM pg_namespace n CROSS JOIN LATERAL aclexplode(n.nspacl) a LEFT JOIN pg_roles r ON r.oid = a.grantee
		WHERE n.nspname = $1 AND (r.rolname IN ($2, $3) OR a.grantee = 0)`, schema, roles.App, roles.Admin, public)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var rel, role, priv string
		var grantable bool
		if err := rows.Scan(&rel, &role, &priv, &grantable); err != nil {
			rows.Close()
			return nil, err
		}
		if r := rels[rel]; r != nil {
			if r.privileges[role] == nil {
				r.privileges[role] = make(map[string]bool)
			}
			r.privileges[role][priv] = grantable
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}

	type constraint struct{ table, name string }
	deferral := make(map[constraint][2]bool) // deferrable, initially deferred
	rows, err = tx.QueryContext(ctx, `
		SELECT c.relname, k.conname, k.condeferrable, k.condeferred
		FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND k.contype = 'f'`, schema)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var k constraint
		var v [2]bool
		if err := rows.Scan(&k.table, &k.name, &v[0], &v[1]); err != nil {
			rows.Close()
			return nil, err
		}
		deferral[k] = v
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}

	var stmts []string
	for _, g := range d.fks {
		have, ok := deferral[constraint{g.table, g.symbol}]
		if !ok {
			return nil, fmt.Errorf("foreign key %q of %q missing after the schema migration", g.symbol, g.table)
		}
		if have != [2]bool{g.deferred, g.deferred} {
			mode := "NOT DEFERRABLE"
			if g.deferred {
				mode = "DEFERRABLE INITIALLY DEFERRED"
			}
			stmts = append(stmts, "ALTER TABLE "+ident(g.table)+" ALTER CONSTRAINT "+ident(g.symbol)+" "+mode)
		}
	}
	for _, name := range d.names {
		r := rels[name]
		if r == nil || r.kind == "S" {
			return nil, fmt.Errorf("table %q missing after the schema migration", name)
		}
		if !d.tenant[name] {
			continue
		}
		t := ident(name)
		if !r.rls {
			stmts = append(stmts, "ALTER TABLE "+t+" ENABLE ROW LEVEL SECURITY")
		}
		if !r.forceRLS {
			stmts = append(stmts, "ALTER TABLE "+t+" FORCE ROW LEVEL SECURITY")
		}
		found := false
		for _, p := range r.policies {
			switch {
			case p.name == PolicyName:
				found = true
				if p.cmd != "*" || !p.permissive || !p.public || p.using.String != want.using || p.check.String != want.check {
					stmts = append(stmts, "DROP POLICY "+ident(PolicyName)+" ON "+t, createPolicy(name))
				}
			case p.permissive:
				// Permissive policies are OR-ed: any other one widens access.
				stmts = append(stmts, "DROP POLICY "+ident(p.name)+" ON "+t)
			}
		}
		if !found {
			stmts = append(stmts, createPolicy(name))
		}
	}

	grants := func(object, target string, have map[string]map[string]bool, want []string) {
		for _, role := range []string{roles.App, roles.Admin} {
			var missing []string
			for _, p := range want {
				if _, ok := have[role][p]; !ok {
					missing = append(missing, p)
				}
			}
			if len(missing) > 0 {
				stmts = append(stmts, "GRANT "+strings.Join(missing, ", ")+" ON "+object+" "+target+" TO "+ident(role))
			}
			for _, p := range slices.Sorted(maps.Keys(have[role])) {
				switch grantable := have[role][p]; {
				case !slices.Contains(want, p):
					stmts = append(stmts, "REVOKE "+p+" ON "+object+" "+target+" FROM "+ident(role))
				case grantable:
					stmts = append(stmts, "REVOKE GRANT OPTION FOR "+p+" ON "+object+" "+target+" FROM "+ident(role))
				}
			}
		}
		// Every role has what PUBLIC has: a privilege granted to PUBLIC by
		// hand (TRUNCATE, which row-level security does not filter) would
		// reach the app role past the grants above.
		for _, p := range slices.Sorted(maps.Keys(have[public])) {
			stmts = append(stmts, "REVOKE "+p+" ON "+object+" "+target+" FROM PUBLIC")
		}
	}
	grants("SCHEMA", schemaRef, rels[schemaEntry].privileges, schemaPrivileges)
	for _, name := range d.names {
		grants("TABLE", ident(name), rels[name].privileges, tablePrivileges)
	}
	var seqs []string
	for name, r := range rels {
		if r.kind == "S" {
			seqs = append(seqs, name)
		}
	}
	slices.Sort(seqs)
	for _, name := range seqs {
		grants("SEQUENCE", ident(name), rels[name].privileges, sequencePrivileges)
	}
	return stmts, nil
}
