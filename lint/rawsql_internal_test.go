package lint

import "testing"

func TestTablelessSQL(t *testing.T) {
	for q, want := range map[string]bool{
		"SELECT 1":                                    true,
		"select pg_advisory_lock($1)":                 true,
		"SELECT pg_advisory_unlock($1)":               true,
		"SELECT pg_notify($1, '*')":                   true,
		"SELECT pg_notify('x', 'DELETE FROM orders')": true, // a string, not SQL
		"SHOW server_version_num":                     true,
		"LISTEN registry":                             true,
		"SELECT set_config('search_path', $1, true)":  true,
		"SELECT current_setting('app.current_tenant_id', true) -- FROM orders":                      true,
		"SELECT count(*) FROM pg_stat_activity WHERE datname = $1":                                  true,
		"SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace": true,
		"SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)":                                true,
		"SELECT * FROM information_schema.tables, pg_class":                                         true,
		"SELECT * FROM \"pg_class\"":                                                                true,

		"": false,
		// what the tokenizer cannot read with certainty, or functions that
		// run SQL text (found by a review: these passed as tableless)
		"SELECT $$'$$ AS a, o.* FROM orders o WHERE $$'$$ = $$'$$":     false,
		"SELECT $q$'$q$ AS a, * FROM orders":                           false,
		`SELECT E'\'' AS q, * FROM orders WHERE 'x'='x'`:               false,
		"SELECT query_to_xml('select * from orders', true, false, '')": false,
		"SELECT database_to_xml(true, false, '')":                      false,
		"/* /* */ SELECT */ SELECT 1":                                  false,
		"SELECT * FROM orders":                                         false,
		"select count(*) from pg_class, orders":                        false,
		"SELECT * FROM pg_class c, orders o":                           false,
		"SELECT * FROM pg_class JOIN orders ON true":                   false,
		"SELECT (SELECT count(*) FROM orders)":                         false,
		"SELECT * FROM (SELECT 1) s":                                   false,
		"SELECT * FROM unnest($1)":                                     false,
		"DELETE FROM orders":                                           false,
		"INSERT INTO orders VALUES (1)":                                false,
		"UPDATE orders SET note = ''":                                  false,
		"TRUNCATE orders":                                              false,
		"TABLE orders":                                                 false,
		"SELECT 1 INTO t":                                              false,
		"COPY orders TO STDOUT":                                        false,
		"CALL purge()":                                                 false,
		"DO $$ BEGIN DELETE FROM orders; END $$":                       false,
		"WITH x AS (SELECT 1) SELECT * FROM x":                         false,
		"SELECT 1 /* unterminated":                                     false,
		"SELECT * FROM public.orders":                                  false,
		"SELECT * FROM pg_class; DROP TABLE orders":                    false,
		"SELECT * FROM \"Orders\"":                                     false,
		"SELECT 'it''s' FROM orders":                                   false,
	} {
		if got := tablelessSQL(q); got != want {
			t.Errorf("tablelessSQL(%q) = %v, want %v", q, got, want)
		}
	}
}
