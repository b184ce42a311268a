package migrate_test

import (
	"database/sql"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	appmigrate "github.com/tenantry/tenantry/examples/app/ent/migrate"
)

const (
	tenantA = "aaaaaaaa-0000-4000-8000-000000000001"
	tenantB = "bbbbbbbb-0000-4000-8000-000000000002"

	customerA = "aaaaaaaa-1111-4000-8000-000000000001"
	customerB = "bbbbbbbb-1111-4000-8000-000000000002"
	orderA    = "aaaaaaaa-2222-4000-8000-000000000001"
	orderB    = "bbbbbbbb-2222-4000-8000-000000000002"
	tagA      = "aaaaaaaa-3333-4000-8000-000000000001"
	tagB      = "bbbbbbbb-3333-4000-8000-000000000002"
)

// scoped runs fn in a transaction that sets search_path to schema and, when
// tenant is not nil, app.current_tenant_id to *tenant, both transaction-local
// as tenancy.Driver does, and rolls back unless commit.
func scoped(t *testing.T, db *sql.DB, schema string, tenant *string, commit bool, fn func(tx *sql.Tx) error) error {
	t.Helper()
	tx, err := db.BeginTx(t.Context(), nil)
	require.NoError(t, err)
	defer tx.Rollback()
	_, err = tx.ExecContext(t.Context(), `SELECT set_config('search_path', $1, true)`, schema)
	require.NoError(t, err)
	if tenant != nil {
		_, err = tx.ExecContext(t.Context(), `SELECT set_config('app.current_tenant_id', $1, true)`, *tenant)
		require.NoError(t, err)
	}
	if err := fn(tx); err != nil {
		return err
	}
	if commit {
		return tx.Commit()
	}
	return nil
}

func ptr(s string) *string { return &s }

// TestRLS is the acceptance criterion: in one shared schema, the database
// alone keeps tenants apart, whatever SQL the app role sends.
func TestRLS(t *testing.T) {
	e := newEnv(t)
	const schema = "shared"
	e.apply(t, newDesired(t, appmigrate.Tables), e.owner, schema)
	app, admin := e.open(t, e.roles.App), e.open(t, e.roles.Admin)

	// Seed both tenants through the admin role, which bypasses RLS.
	require.NoError(t, scoped(t, admin, schema, nil, true, func(tx *sql.Tx) error {
		for _, q := range []string{
			`INSERT INTO customers (id, tenant_id, name, email, created_at) VALUES
				('` + customerA + `', '` + tenantA + `', 'Ann', 'ann@a.example', now()),
				('` + customerB + `', '` + tenantB + `', 'Bob', 'bob@b.example', now())`,
			`INSERT INTO orders (id, tenant_id, number, created_at, customer_id) VALUES
				('` + orderA + `', '` + tenantA + `', 'A-1', now(), '` + customerA + `'),
				('` + orderB + `', '` + tenantB + `', 'B-1', now(), '` + customerB + `')`,
		} {
			if _, err := tx.ExecContext(t.Context(), q); err != nil {
				return err
			}
		}
		return nil
	}))

	t.Run("select", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			db     *sql.DB
			tenant *string
			want   []string
		}{
			{"app tenant A", app, ptr(tenantA), []string{orderA}},
			{"app tenant B", app, ptr(tenantB), []string{orderB}},
			{"app no tenant", app, nil, nil},
			{"app empty tenant", app, ptr(""), nil},
			{"owner tenant A (FORCE)", e.owner, ptr(tenantA), []string{orderA}},
			{"owner no tenant (FORCE)", e.owner, nil, nil},
			{"admin no tenant (BYPASSRLS)", admin, nil, []string{orderA, orderB}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				var got []string
				require.NoError(t, scoped(t, tc.db, schema, tc.tenant, false, func(tx *sql.Tx) error {
					// No tenant filter in the SQL: RLS alone filters.
					rows, err := tx.QueryContext(t.Context(), `SELECT * FROM orders ORDER BY number`)
					if err != nil {
						return err
					}
					defer rows.Close()
					cols, _ := rows.Columns()
					for rows.Next() {
						vals := make([]any, len(cols))
						ptrs := make([]any, len(cols))
						for i := range vals {
							ptrs[i] = &vals[i]
						}
						if err := rows.Scan(ptrs...); err != nil {
							return err
						}
						got = append(got, string(vals[0].(string)))
					}
					return rows.Err()
				}))
				assert.Equal(t, tc.want, got)
			})
		}
	})

	t.Run("app role has no default search_path", func(t *testing.T) {
		_, err := app.ExecContext(t.Context(), `SELECT count(*) FROM orders`)
		assert.Equal(t, "42P01", pgCode(err), "undefined_table: %v", err)
	})

	t.Run("insert for another tenant fails WITH CHECK", func(t *testing.T) {
		err := scoped(t, app, schema, ptr(tenantA), false, func(tx *sql.Tx) error {
			_, err := tx.ExecContext(t.Context(), `INSERT INTO orders (id, tenant_id, number, created_at)
				VALUES (gen_random_uuid(), $1, 'X-1', now())`, tenantB)
			return err
		})
		assert.Equal(t, "42501", pgCode(err), "insufficient_privilege (row-level security): %v", err)
	})

	t.Run("insert without tenant_id gets the current tenant", func(t *testing.T) {
		require.NoError(t, scoped(t, app, schema, ptr(tenantA), false, func(tx *sql.Tx) error {
			var got string
			err := tx.QueryRowContext(t.Context(), `INSERT INTO orders (id, number, created_at)
				VALUES (gen_random_uuid(), 'A-2', now()) RETURNING tenant_id`).Scan(&got)
			assert.Equal(t, tenantA, got)
			return err
		}))
		err := scoped(t, app, schema, nil, false, func(tx *sql.Tx) error {
			_, err := tx.ExecContext(t.Context(), `INSERT INTO orders (id, number, created_at) VALUES (gen_random_uuid(), 'N-1', now())`)
			return err
		})
		// tenant_id is NULL: the policy's WITH CHECK (or NOT NULL) refuses it.
		assert.Contains(t, []string{"42501", "23502"}, pgCode(err), "%v", err)
	})

	t.Run("no reference to another tenant's row", func(t *testing.T) {
		// Tags of both tenants, for the join table.
		require.NoError(t, scoped(t, admin, schema, nil, true, func(tx *sql.Tx) error {
			_, err := tx.ExecContext(t.Context(), `INSERT INTO tags (id, tenant_id, name) VALUES ($1, $2, 'a'), ($3, $4, 'b')`,
				tagA, tenantA, tagB, tenantB)
			return err
		}))
		for _, tc := range []struct {
			name, stmt string
			args       []any
			constraint string
		}{
			{"order of A for B's customer", `INSERT INTO orders (id, tenant_id, number, created_at, customer_id)
				VALUES (gen_random_uuid(), $1, 'A-3', now(), $2)`, []any{tenantA, customerB}, "orders_customers_orders_tenant"},
			{"move A's order to B's customer", `UPDATE orders SET customer_id = $1 WHERE id = $2`,
				[]any{customerB, orderA}, "orders_customers_orders_tenant"},
			{"line item of A in B's order", `INSERT INTO line_items (id, tenant_id, sku, quantity, unit_price_cents, order_id)
				VALUES (gen_random_uuid(), $1, 'sku', 1, 100, $2)`, []any{tenantA, orderB}, "line_items_orders_line_items_tenant"},
			{"A's order tagged with B's tag", `INSERT INTO order_tags (tenant_id, created_at, order_id, tag_id)
				VALUES ($1, now(), $2, $3)`, []any{tenantA, orderA, tagB}, "order_tags_tags_tag_tenant"},
		} {
			for _, who := range []struct {
				name   string
				db     *sql.DB
				tenant *string
			}{
				{"app", app, ptr(tenantA)},
				{"admin", admin, nil},
			} {
				t.Run(tc.name+"/"+who.name, func(t *testing.T) {
					// Committed: some guard keys are checked at commit.
					err := scoped(t, who.db, schema, who.tenant, true, func(tx *sql.Tx) error {
						_, err := tx.ExecContext(t.Context(), tc.stmt, tc.args...)
						return err
					})
					assert.Equal(t, "23503", pgCode(err), "foreign_key_violation: %v", err)
					assert.ErrorContains(t, err, tc.constraint)
				})
			}
		}
	})

	t.Run("deleting a customer still sets its orders' customer_id to NULL", func(t *testing.T) {
		// Ent's foreign key is ON DELETE SET NULL; the composite guard key
		// is NO ACTION and must not get in the way.
		require.NoError(t, scoped(t, app, schema, ptr(tenantA), false, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(t.Context(), `DELETE FROM customers WHERE id = $1`, customerA); err != nil {
				return err
			}
			var customer sql.NullString
			err := tx.QueryRowContext(t.Context(), `SELECT customer_id FROM orders WHERE id = $1`, orderA).Scan(&customer)
			assert.False(t, customer.Valid)
			return err
		}))
	})

	t.Run("app role cannot TRUNCATE", func(t *testing.T) {
		err := scoped(t, app, schema, ptr(tenantA), false, func(tx *sql.Tx) error {
			_, err := tx.ExecContext(t.Context(), `TRUNCATE orders`)
			return err
		})
		assert.Equal(t, "42501", pgCode(err), "%v", err)
	})
}
