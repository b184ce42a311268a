package migrate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// LedgerSchema is the schema of a shard database that holds the migration
// ledger. Its name does not match the default target patterns.
const LedgerSchema = "tenantry"

// The ledger, one per shard database, owned by the owner role:
//
//   - schema_migrations: one row per attempt on one schema, applied or
//     failed. An applied row is written in the same transaction as the
//     schema's DDL, so a schema's DDL is committed if and only if its row is
//     (exactly once across crashes); a failed attempt is recorded after the
//     rollback, in a transaction of its own.
//   - schema_state: the version each schema was last migrated to, written
//     in the same transaction; concurrent runs compare it before they
//     change anything (tenantry.expect_version).
//   - versions: every desired version seen, with the catalog description of
//     a freshly provisioned schema at that version.
//   - fingerprints: every catalog fingerprint known to be a given version.
//   - runs: one row per run.
var ledgerDDL = []string{
	`CREATE TABLE IF NOT EXISTS tenantry.schema_migrations (
		id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
		run_id text NOT NULL,
		schema_name text NOT NULL,
		tenant_id text,
		mode text NOT NULL,
		version text NOT NULL,
		from_version text,
		fingerprint text,
		status text NOT NULL CHECK (status IN ('applied', 'failed')),
		statements integer NOT NULL DEFAULT 0,
		plan_hash text,
		error text,
		attempts integer NOT NULL DEFAULT 1,
		started_at timestamptz NOT NULL,
		finished_at timestamptz NOT NULL DEFAULT clock_timestamp(),
		duration interval GENERATED ALWAYS AS (finished_at - started_at) STORED
	)`,
	`CREATE INDEX IF NOT EXISTS schema_migrations_schema_name_id ON tenantry.schema_migrations (schema_name, id)`,
	`CREATE INDEX IF NOT EXISTS schema_migrations_run_id ON tenantry.schema_migrations (run_id)`,
	`CREATE TABLE IF NOT EXISTS tenantry.schema_state (
		schema_name text PRIMARY KEY,
		mode text NOT NULL,
		version text NOT NULL,
		run_id text NOT NULL,
		updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
	)`,
	`CREATE TABLE IF NOT EXISTS tenantry.versions (
		version text PRIMARY KEY,
		mode text NOT NULL,
		fingerprint text,
		description text,
		server_version integer,
		plan_hash text,
		recorded_at timestamptz NOT NULL DEFAULT clock_timestamp()
	)`,
	`CREATE TABLE IF NOT EXISTS tenantry.fingerprints (
		fingerprint text NOT NULL,
		version text NOT NULL,
		recorded_at timestamptz NOT NULL DEFAULT clock_timestamp(),
		PRIMARY KEY (fingerprint, version)
	)`,
	`CREATE TABLE IF NOT EXISTS tenantry.runs (
		run_id text PRIMARY KEY,
		mode text NOT NULL,
		version text NOT NULL,
		started_at timestamptz NOT NULL,
		finished_at timestamptz,
		targets integer,
		applied integer,
		failed integer,
		up_to_date integer,
		skipped integer,
		halted text
	)`,
	// Raised inside a schema's migration transaction, after its advisory
	// lock: another run migrated the schema since this run planned it.
	`CREATE OR REPLACE FUNCTION tenantry.expect_version(target text, expected text) RETURNS void
	LANGUAGE plpgsql AS $$
	DECLARE
		have text;
	BEGIN
		SELECT version INTO have FROM tenantry.schema_state WHERE schema_name = target;
		IF have IS DISTINCT FROM expected THEN
			RAISE EXCEPTION 'schema % is at version %, expected %: changed by another run since planning',
				target, coalesce(have, '(none)'), coalesce(expected, '(none)') USING ERRCODE = 'TR409';
		END IF;
	END $$`,
	// The same, also failing when another run rewrote the schema's row at
	// the same version (two runs repairing the same drift).
	`CREATE OR REPLACE FUNCTION tenantry.expect_state(target text, expected text, expected_run text) RETURNS void
	LANGUAGE plpgsql AS $$
	DECLARE
		have text;
		have_run text;
	BEGIN
		SELECT version, run_id INTO have, have_run FROM tenantry.schema_state WHERE schema_name = target;
		IF have IS DISTINCT FROM expected OR have_run IS DISTINCT FROM expected_run THEN
			RAISE EXCEPTION 'schema % is at version % (run %), expected % (run %): changed by another run since planning',
				target, coalesce(have, '(none)'), coalesce(have_run, '(none)'), coalesce(expected, '(none)'), coalesce(expected_run, '(none)') USING ERRCODE = 'TR409';
		END IF;
	END $$`,
	// Raised before the ledger row of a migration whose indexes were built
	// concurrently, outside its transaction: every one must be valid.
	`CREATE OR REPLACE FUNCTION tenantry.expect_valid_index(target text, index_name text) RETURNS void
	LANGUAGE plpgsql AS $$
	BEGIN
		IF NOT EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
				JOIN pg_namespace n ON n.oid = c.relnamespace
				WHERE n.nspname = target AND c.relname = index_name AND i.indisvalid) THEN
			RAISE EXCEPTION 'index %.% is missing or invalid', target, index_name USING ERRCODE = 'TR410';
		END IF;
	END $$`,
}

// sqlstateChanged is raised by tenantry.expect_version.
const sqlstateChanged = "TR409"

// EnsureLedger creates the ledger schema, tables and functions on a shard
// database if they are missing. db connects as the owner role, a member of
// it, or a superuser (who then acts as the owner). It is idempotent and
// safe to run concurrently.
func EnsureLedger(ctx context.Context, db *sql.DB, roles Roles) error {
	if err := roles.validate(); err != nil {
		return err
	}
	var err error
	for attempt := 1; attempt <= 3; attempt++ {
		if err = ensureLedger(ctx, db, roles); !isCatalogRace(err) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("migrate: ledger: %w", err)
	}
	return nil
}

func ensureLedger(ctx context.Context, db *sql.DB, roles Roles) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := actAsOwner(ctx, tx, roles); err != nil {
		return err
	}
	var ready bool
	// Fast path: every object present (one statement per run and shard).
	err = tx.QueryRowContext(ctx, `SELECT count(*) = 6 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = 'tenantry' AND c.relname IN ('schema_migrations', 'schema_state', 'versions', 'fingerprints', 'runs', 'schema_migrations_run_id')
		HAVING (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
			WHERE n.nspname = 'tenantry' AND p.proname IN ('expect_version', 'expect_valid_index', 'expect_state')) = 3`).Scan(&ready)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	if ready {
		return nil
	}
	if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(hashtext('tenantry:ledger'))"); err != nil {
		return err
	}
	stmts := append([]string{"CREATE SCHEMA IF NOT EXISTS tenantry AUTHORIZATION " + ident(roles.Owner)}, ledgerDDL...)
	for _, s := range stmts {
		if _, err := tx.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", firstLine(s), err)
		}
	}
	return tx.Commit()
}

// actAsOwner switches the transaction to the owner role unless it already
// runs as the owner.
func actAsOwner(ctx context.Context, tx *sql.Tx, roles Roles) error {
	var user string
	if err := tx.QueryRowContext(ctx, "SELECT current_user").Scan(&user); err != nil {
		return err
	}
	if user == roles.Owner {
		return nil
	}
	_, err := tx.ExecContext(ctx, "SET LOCAL ROLE "+ident(roles.Owner))
	return err
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}

// LedgerEntry is one row of tenantry.schema_migrations.
type LedgerEntry struct {
	ID          int64     `json:"id"`
	RunID       string    `json:"run_id"`
	Schema      string    `json:"schema"`
	Tenant      string    `json:"tenant,omitempty"`
	Mode        string    `json:"mode"`
	Version     string    `json:"version"`
	FromVersion string    `json:"from_version,omitempty"`
	Fingerprint string    `json:"fingerprint,omitempty"`
	Status      string    `json:"status"` // applied or failed
	Statements  int       `json:"statements"`
	PlanHash    string    `json:"plan_hash,omitempty"`
	Error       string    `json:"error,omitempty"`
	Attempts    int       `json:"attempts"`
	StartedAt   time.Time `json:"started_at"`
	FinishedAt  time.Time `json:"finished_at"`
	// TxID is the id of the transaction that wrote the row (xmin): for an
	// applied row, the transaction of the schema's DDL.
	TxID string `json:"txid"`
}

// Ledger returns the ledger rows of the named schemas (all schemas if none
// are named), oldest first.
func Ledger(ctx context.Context, db *sql.DB, schemas ...string) ([]LedgerEntry, error) {
	q := `SELECT id, run_id, schema_name, coalesce(tenant_id, ''), mode, version, coalesce(from_version, ''),
		coalesce(fingerprint, ''), status, statements, coalesce(plan_hash, ''), coalesce(error, ''), attempts,
		started_at, finished_at, xmin::text
		FROM tenantry.schema_migrations`
	var args []any
	if len(schemas) > 0 {
		q += ` WHERE schema_name = ANY ($1::text[])`
		args = append(args, schemas)
	}
	rows, err := db.QueryContext(ctx, q+` ORDER BY id`, args...)
	if err != nil {
		return nil, fmt.Errorf("migrate: ledger: %w", err)
	}
	defer rows.Close()
	var out []LedgerEntry
	for rows.Next() {
		var e LedgerEntry
		if err := rows.Scan(&e.ID, &e.RunID, &e.Schema, &e.Tenant, &e.Mode, &e.Version, &e.FromVersion, &e.Fingerprint,
			&e.Status, &e.Statements, &e.PlanHash, &e.Error, &e.Attempts, &e.StartedAt, &e.FinishedAt, &e.TxID); err != nil {
			return nil, fmt.Errorf("migrate: ledger: %w", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("migrate: ledger: %w", err)
	}
	return out, nil
}

// ledgerRecord is what a schema's migration writes to the ledger.
type ledgerRecord struct {
	runID, schema, tenant, mode string
	version, from, fingerprint  string
	statements                  int
	planHash                    string
	attempts                    int
	started                     time.Time
}

// appliedSQL returns the statements, literals inlined, that record an
// applied migration; they run last in the schema's transaction.
func (r ledgerRecord) appliedSQL() []string {
	return []string{
		fmt.Sprintf(`INSERT INTO tenantry.schema_migrations (run_id, schema_name, tenant_id, mode, version, from_version, fingerprint, status, statements, plan_hash, attempts, started_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, 'applied', %d, %s, %d, %s)`,
			literal(r.runID), literal(r.schema), nullLiteral(r.tenant), literal(r.mode), literal(r.version), nullLiteral(r.from),
			nullLiteral(r.fingerprint), r.statements, nullLiteral(r.planHash), r.attempts, literal(r.started.UTC().Format(time.RFC3339Nano))),
		fmt.Sprintf(`INSERT INTO tenantry.schema_state AS s (schema_name, mode, version, run_id) VALUES (%s, %s, %s, %s)
ON CONFLICT (schema_name) DO UPDATE SET mode = excluded.mode, version = excluded.version, run_id = excluded.run_id, updated_at = clock_timestamp()`,
			literal(r.schema), literal(r.mode), literal(r.version), literal(r.runID)),
	}
}

// expectSQL returns the statement that fails the transaction if the
// schema's ledger version is no longer from.
func expectSQL(schema, from string) string {
	return fmt.Sprintf("SELECT tenantry.expect_version(%s, %s)", literal(schema), nullLiteral(from))
}

// expectStateSQL is expectSQL that also fails when the ledger row of the
// schema was written by another run than from's (run id fromRun).
func expectStateSQL(schema string, from ledgerState) string {
	return fmt.Sprintf("SELECT tenantry.expect_state(%s, %s, %s)", literal(schema), nullLiteral(from.version), nullLiteral(from.run))
}

// recordFailure writes a failed attempt, after the migration's transaction
// rolled back.
func recordFailure(ctx context.Context, db *sql.DB, r ledgerRecord, roles Roles, cause error) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := actAsOwner(ctx, tx, roles); err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO tenantry.schema_migrations (run_id, schema_name, tenant_id, mode, version, from_version, status, statements, plan_hash, error, attempts, started_at)
		VALUES ($1, $2, NULLIF($3, ''), $4, $5, NULLIF($6, ''), 'failed', $7, NULLIF($8, ''), $9, $10, $11)`,
		r.runID, r.schema, r.tenant, r.mode, r.version, r.from, r.statements, r.planHash, strings.ToValidUTF8(cause.Error(), "?"), r.attempts, r.started)
	if err != nil {
		return err
	}
	return tx.Commit()
}

// literal quotes s as an SQL string literal (standard_conforming_strings,
// the default since PostgreSQL 9.1). NUL cannot occur in a PostgreSQL
// string and is dropped.
func literal(s string) string {
	s = strings.ReplaceAll(s, "\x00", "")
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

func nullLiteral(s string) string {
	if s == "" {
		return "NULL"
	}
	return literal(s)
}

// ledgerState is a schema's row of tenantry.schema_state: its version and
// the run that wrote it.
type ledgerState struct{ version, run string }

// schemaState reads the ledger state of every schema of a shard.
func schemaState(ctx context.Context, db *sql.DB) (map[string]ledgerState, error) {
	rows, err := db.QueryContext(ctx, `SELECT schema_name, version, run_id FROM tenantry.schema_state`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make(map[string]ledgerState)
	for rows.Next() {
		var s string
		var l ledgerState
		if err := rows.Scan(&s, &l.version, &l.run); err != nil {
			return nil, err
		}
		out[s] = l
	}
	return out, rows.Err()
}

// knownFingerprints reads the fingerprint → versions map of a shard, the
// most recently recorded version first.
func knownFingerprints(ctx context.Context, db *sql.DB) (map[string][]string, error) {
	rows, err := db.QueryContext(ctx, `SELECT fingerprint, version FROM tenantry.fingerprints ORDER BY recorded_at DESC, version`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make(map[string][]string)
	for rows.Next() {
		var f, v string
		if err := rows.Scan(&f, &v); err != nil {
			return nil, err
		}
		out[f] = append(out[f], v)
	}
	return out, rows.Err()
}

// recordFingerprints remembers that the fingerprints are states of version.
func recordFingerprints(ctx context.Context, db *sql.DB, roles Roles, version string, fps []string) error {
	if len(fps) == 0 {
		return nil
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := actAsOwner(ctx, tx, roles); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO tenantry.fingerprints (fingerprint, version)
		SELECT unnest($1::text[]), $2 ON CONFLICT DO NOTHING`, fps, version); err != nil {
		return err
	}
	return tx.Commit()
}

// recordVersion remembers a version with the description of a fresh
// schema at it.
func recordVersion(ctx context.Context, db *sql.DB, roles Roles, mode, version, fingerprint, description, planHash string) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := actAsOwner(ctx, tx, roles); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO tenantry.versions AS v (version, mode, fingerprint, description, server_version, plan_hash)
		VALUES ($1, $2, NULLIF($3, ''), NULLIF($4, ''), CASE WHEN $3 <> '' THEN current_setting('server_version_num')::integer END, NULLIF($5, ''))
		ON CONFLICT (version) DO UPDATE SET fingerprint = coalesce(excluded.fingerprint, v.fingerprint),
			description = coalesce(excluded.description, v.description), plan_hash = coalesce(excluded.plan_hash, v.plan_hash),
			server_version = coalesce(excluded.server_version, v.server_version)`,
		version, mode, fingerprint, description, planHash); err != nil {
		return err
	}
	if fingerprint != "" {
		if _, err := tx.ExecContext(ctx, `INSERT INTO tenantry.fingerprints (fingerprint, version) VALUES ($1, $2) ON CONFLICT DO NOTHING`,
			fingerprint, version); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// pgCode returns the SQLSTATE of err, "" if none.
func pgCode(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// recordedDesired returns the fingerprint and description of a fresh
// schema at version, as recorded by an earlier run on this server version;
// empty when there is none.
func recordedDesired(ctx context.Context, db *sql.DB, version string) (string, []string, error) {
	var fp, desc string
	err := db.QueryRowContext(ctx, `SELECT fingerprint, description FROM tenantry.versions
		WHERE version = $1 AND fingerprint IS NOT NULL AND description IS NOT NULL
		AND server_version = current_setting('server_version_num')::integer`, version).Scan(&fp, &desc)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil, nil
	}
	if err != nil {
		return "", nil, err
	}
	return fp, strings.Split(desc, "\n"), nil
}
