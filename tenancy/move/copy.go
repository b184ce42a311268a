package move

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenantry/tenantry/internal/fanout"
)

// The snapshot copy. The mover creates the move's replication slot on a
// replication connection that exports the slot's snapshot, copies every
// table as of that snapshot itself, and only then creates the subscription
// WITH (copy_data = false), which applies what the source committed after
// it. PostgreSQL's table sync would copy each table in text, into a table
// whose primary key it maintains row by row (it applies changes right
// after its copy, and needs the key to find their rows). Measured on the
// 146 MB table of BenchmarkCopy between two local clusters: text COPY into
// the table with its primary key 4.4 s, binary COPY into the bare table
// 1.2 s, and 0.5 s to build the key afterwards.

// exportSlot creates the move's replication slot on a replication
// connection to the source and returns the snapshot it exported, which
// lives as long as that connection stays open and idle.
func (r *run) exportSlot(ctx context.Context) (snapshot string, conn *pgconn.PgConn, err error) {
	cfg, err := pgxpool.ParseConfig(r.src.shard.DSN)
	if err != nil {
		return "", nil, fmt.Errorf("shard %s: %w", r.src.shard.Name, err)
	}
	cc := cfg.ConnConfig.Config.Copy()
	cc.RuntimeParams["replication"] = "database"
	cc.RuntimeParams["application_name"] = "tenantry-move"
	cc.ConnectTimeout = 5 * time.Second
	conn, err = pgconn.ConnectConfig(ctx, cc)
	if err != nil {
		return "", nil, fmt.Errorf("shard %s: replication connection: %w", r.src.shard.Name, err)
	}
	res, err := conn.Exec(ctx, "CREATE_REPLICATION_SLOT "+ident(r.names.slot)+" LOGICAL pgoutput (SNAPSHOT 'export')").ReadAll()
	if err == nil && (len(res) != 1 || len(res[0].Rows) != 1 || len(res[0].Rows[0]) < 3) {
		err = fmt.Errorf("unexpected answer: %d results", len(res))
	}
	if err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return "", nil, fmt.Errorf("shard %s: create replication slot: %w", r.src.shard.Name, err)
	}
	return string(res[0].Rows[0][2]), conn, nil
}

// copyJob copies one table: out runs on the source, in on the target.
type copyJob struct {
	table   string
	bytes   int64
	out, in string
}

// copyJobs are the tenant's tables to copy, the largest first.
func (r *run) copyJobs(ctx context.Context) ([]copyJob, error) {
	src, err := r.sourceTables(ctx)
	if err != nil {
		return nil, err
	}
	dst, err := readTables(ctx, r.dst, r.dstSchema())
	if err != nil {
		return nil, err
	}
	jobs := make([]copyJob, 0, len(src))
	for _, s := range src {
		i := slices.IndexFunc(dst, func(d table) bool { return d.Name == s.Name })
		if i < 0 { // prepare checked this
			return nil, fmt.Errorf("%w: table %s of the source has no counterpart on the target", ErrUnsupported, s.Name)
		}
		jobs = append(jobs, r.copyStatements(s, dst[i]))
	}
	slices.SortStableFunc(jobs, func(a, b copyJob) int { return cmp.Compare(b.bytes, a.bytes) })
	return jobs, nil
}

// copyStatements returns the COPY pair for a table: binary when every
// column has the same built-in type on both sides, text otherwise.
func (r *run) copyStatements(src, dst table) copyJob {
	cols := make([]string, len(src.Columns))
	for i, c := range src.Columns {
		cols[i] = ident(c)
	}
	list := ""
	if len(cols) > 0 {
		list = " (" + strings.Join(cols, ", ") + ")"
	}
	format := ""
	if binaryCompatible(src, dst) {
		format = " (FORMAT binary)"
	}
	from := qualified(r.st.From.Schema, src.Name)
	var out string
	switch {
	case r.st.Shared:
		out = "COPY (SELECT " + strings.Join(cols, ", ") + " FROM " + only(src) + from +
			" WHERE tenant_id = " + literal(r.tenant.ID.String()) + "::uuid) TO STDOUT" + format
	case src.Partitioned:
		out = "COPY (SELECT " + strings.Join(cols, ", ") + " FROM " + from + ") TO STDOUT" + format
	default:
		out = "COPY " + from + list + " TO STDOUT" + format
	}
	return copyJob{table: src.Name, bytes: src.Bytes, out: out,
		in: "COPY " + qualified(r.dstSchema(), src.Name) + list + " FROM STDIN" + format}
}

// firstNormalObjectID is where PostgreSQL's oids for objects created after
// initdb begin: types below it are built in, with the same oid everywhere.
const firstNormalObjectID = 16384

// binaryCompatible reports whether the table's rows go from src to dst in
// binary: when every column has the same built-in type on both sides.
// Built-in types have one oid and one binary form in every cluster of a
// PostgreSQL version; a type created in a cluster (an enum, a composite,
// an extension's type) is only known to match the other side's by name,
// which text input checks.
func binaryCompatible(src, dst table) bool {
	for i, c := range src.Columns {
		j := slices.Index(dst.Columns, c)
		if j < 0 || src.Types[i] != dst.Types[j] || src.Types[i] >= firstNormalObjectID {
			return false
		}
	}
	return true
}

// copyTables copies the tables as of the snapshot, on up to CopyWorkers
// pairs of connections, and returns the rows copied.
func (r *run) copyTables(ctx context.Context, snapshot string, jobs []copyJob) (rows int64, err error) {
	var n atomic.Int64
	err = fanout.Run(ctx, max(1, min(r.m.cfg.CopyWorkers, len(jobs))), jobs, func(ctx context.Context, next <-chan copyJob) error {
		return r.copyWorker(ctx, snapshot, next, &n)
	})
	return n.Load(), err
}

// copyWorker imports the snapshot on a source connection and copies the
// tables it is given to the target.
func (r *run) copyWorker(ctx context.Context, snapshot string, jobs <-chan copyJob, rows *atomic.Int64) error {
	sc, err := r.src.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("shard %s: %w", r.src.shard.Name, err)
	}
	defer sc.Release()
	tx, err := sc.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("shard %s: %w", r.src.shard.Name, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Exec(ctx, "SET TRANSACTION SNAPSHOT "+literal(snapshot)); err != nil {
		return fmt.Errorf("shard %s: import the slot's snapshot: %w", r.src.shard.Name, err)
	}
	if _, err := tx.Exec(ctx, textSettings); err != nil {
		return fmt.Errorf("shard %s: %w", r.src.shard.Name, err)
	}
	dc, err := r.dst.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("shard %s: %w", r.dst.shard.Name, err)
	}
	defer dc.Release()
	for j := range jobs {
		start := time.Now()
		n, err := r.copyTable(ctx, sc.Conn().PgConn(), dc, j)
		if err != nil {
			return err
		}
		rows.Add(n)
		r.log.Debug("move: table copied", "table", j.table, "rows", n, "duration", time.Since(start).String())
	}
	return nil
}

// textSettings fix how text COPY writes and reads dates, intervals and
// floats on both sides, whatever each server's defaults (as PostgreSQL's
// table sync does).
const textSettings = "SET LOCAL datestyle = ISO; SET LOCAL intervalstyle = postgres; SET LOCAL extra_float_digits = 3"

// copyBuffer batches the source's rows (one COPY message each) into the
// pipe to the target.
const copyBuffer = 256 << 10

// copyTable streams one table from the source connection, in its snapshot
// transaction, into the target in one transaction, as replication does
// (session_replication_role = replica: no user triggers fire).
func (r *run) copyTable(ctx context.Context, src *pgconn.PgConn, dst *pgxpool.Conn, j copyJob) (int64, error) {
	pr, pw := io.Pipe()
	outErr := make(chan error, 1)
	go func() {
		w := bufio.NewWriterSize(pw, copyBuffer)
		_, err := src.CopyTo(ctx, w, j.out)
		if err == nil {
			err = w.Flush()
		}
		pw.CloseWithError(err)
		outErr <- err
	}()
	var n int64
	inErr := pgx.BeginFunc(ctx, dst, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SET LOCAL session_replication_role = replica; "+textSettings); err != nil {
			return err
		}
		tag, err := tx.Conn().PgConn().CopyFrom(ctx, pr, j.in)
		n = tag.RowsAffected()
		return err
	})
	pr.CloseWithError(errTargetStopped) // the source's side stops if the target's did
	if err := <-outErr; err != nil && !errors.Is(err, errTargetStopped) {
		return 0, fmt.Errorf("shard %s: copy %s out: %w", r.src.shard.Name, j.table, err)
	}
	if inErr != nil {
		return 0, fmt.Errorf("shard %s: copy %s in: %w", r.dst.shard.Name, j.table, inErr)
	}
	return n, nil
}

var errTargetStopped = errors.New("the target stopped reading")
