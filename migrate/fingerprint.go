package migrate

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// A schema's fingerprint sums two 64-bit hashes of one line per catalog
// object: the schema itself (owner, privileges), every relation (kind,
// persistence, row-level security flags, owner, privileges, options,
// sequence parameters), column (type, nullability, identity, generation,
// collation, default, privileges), index, constraint (with deferrability),
// policy, comment, trigger, type, enum label and function. References to
// the schema itself are removed, so two schemas with the same objects have
// the same fingerprint whatever their names.
//
// The fingerprint is for grouping schemas, and is built for speed: raw
// catalog fields rather than deparsed text where deparsing is costly
// (indexes and constraints by attribute numbers, policy expressions by the
// hash of their stored node tree). Two schemas in the same logical state can
// therefore differ in fingerprint (a column added by ALTER TABLE has another
// position than in a freshly created table); the fleet runner learns such
// equivalent fingerprints per version and records them in the ledger.
// Describe gives the deparsed, position-free form, for people and for
// deciding equivalence.
//
// Both come from one set-based query per shard: the catalogs are joined to
// the target namespaces once and aggregated by namespace, never one
// sub-query per schema (pg_class has no index on relnamespace alone; a
// per-schema LATERAL form measured two orders of magnitude slower).
const fingerprintLines = `
WITH ns AS MATERIALIZED (
	SELECT n.oid, n.nspname, quote_ident(n.nspname) || '.' AS q
	FROM pg_namespace n
	WHERE n.nspname IN (SELECT unnest($1::text[])) OR n.nspname LIKE ANY ($2::text[])
), rel AS MATERIALIZED (
	SELECT c.oid, c.relnamespace, c.relname, c.relkind, ns.q
	FROM pg_class c JOIN ns ON ns.oid = c.relnamespace
), lines (nsp, l) AS (
	SELECT ns.oid, concat_ws(' ', 'n', n.nspowner::regrole, n.nspacl)
	FROM ns JOIN pg_namespace n ON n.oid = ns.oid
	UNION ALL
	SELECT c.relnamespace, concat_ws(' ', 'r', c.relname, c.relkind, c.relpersistence, c.relrowsecurity,
		c.relforcerowsecurity, c.relispartition, c.relowner::regrole, c.relacl, c.reloptions,
		s.seqtypid, s.seqstart, s.seqincrement, s.seqmax, s.seqmin, s.seqcache, s.seqcycle)
	FROM pg_class c JOIN ns ON ns.oid = c.relnamespace
	LEFT JOIN pg_sequence s ON c.relkind = 'S' AND s.seqrelid = c.oid
	WHERE c.relkind NOT IN ('i', 'I')
	UNION ALL
	SELECT r.relnamespace, concat_ws(' ', 'c', r.relname, a.attnum, a.attname,
		CASE WHEN a.atttypid < 16384 THEN a.atttypid::text ELSE format_type(a.atttypid, NULL) END, a.atttypmod,
		a.attndims, a.attnotnull, a.attidentity, a.attgenerated, a.attcollation, a.attacl, d.adbin)
	FROM pg_attribute a JOIN rel r ON r.oid = a.attrelid
	LEFT JOIN pg_attrdef d ON a.atthasdef AND d.adrelid = a.attrelid AND d.adnum = a.attnum
	WHERE a.attnum > 0 AND NOT a.attisdropped AND r.relkind IN ('r', 'p', 'v', 'm', 'f')
	UNION ALL
	SELECT r.relnamespace, concat_ws(' ', 'i', r.relname, ic.relname, ic.relam, i.indisunique, i.indisprimary,
		i.indisexclusion, i.indimmediate, i.indisvalid, i.indisready, i.indnkeyatts, i.indkey, i.indoption,
		i.indclass, i.indcollation,
		CASE WHEN i.indexprs IS NOT NULL THEN replace(pg_get_expr(i.indexprs, i.indrelid), r.q, '') END,
		CASE WHEN i.indpred IS NOT NULL THEN replace(pg_get_expr(i.indpred, i.indrelid), r.q, '') END)
	FROM pg_index i JOIN rel r ON r.oid = i.indrelid JOIN pg_class ic ON ic.oid = i.indexrelid
	UNION ALL
	SELECT r.relnamespace, concat_ws(' ', 'k', r.relname, k.conname, k.contype, k.condeferrable, k.condeferred,
		k.convalidated, k.connoinherit, k.conkey, ki.relname, kf.relname, k.confkey, k.confupdtype,
		k.confdeltype, k.confmatchtype,
		CASE WHEN k.contype NOT IN ('p', 'u', 'f', 'x') THEN replace(pg_get_constraintdef(k.oid), r.q, '') END)
	FROM pg_constraint k JOIN rel r ON r.oid = k.conrelid
	LEFT JOIN pg_class ki ON ki.oid = k.conindid LEFT JOIN pg_class kf ON kf.oid = k.confrelid
	UNION ALL
	SELECT r.relnamespace, concat_ws(' ', 'p', r.relname, p.polname, p.polcmd, p.polpermissive, p.polroles,
		p.polqual, p.polwithcheck)
	FROM pg_policy p JOIN rel r ON r.oid = p.polrelid
	UNION ALL
	SELECT r.relnamespace, concat_ws(' ', 'd', r.relname, d.objsubid, d.description)
	FROM pg_description d JOIN rel r ON d.classoid = 'pg_class'::regclass AND d.objoid = r.oid
	UNION ALL
	SELECT r.relnamespace, concat_ws(' ', 't', replace(pg_get_triggerdef(t.oid), r.q, ''), t.tgenabled)
	FROM pg_trigger t JOIN rel r ON r.oid = t.tgrelid
	WHERE NOT t.tgisinternal
	UNION ALL
	SELECT t.typnamespace, concat_ws(' ', 'y', t.typname, t.typtype, t.typowner::regrole)
	FROM pg_type t JOIN ns ON ns.oid = t.typnamespace
	WHERE t.typrelid = 0 AND t.typcategory <> 'A'
	UNION ALL
	SELECT t.typnamespace, concat_ws(' ', 'e', t.typname, e.enumsortorder, e.enumlabel)
	FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid JOIN ns ON ns.oid = t.typnamespace
	UNION ALL
	SELECT p.pronamespace, concat_ws(' ', 'f', p.proname, p.proargtypes, p.prokind, md5(p.prosrc), p.proowner::regrole)
	FROM pg_proc p JOIN ns ON ns.oid = p.pronamespace
)`

// describeLines is the human-readable description: everything deparsed
// (pg_get_indexdef, pg_get_constraintdef, pg_get_expr), no attribute
// numbers, so a column's position does not count. It is slower than the
// fingerprint lines, and used only for a few schemas at a time.
const describeLines = `
WITH ns AS MATERIALIZED (
	SELECT n.oid, n.nspname, quote_ident(n.nspname) || '.' AS q
	FROM pg_namespace n
	WHERE n.nspname IN (SELECT unnest($1::text[])) OR n.nspname LIKE ANY ($2::text[])
), lines (nsp, l) AS (
	SELECT ns.oid, concat_ws(' ', 'schema owner', pg_get_userbyid(n.nspowner), 'acl',
		(SELECT string_agg(x::text, ',' ORDER BY x::text) FROM unnest(n.nspacl) x))
	FROM ns JOIN pg_namespace n ON n.oid = ns.oid
	UNION ALL
	SELECT c.relnamespace, concat_ws(' ', CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'table' WHEN 'S' THEN 'sequence'
			WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' ELSE 'relation ' || c.relkind::text END,
		c.relname, CASE WHEN c.relrowsecurity THEN 'rls' END, CASE WHEN c.relforcerowsecurity THEN 'force-rls' END,
		'owner', pg_get_userbyid(c.relowner), 'acl', (SELECT string_agg(x::text, ',' ORDER BY x::text) FROM unnest(c.relacl) x),
		c.reloptions::text)
	FROM pg_class c JOIN ns ON ns.oid = c.relnamespace
	WHERE c.relkind NOT IN ('i', 'I', 't')
	UNION ALL
	SELECT c.relnamespace, concat_ws(' ', 'column', c.relname || '.' || a.attname, format_type(a.atttypid, a.atttypmod),
		CASE WHEN a.attnotnull THEN 'not null' END, CASE a.attidentity WHEN 'a' THEN 'identity always' WHEN 'd' THEN 'identity' END,
		CASE WHEN a.attgenerated <> '' THEN 'generated' END,
		'default ' || replace(pg_get_expr(d.adbin, d.adrelid), ns.q, ''),
		'acl ' || (SELECT string_agg(x::text, ',' ORDER BY x::text) FROM unnest(a.attacl) x))
	FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN ns ON ns.oid = c.relnamespace
	LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
	WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
	UNION ALL
	SELECT c.relnamespace, concat_ws(' ', 'index', replace(pg_get_indexdef(i.indexrelid), ns.q, ''),
		CASE WHEN NOT i.indisvalid THEN '(invalid)' END)
	FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN ns ON ns.oid = c.relnamespace
	UNION ALL
	SELECT c.relnamespace, concat_ws(' ', 'constraint', c.relname || '.' || k.conname, replace(pg_get_constraintdef(k.oid), ns.q, ''))
	FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN ns ON ns.oid = c.relnamespace
	UNION ALL
	SELECT c.relnamespace, concat_ws(' ', 'policy', c.relname || '.' || p.polname,
		CASE WHEN p.polpermissive THEN 'permissive' ELSE 'restrictive' END, 'for', p.polcmd, 'to', p.polroles::regrole[]::text,
		'using', replace(pg_get_expr(p.polqual, p.polrelid), ns.q, ''),
		'with check', replace(pg_get_expr(p.polwithcheck, p.polrelid), ns.q, ''))
	FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid JOIN ns ON ns.oid = c.relnamespace
	UNION ALL
	SELECT c.relnamespace, concat_ws(' ', 'comment', c.relname, (SELECT a.attname FROM pg_attribute a
		WHERE a.attrelid = c.oid AND a.attnum = d.objsubid), d.description)
	FROM pg_description d JOIN pg_class c ON d.classoid = 'pg_class'::regclass AND d.objoid = c.oid
	JOIN ns ON ns.oid = c.relnamespace
	UNION ALL
	SELECT c.relnamespace, concat_ws(' ', 'trigger', replace(pg_get_triggerdef(t.oid), ns.q, ''))
	FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN ns ON ns.oid = c.relnamespace
	WHERE NOT t.tgisinternal
	UNION ALL
	SELECT t.typnamespace, concat_ws(' ', 'type', t.typname, t.typtype)
	FROM pg_type t JOIN ns ON ns.oid = t.typnamespace
	WHERE t.typrelid = 0 AND t.typcategory <> 'A'
	UNION ALL
	SELECT t.typnamespace, concat_ws(' ', 'enum', t.typname, e.enumsortorder, e.enumlabel)
	FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid JOIN ns ON ns.oid = t.typnamespace
	UNION ALL
	SELECT p.pronamespace, concat_ws(' ', 'function', p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')',
		'md5', md5(p.prosrc))
	FROM pg_proc p JOIN ns ON ns.oid = p.pronamespace
)`

// fingerprintQuery returns namespace name and fingerprint: two 64-bit
// hashes of every line, summed, so that no sort is needed.
const fingerprintQuery = fingerprintLines + `, fp AS (
	SELECT nsp, count(*) AS n, sum(length(l)) AS len, bit_xor(hashtextextended(l, 0)) AS h
	FROM lines GROUP BY nsp
)
SELECT ns.nspname::text, md5(fp.n || ':' || fp.len || ':' || fp.h)
FROM fp JOIN ns ON ns.oid = fp.nsp`

// describeQuery returns namespace name and its description lines.
const describeQuery = describeLines + `
SELECT ns.nspname::text, string_agg(lines.l, E'\n' ORDER BY lines.l COLLATE "C")
FROM lines JOIN ns ON ns.oid = lines.nsp
GROUP BY ns.nspname`

// Fingerprints returns the catalog fingerprint of every schema of db that
// is named in schemas or whose name matches one of the LIKE patterns (e.g.
// `tenant\_%`), in one query. Schemas with equal fingerprints have the same
// tables, columns, indexes, constraints, policies, row-level security,
// privileges and owners, whatever their names. Schemas that do not exist
// are absent from the map.
func Fingerprints(ctx context.Context, db *sql.DB, schemas, patterns []string) (map[string]string, error) {
	tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("migrate: fingerprint: %w", err)
	}
	defer tx.Rollback()
	return catalogQuery(ctx, tx, fingerprintQuery, schemas, patterns)
}

// Describe returns the catalog description of the named schemas: one line
// per object, deparsed (index and constraint definitions, policy
// expressions), sorted, without column positions. Two schemas in the same
// state have the same description; status shows the difference between a
// drifted schema's description and its version's.
func Describe(ctx context.Context, db *sql.DB, schemas ...string) (map[string][]string, error) {
	tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("migrate: describe: %w", err)
	}
	defer tx.Rollback()
	return describeTx(ctx, tx, schemas...)
}

func describeTx(ctx context.Context, tx *sql.Tx, schemas ...string) (map[string][]string, error) {
	texts, err := catalogQuery(ctx, tx, describeQuery, schemas, nil)
	if err != nil {
		return nil, err
	}
	out := make(map[string][]string, len(texts))
	for name, text := range texts {
		out[name] = strings.Split(text, "\n")
	}
	return out, nil
}

// fingerprintTx fingerprints one schema inside tx, which sees the
// transaction's own uncommitted DDL.
func fingerprintTx(ctx context.Context, tx *sql.Tx, schema string) (string, error) {
	fps, err := catalogQuery(ctx, tx, fingerprintQuery, []string{schema}, nil)
	if err != nil {
		return "", err
	}
	fp, ok := fps[schema]
	if !ok {
		return "", fmt.Errorf("migrate: fingerprint: schema %q does not exist", schema)
	}
	return fp, nil
}

// fewFilter is how the queries filter the target namespaces, for many
// schemas (a hashed sub-plan) and for a few (an array the planner sizes).
var fewFilter = [2]string{"n.nspname IN (SELECT unnest($1::text[]))", "n.nspname = ANY ($1::text[])"}

// catalogQuery runs a fingerprint or description query in tx. It changes
// the transaction's search_path and work_mem (transaction-local).
func catalogQuery(ctx context.Context, tx *sql.Tx, query string, schemas, patterns []string) (map[string]string, error) {
	out := make(map[string]string)
	if len(schemas) == 0 && len(patterns) == 0 {
		return out, nil
	}
	if schemas == nil {
		schemas = []string{}
	}
	if patterns == nil {
		patterns = []string{}
	}
	// With no tenant schema on the search path, pg_get_* qualify every
	// reference to one, and the query strips exactly that qualifier. For
	// many schemas, no nested loops: right after thousands of schemas were
	// created the catalogs' statistics are stale, and a nested loop over
	// what the planner takes for a small pg_class is quadratic; hash joins
	// are linear whatever the statistics say.
	nestloop := "on"
	if len(schemas) > 100 || len(patterns) > 0 {
		nestloop = "off"
	}
	if _, err := tx.ExecContext(ctx, "SELECT set_config('search_path', 'pg_catalog', true), set_config('work_mem', '64MB', true), set_config('enable_nestloop', $1, true)", nestloop); err != nil {
		return nil, fmt.Errorf("migrate: fingerprint: %w", err)
	}
	if len(schemas) <= 100 && len(patterns) == 0 {
		// A few schemas: let the planner see how few, so that it looks
		// them up by index instead of hashing whole catalogs.
		query = strings.Replace(query, fewFilter[0], fewFilter[1], 1)
	}
	rows, err := tx.QueryContext(ctx, query, schemas, patterns)
	if err != nil {
		return nil, fmt.Errorf("migrate: fingerprint: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var name, fp string
		if err := rows.Scan(&name, &fp); err != nil {
			return nil, fmt.Errorf("migrate: fingerprint: %w", err)
		}
		out[name] = fp
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("migrate: fingerprint: %w", err)
	}
	return out, nil
}

// catalogsRead are the catalogs the fingerprint query reads.
var catalogsRead = []string{"pg_namespace", "pg_class", "pg_attribute", "pg_attrdef", "pg_index", "pg_constraint", "pg_policy", "pg_type", "pg_sequence", "pg_description", "pg_trigger", "pg_proc", "pg_enum"}

// refreshCatalogStats analyzes the catalogs the fingerprint reads whose
// statistics are stale (changed by more than a fifth since the last
// analyze, as after provisioning or migrating thousands of schemas), so
// that the fingerprint query is planned for their real size; autovacuum
// would get there too, later. It needs to connect as the database's owner
// (or a superuser); otherwise it does nothing. It returns the catalogs it
// analyzed.
func refreshCatalogStats(ctx context.Context, db *sql.DB) ([]string, error) {
	rows, err := db.QueryContext(ctx, `SELECT s.relname::text FROM pg_stat_sys_tables s JOIN pg_class c ON c.oid = s.relid
		WHERE s.schemaname = 'pg_catalog' AND s.relname = ANY ($1::text[])
		AND s.n_mod_since_analyze > greatest(1000, 0.2 * greatest(c.reltuples, 0))
		AND (pg_has_role(current_user, (SELECT datdba FROM pg_database WHERE datname = current_database()), 'MEMBER')
			OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user))`, catalogsRead)
	if err != nil {
		return nil, err
	}
	var stale []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return nil, err
		}
		stale = append(stale, n)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for _, n := range stale {
		if _, err := db.ExecContext(ctx, "ANALYZE pg_catalog."+ident(n)); err != nil {
			return stale, err
		}
	}
	return stale, nil
}
