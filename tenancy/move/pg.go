package move

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenantry/tenantry/registry"
	"github.com/tenantry/tenantry/tenancy"
)

// shardConn is a small pool on one shard, as the shard DSN's own user.
type shardConn struct {
	shard registry.Shard
	pool  *pgxpool.Pool
}

func (c *shardConn) close() { c.pool.Close() }

func (c *shardConn) exec(ctx context.Context, sql string, args ...any) error {
	_, err := c.pool.Exec(ctx, sql, args...)
	if err != nil {
		return fmt.Errorf("shard %s: %w", c.shard.Name, err)
	}
	return nil
}

// names are the replication objects of a tenant's move. They are derived
// from the tenant id alone, so that any mover finds what an earlier one
// left behind.
type names struct{ publication, slot, subscription string }

func namesFor(id tenancy.ID) names {
	n := "tenantry_move_" + strings.TrimPrefix(id.SchemaName(), "tenant_")
	return names{publication: n, slot: n, subscription: n}
}

func ident(s string) string             { return pgx.Identifier{s}.Sanitize() }
func qualified(schema, t string) string { return pgx.Identifier{schema, t}.Sanitize() }
func literal(s string) string           { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// table is a table of the tenant's schema.
type table struct {
	Name        string
	Columns     []string // not dropped, not generated, sorted by name
	Types       []uint32 // the columns' type oids
	Partitioned bool
	Bytes       int64 // heap and TOAST
}

// only is "ONLY " for a plain table: its rows without those of tables
// that inherit from it. A partitioned table's rows are its partitions'.
func only(t table) string {
	if t.Partitioned {
		return ""
	}
	return "ONLY "
}

// readTables lists the ordinary and partitioned tables of a schema with
// their columns (partitions are read through their parent).
func readTables(ctx context.Context, c *shardConn, schema string) ([]table, error) {
	rows, err := c.pool.Query(ctx, `SELECT c.relname::text,
			coalesce(array_agg(a.attname::text ORDER BY a.attname) FILTER (WHERE a.attnum > 0), '{}'),
			coalesce(array_agg(a.atttypid ORDER BY a.attname) FILTER (WHERE a.attnum > 0), '{}'),
			c.relkind = 'p',
			CASE WHEN c.relkind = 'p' THEN (SELECT coalesce(sum(pg_table_size(p.relid)), 0) FROM pg_partition_tree(c.oid) p)
			     ELSE pg_table_size(c.oid) END::int8
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
		WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition AND c.relname <> $2
		GROUP BY c.oid, c.relname, c.relkind ORDER BY c.relname`, schema, markerTable)
	if err != nil {
		return nil, fmt.Errorf("shard %s: tables of %s: %w", c.shard.Name, schema, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (table, error) {
		var t table
		err := r.Scan(&t.Name, &t.Columns, &t.Types, &t.Partitioned, &t.Bytes)
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("shard %s: tables of %s: %w", c.shard.Name, schema, err)
	}
	return out, nil
}

func schemaExists(ctx context.Context, c *shardConn, schema string) (bool, error) {
	var ok bool
	err := c.pool.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = $1)", schema).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("shard %s: %w", c.shard.Name, err)
	}
	return ok, nil
}

// dropSubscription drops the tenant's subscription on the target without
// touching the source (the slot is dropped there separately, so that this
// works with the source down and in one cluster).
func dropSubscription(ctx context.Context, c *shardConn, sub string) error {
	var exists bool
	if err := c.pool.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_subscription WHERE subname = $1 AND subdbid = (SELECT oid FROM pg_database WHERE datname = current_database()))", sub).Scan(&exists); err != nil {
		return fmt.Errorf("shard %s: subscription %s: %w", c.shard.Name, sub, err)
	}
	if !exists {
		return nil
	}
	for _, stmt := range []string{
		"ALTER SUBSCRIPTION " + ident(sub) + " DISABLE",
		"ALTER SUBSCRIPTION " + ident(sub) + " SET (slot_name = NONE)",
		"DROP SUBSCRIPTION " + ident(sub),
	} {
		if err := c.exec(ctx, stmt); err != nil {
			return fmt.Errorf("drop subscription %s: %w", sub, err)
		}
	}
	return nil
}

// dropSlot drops the replication slot on the source, ending the walsender
// that still uses it.
func dropSlot(ctx context.Context, c *shardConn, slot string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		var active bool
		var pid *int32
		err := c.pool.QueryRow(ctx, "SELECT active, active_pid FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&active, &pid)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("shard %s: slot %s: %w", c.shard.Name, slot, err)
		}
		if !active {
			err := c.exec(ctx, "SELECT pg_drop_replication_slot($1)", slot)
			var pgErr *pgconn.PgError
			if err == nil || (errors.As(err, &pgErr) && pgErr.Code == "42704") {
				return nil
			}
			if !(errors.As(err, &pgErr) && pgErr.Code == "55006") || time.Now().After(deadline) { // 55006: active again
				return fmt.Errorf("drop slot %s: %w", slot, err)
			}
		} else if pid != nil {
			c.exec(ctx, "SELECT pg_terminate_backend($1)", *pid)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("shard %s: drop slot %s: still in use", c.shard.Name, slot)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func dropPublication(ctx context.Context, c *shardConn, pub string) error {
	return c.exec(ctx, "DROP PUBLICATION IF EXISTS "+ident(pub))
}

// cleanupReplication removes the tenant's subscription (target), slot and
// publication (source), whatever is there. It tries every step and joins
// the errors.
func (r *run) cleanupReplication(ctx context.Context) error {
	errs := []error{
		dropSubscription(ctx, r.dst, r.names.subscription),
		dropSlot(ctx, r.src, r.names.slot),
		dropPublication(ctx, r.src, r.names.publication),
	}
	if r.st.SubOID != 0 {
		// Table sync slots a dead target could not drop.
		rows, err := r.src.pool.Query(ctx, "SELECT slot_name::text FROM pg_replication_slots WHERE slot_name LIKE $1",
			fmt.Sprintf(`pg\_%d\_sync\_%%`, r.st.SubOID))
		if err == nil {
			var slots []string
			if slots, err = pgx.CollectRows(rows, pgx.RowTo[string]); err == nil {
				for _, s := range slots {
					errs = append(errs, dropSlot(ctx, r.src, s))
				}
			}
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// slotPosition returns how far the target confirmed (flushed) the
// source's WAL, the source's current WAL position and the lag between.
func (r *run) slotPosition(ctx context.Context) (confirmed, current pgLSN, err error) {
	var c, cur *string
	err = r.src.pool.QueryRow(ctx, `SELECT confirmed_flush_lsn::text, pg_current_wal_lsn()::text FROM pg_replication_slots WHERE slot_name = $1`, r.names.slot).Scan(&c, &cur)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, 0, fmt.Errorf("shard %s: replication slot %s is gone", r.src.shard.Name, r.names.slot)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("shard %s: slot %s: %w", r.src.shard.Name, r.names.slot, err)
	}
	if c != nil {
		confirmed, _ = parseLSN(*c)
	}
	if cur != nil {
		current, _ = parseLSN(*cur)
	}
	return confirmed, current, nil
}

// pgLSN is a WAL position.
type pgLSN uint64

func parseLSN(s string) (pgLSN, error) {
	var hi, lo uint32
	if _, err := fmt.Sscanf(s, "%X/%X", &hi, &lo); err != nil {
		return 0, fmt.Errorf("bad LSN %q", s)
	}
	return pgLSN(uint64(hi)<<32 | uint64(lo)), nil
}

func (l pgLSN) String() string { return fmt.Sprintf("%X/%X", uint32(l>>32), uint32(l)) }

// subscriptionErrors returns the count of apply and table sync errors of
// the tenant's subscription on the target.
func (r *run) subscriptionErrors(ctx context.Context) (int64, error) {
	var n int64
	err := r.dst.pool.QueryRow(ctx, `SELECT coalesce(sum(apply_error_count + sync_error_count), 0)::int8 FROM pg_stat_subscription_stats WHERE subname = $1`, r.names.subscription).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("shard %s: subscription %s: %w", r.dst.shard.Name, r.names.subscription, err)
	}
	return n, nil
}

// subscriptionReady reports whether the subscription exists and every
// table of it is synchronized (state r).
func (r *run) subscriptionReady(ctx context.Context) (bool, error) {
	var total, ready int
	err := r.dst.pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE sr.srsubstate = 'r')
		FROM pg_subscription s JOIN pg_subscription_rel sr ON sr.srsubid = s.oid WHERE s.subname = $1`, r.names.subscription).Scan(&total, &ready)
	if err != nil {
		return false, fmt.Errorf("shard %s: subscription %s: %w", r.dst.shard.Name, r.names.subscription, err)
	}
	return total > 0 && total == ready, nil
}

// tableBytes sums the on-disk size of tables (heap and TOAST, no indexes).
func tableBytes(ctx context.Context, c *shardConn, schema string) (int64, error) {
	var n int64
	err := c.pool.QueryRow(ctx, `SELECT coalesce(sum(pg_table_size(c.oid)), 0)::int8 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relkind = 'r'`, schema).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("shard %s: size of %s: %w", c.shard.Name, schema, err)
	}
	return n, nil
}

// sequences lists the sequences of a schema.
func sequences(ctx context.Context, c *shardConn, schema string) ([]string, error) {
	rows, err := c.pool.Query(ctx, `SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relkind = 'S' AND NOT EXISTS (SELECT FROM pg_depend d JOIN pg_class t ON t.oid = d.refobjid
			WHERE d.objid = c.oid AND d.deptype IN ('a', 'i') AND t.relname = $2)
		ORDER BY 1`, schema, markerTable)
	if err != nil {
		return nil, fmt.Errorf("shard %s: sequences of %s: %w", c.shard.Name, schema, err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// TableCheck compares one table on the source and the target.
type TableCheck struct {
	Table      string `json:"table"`
	SourceRows int64  `json:"source_rows"`
	TargetRows int64  `json:"target_rows"`
	SourceHash string `json:"source_hash"`
	TargetHash string `json:"target_hash"`
}

// Equal reports whether both sides have the same rows.
func (t TableCheck) Equal() bool { return t.SourceRows == t.TargetRows && t.SourceHash == t.TargetHash }

// snapshot is a REPEATABLE READ READ ONLY transaction, with settings that
// make row text the same on every server.
type snapshot struct {
	conn *pgxpool.Conn
	tx   pgx.Tx
}

func openSnapshot(ctx context.Context, c *shardConn) (*snapshot, error) {
	conn, err := c.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("shard %s: %w", c.shard.Name, err)
	}
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err == nil {
		// The first statement takes the snapshot.
		_, err = tx.Exec(ctx, `SELECT set_config('TimeZone', 'UTC', true), set_config('DateStyle', 'ISO, MDY', true),
			set_config('IntervalStyle', 'postgres', true), set_config('extra_float_digits', '3', true), set_config('bytea_output', 'hex', true)`)
	}
	if err != nil {
		conn.Release()
		return nil, fmt.Errorf("shard %s: snapshot: %w", c.shard.Name, err)
	}
	return &snapshot{conn: conn, tx: tx}, nil
}

func (s *snapshot) close() {
	s.tx.Rollback(context.Background())
	s.conn.Release()
}

// hash counts a table's rows and sums a 64-bit hash of each row's text
// (the columns in name order), which does not depend on row order.
func (s *snapshot) hash(ctx context.Context, schema string, t table, where string) (rows int64, sum string, err error) {
	cols := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		cols[i] = ident(c)
	}
	row := "ROW(" + strings.Join(cols, ", ") + ")"
	if len(cols) == 1 {
		row = "ROW(" + cols[0] + ", NULL)"
	}
	err = s.tx.QueryRow(ctx, `SELECT count(*), coalesce(sum(('x' || substr(md5(`+row+`::text), 1, 16))::bit(64)::int8), 0)::text FROM `+
		only(t)+qualified(schema, t.Name)+where).Scan(&rows, &sum)
	return rows, sum, err
}

func missingColumns(src, dst table) []string {
	var out []string
	for _, c := range src.Columns {
		if !slices.Contains(dst.Columns, c) {
			out = append(out, c)
		}
	}
	return out
}
