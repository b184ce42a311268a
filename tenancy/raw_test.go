package tenancy_test

import (
	"context"
	"errors"
	"testing"

	"github.com/tenantry/tenantry/tenancy"
)

func TestCheckRawSQL(t *testing.T) {
	scoped := tenancy.WithTenant(context.Background(), tenancy.NewID())
	tests := []struct {
		query string
		ok    bool
	}{
		{"SELECT id FROM orders", true},
		{"  -- list\n/* all */ select count(*) from orders", true},
		{"WITH o AS (SELECT 1) SELECT * FROM o", true},
		{"UPDATE orders SET note = 'x' WHERE id = $1", true},
		{"(SELECT 1) UNION (SELECT 2)", true},
		{"INSERT INTO tags (id, name) VALUES ($1, $2)", true},
		{"SET search_path = tenant_x", false},
		{"RESET ALL", false},
		{"DO $$BEGIN PERFORM 1; END$$", false},
		{"CREATE FUNCTION pg_temp.f() RETURNS int LANGUAGE sql AS 'SELECT 1'", false},
		{"SELECT set_config('app.current_tenant_id', $1, true)", false},
		{`SELECT pg_catalog."set_config"('x', 'y', true)`, false},
		{`SELECT U&"set\005fconfig"('x', 'y', true)`, false},
		{"UPDATE pg_settings SET setting = 'x' WHERE name = 'search_path'", false},
		{"SELECT query_to_xml('SELECT 1', true, false, '')", false},
		{"SELECT ts_rewrite('a'::tsquery, $1)", false}, // runs $1 as SQL
		{"SELECT ts_stat($1)", false},
		{"SELECT current_setting('app.current_tenant_id')", true},
		{"", false},
		// Block comments nest in PostgreSQL: this is a SET for the server.
		{"/* /* */ select */ SET LOCAL app.current_tenant_id = 'x'", false},
		{"/* a /* b */ c */ select 1", true},
		{"/**/select 1", true},
		{"/* /* */ select 1", false}, // the comment does not end
	}
	for _, tt := range tests {
		err := tenancy.CheckRawSQL(scoped, tt.query)
		if tt.ok && err != nil {
			t.Errorf("CheckRawSQL(%q) = %v, want nil", tt.query, err)
		}
		if !tt.ok && !errors.Is(err, tenancy.ErrRawSQLRefused) {
			t.Errorf("CheckRawSQL(%q) = %v, want ErrRawSQLRefused", tt.query, err)
		}
	}
	if err := tenancy.CheckRawSQL(tenancy.Unscoped(context.Background(), "test: admin maintenance"), "SET lock_timeout = '1s'"); err != nil {
		t.Errorf("unscoped contexts are not checked, got %v", err)
	}
}
