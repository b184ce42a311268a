package migrate_test

import (
	"database/sql"
	"fmt"
	"strings"
	"testing"

	entschema "entgo.io/ent/dialect/sql/schema"
	"entgo.io/ent/schema/field"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	appmigrate "github.com/tenantry/tenantry/examples/app/ent/migrate"
)

// parentChild is a two-table tenant graph whose foreign key has the given
// ON DELETE action.
func parentChild(action entschema.ReferenceOption) []*entschema.Table {
	tenantID := func() *entschema.Column {
		return &entschema.Column{Name: "tenant_id", Type: field.TypeUUID, Default: appmigrate.CustomersColumns[1].Default}
	}
	pc := []*entschema.Column{{Name: "id", Type: field.TypeUUID}, tenantID()}
	parent := &entschema.Table{Name: "parents", Columns: pc, PrimaryKey: pc[:1]}
	cc := []*entschema.Column{{Name: "id", Type: field.TypeUUID}, tenantID(), {Name: "parent_id", Type: field.TypeUUID, Nullable: true}}
	child := &entschema.Table{Name: "children", Columns: cc, PrimaryKey: cc[:1], ForeignKeys: []*entschema.ForeignKey{{
		Symbol: "children_parents_parent", Columns: cc[2:], RefTable: parent, RefColumns: pc[:1], OnDelete: action,
	}}}
	return []*entschema.Table{parent, child}
}

// TestGuardForeignKeyOrder checks that a delete gives Ent's ON DELETE
// outcome even when the guard key's trigger fires before Ent's.
func TestGuardForeignKeyOrder(t *testing.T) {
	e := newEnv(t)
	admin := e.open(t, e.roles.Admin)
	for _, tc := range []struct {
		action     entschema.ReferenceOption
		wantErr    string // SQLSTATE of the delete
		wantParent sql.NullString
		wantChild  bool
	}{
		{action: entschema.NoAction, wantErr: "23503", wantChild: true, wantParent: sql.NullString{String: customerA, Valid: true}},
		{action: entschema.Cascade, wantChild: false},
		{action: entschema.SetNull, wantChild: true},
	} {
		t.Run(string(tc.action), func(t *testing.T) {
			schema := nonIdent.ReplaceAllString("fk_"+strings.ToLower(string(tc.action)), "_")
			d := newDesired(t, parentChild(tc.action))
			e.apply(t, d, e.owner, schema)
			// Recreate Ent's key: now the guard's triggers are older and
			// fire first.
			e.exec(t, fmt.Sprintf(`ALTER TABLE %s.children DROP CONSTRAINT children_parents_parent`, schema))
			res := e.apply(t, d, e.owner, schema)
			require.Len(t, res.Statements, 1)
			assert.Contains(t, res.Statements[0], `ADD CONSTRAINT "children_parents_parent"`)
			assert.Equal(t, "children_parents_parent_tenant", e.queryStrings(t, `
				SELECT k.conname::text FROM pg_trigger g JOIN pg_constraint k ON k.oid = g.tgconstraint
				JOIN pg_proc p ON p.oid = g.tgfoid
				WHERE g.tgrelid = $1::regclass AND p.proname LIKE '%\_del' ORDER BY g.tgname LIMIT 1`,
				schema+".parents")[0])

			require.NoError(t, scoped(t, admin, schema, nil, true, func(tx *sql.Tx) error {
				_, err := tx.ExecContext(t.Context(), `INSERT INTO parents VALUES ($1, $2)`, customerA, tenantA)
				if err == nil {
					_, err = tx.ExecContext(t.Context(), `INSERT INTO children VALUES ($1, $2, $1)`, customerA, tenantA)
				}
				return err
			}))
			err := scoped(t, admin, schema, nil, true, func(tx *sql.Tx) error {
				_, err := tx.ExecContext(t.Context(), `DELETE FROM parents`)
				return err
			})
			assert.Equal(t, tc.wantErr, pgCode(err), "%v", err)
			var parent sql.NullString
			err = scoped(t, admin, schema, nil, false, func(tx *sql.Tx) error {
				return tx.QueryRowContext(t.Context(), `SELECT parent_id FROM children`).Scan(&parent)
			})
			if !tc.wantChild {
				assert.ErrorIs(t, err, sql.ErrNoRows)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.wantParent, parent)
		})
	}
}

// TestGlobalTableAndSequences: a global table (no tenant_id) gets grants but
// no row-level security; identity columns' sequences get USAGE and SELECT;
// a tenant table referencing a global one gets no guard key.
func TestGlobalTableAndSequences(t *testing.T) {
	e := newEnv(t)
	pc := []*entschema.Column{{Name: "id", Type: field.TypeInt, Increment: true}, {Name: "name", Type: field.TypeString, Unique: true}}
	plans := &entschema.Table{Name: "plans", Columns: pc, PrimaryKey: pc[:1]}
	sc := []*entschema.Column{
		{Name: "id", Type: field.TypeInt64, Increment: true},
		{Name: "tenant_id", Type: field.TypeUUID, Default: appmigrate.CustomersColumns[1].Default},
		{Name: "plan_id", Type: field.TypeInt},
		{Name: "active", Type: field.TypeBool, Default: true},
		{Name: "meta", Type: field.TypeJSON, Nullable: true},
	}
	subs := &entschema.Table{Name: "subscriptions", Columns: sc, PrimaryKey: sc[:1], ForeignKeys: []*entschema.ForeignKey{{
		Symbol: "subscriptions_plans_plan", Columns: sc[2:3], RefTable: plans, RefColumns: pc[:1], OnDelete: entschema.NoAction,
	}}}
	d := newDesired(t, []*entschema.Table{plans, subs})
	assert.Equal(t, []string{"subscriptions"}, d.TenantTables())
	res := e.apply(t, d, e.owner, "mixed")
	for _, s := range res.Statements {
		assert.NotContains(t, s, `ON "plans" AS PERMISSIVE`)
		assert.NotContains(t, s, `_tenant"`, "no guard key to a global table")
		assert.NotContains(t, s, `tenant_id_id_key"`, "no guard index on a global table")
	}
	assert.Contains(t, res.Statements, `GRANT USAGE, SELECT ON SEQUENCE "plans_id_seq" TO "tenantry_app"`)
	assert.Empty(t, e.apply(t, d, e.owner, "mixed").Statements)
	assert.Equal(t, []string{"plans false", "subscriptions true"}, e.queryStrings(t,
		`SELECT relname || ' ' || relforcerowsecurity FROM pg_class WHERE relnamespace = 'mixed'::regnamespace AND relkind = 'r' ORDER BY 1`))

	app := e.open(t, e.roles.App)
	require.NoError(t, scoped(t, app, "mixed", ptr(tenantA), false, func(tx *sql.Tx) error {
		var id int
		if err := tx.QueryRowContext(t.Context(), `INSERT INTO plans (name) VALUES ('pro') RETURNING id`).Scan(&id); err != nil {
			return err
		}
		_, err := tx.ExecContext(t.Context(), `INSERT INTO subscriptions (plan_id) VALUES ($1)`, id)
		return err
	}))
}
