package move

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantry/tenantry/registry"
	"github.com/tenantry/tenantry/tenancy/backup"
)

// prepare removes what an earlier move of the tenant left behind and
// creates the target schema at the desired state, without data.
func (r *run) prepare(ctx context.Context) error {
	if err := r.cleanupReplication(ctx); err != nil {
		return fmt.Errorf("remove the replication objects of an earlier move: %w", err)
	}
	schema := r.st.To.Schema
	exists, err := schemaExists(ctx, r.dst, schema)
	if err != nil {
		return err
	}
	if exists {
		ours, err := r.leftoverTarget(ctx)
		if err != nil {
			return err
		}
		if !ours {
			return fmt.Errorf("schema %s on shard %s: %w", schema, r.dst.shard.Name, ErrTargetExists)
		}
		if err := r.dst.exec(ctx, "DROP SCHEMA "+ident(schema)+" CASCADE"); err != nil {
			return fmt.Errorf("drop the target schema an earlier move left: %w", err)
		}
	}
	r.st.TargetCreated = true
	if err := r.save(ctx); err != nil {
		return err
	}
	if err := r.m.cfg.Apply(ctx, r.dst.shard, schema); err != nil {
		return fmt.Errorf("create schema %s on shard %s: %w", schema, r.dst.shard.Name, err)
	}
	src, err := readTables(ctx, r.src, r.st.From.Schema)
	if err != nil {
		return err
	}
	dst, err := readTables(ctx, r.dst, schema)
	if err != nil {
		return err
	}
	byName := map[string]table{}
	for _, t := range dst {
		byName[t.Name] = t
	}
	for _, t := range src {
		d, ok := byName[t.Name]
		if !ok {
			return fmt.Errorf("%w: table %s of the source has no counterpart in the desired state: migrate the source first (tenantctl migrate)", ErrUnsupported, t.Name)
		}
		if miss := missingColumns(t, d); len(miss) > 0 {
			return fmt.Errorf("%w: columns %s of table %s are not in the desired state: migrate the source first", ErrUnsupported, strings.Join(miss, ", "), t.Name)
		}
	}
	if len(src) == 0 {
		return fmt.Errorf("%w: schema %s on shard %s has no tables", ErrUnsupported, r.st.From.Schema, r.src.shard.Name)
	}
	return nil
}

// leftoverTarget reports whether the target schema is a copy an earlier
// move of this tenant to that shard left behind.
func (r *run) leftoverTarget(ctx context.Context) (bool, error) {
	if t, err := r.m.cfg.Store.Tenant(ctx, r.tenant.ID.String()); err != nil {
		return false, err
	} else if t.Placement.Shard == r.st.To.Shard && t.Placement.Schema == r.st.To.Schema {
		return false, nil // live
	}
	jobs, err := r.m.cfg.Store.Jobs(ctx, registry.JobFilter{Kind: Kind, Tenant: r.tenant.ID})
	if err != nil {
		return false, err
	}
	for _, j := range jobs {
		if j.ID == r.job.ID {
			if r.st.TargetCreated {
				return true, nil
			}
			continue
		}
		if s, err := stateOf(j); err == nil && s.To.Shard == r.st.To.Shard && s.To.Schema == r.st.To.Schema && s.TargetCreated &&
			j.State != registry.JobDone {
			return true, nil
		}
	}
	return false, nil
}

// copy publishes the tenant's tables, creates the slot on the source and
// the subscription on the target, and waits for the snapshot copy.
func (r *run) copy(ctx context.Context) error {
	if err := r.cleanupReplication(ctx); err != nil {
		return err
	}
	if err := r.src.exec(ctx, "CREATE PUBLICATION "+ident(r.names.publication)+" FOR TABLES IN SCHEMA "+ident(r.st.From.Schema)); err != nil {
		return fmt.Errorf("create publication: %w", err)
	}
	// Pre-created: CREATE SUBSCRIPTION cannot create a slot in its own
	// cluster (it would wait for its own transaction).
	if err := r.src.exec(ctx, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", r.names.slot); err != nil {
		return fmt.Errorf("create replication slot: %w", err)
	}
	total, err := tableBytes(ctx, r.src, r.st.From.Schema)
	if err != nil {
		return err
	}
	start := time.Now()
	err = r.dst.exec(ctx, "CREATE SUBSCRIPTION "+ident(r.names.subscription)+
		" CONNECTION "+literal(r.src.shard.DSN)+
		" PUBLICATION "+ident(r.names.publication)+
		" WITH (create_slot = false, slot_name = "+literal(r.names.slot)+", copy_data = true, synchronous_commit = 'on')")
	if err != nil {
		return fmt.Errorf("create subscription: %w", err)
	}
	deadline := start.Add(r.m.cfg.CopyTimeout)
	for tick := 0; ; tick++ {
		ready, err := r.subscriptionReady(ctx)
		if err != nil {
			return err
		}
		if ready {
			break
		}
		if n, err := r.subscriptionErrors(ctx); err != nil {
			return err
		} else if n > 0 {
			return fmt.Errorf("%w: %d errors copying the tables to shard %s", ErrReplication, n, r.dst.shard.Name)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: copy not done after %s", ErrTimeout, r.m.cfg.CopyTimeout)
		}
		if tick%5 == 0 && r.m.cfg.Progress != nil {
			done, _ := tableBytes(ctx, r.dst, r.st.To.Schema)
			secs := time.Since(start).Seconds()
			r.progress("%s: copy %s / %s (%.1f MB/s)", r.tenant.Slug, mb(done), mb(total), float64(done)/1e6/max(secs, 1e-3))
		}
		if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
	r.st.CopyNanos = time.Since(start)
	r.st.Bytes = total
	r.m.cfg.Metrics.copied(total, r.st.CopyNanos)
	r.log.Info("move: copied", "bytes", total, "duration", r.st.CopyNanos.String(),
		"mb_per_s", fmt.Sprintf("%.1f", float64(total)/1e6/max(r.st.CopyNanos.Seconds(), 1e-3)))
	return r.save(ctx)
}

func mb(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// catchup waits until the target is within CatchupLag of the source.
func (r *run) catchup(ctx context.Context) error {
	deadline := time.Now().Add(r.m.cfg.CopyTimeout)
	for {
		confirmed, current, err := r.slotPosition(ctx)
		if err != nil {
			return err
		}
		lag := int64(current) - int64(confirmed)
		if confirmed > 0 && lag <= r.m.cfg.CatchupLag {
			r.log.Info("move: caught up", "lag_bytes", max(lag, 0))
			return nil
		}
		if n, err := r.subscriptionErrors(ctx); err != nil {
			return err
		} else if n > 0 {
			return fmt.Errorf("%w: %d apply errors on shard %s", ErrReplication, n, r.dst.shard.Name)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: replication lag still %d bytes after %s", ErrTimeout, lag, r.m.cfg.CopyTimeout)
		}
		r.progress("%s: catch-up, lag %d bytes", r.tenant.Slug, lag)
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
}

// fence stops the tenant's writes: the registry first (routers refuse
// writes with tenancy.ErrTenantReadOnly), after RouterGrace the source
// database (a stale router's write fails), then waits for the writes that
// were under way.
func (r *run) fence(ctx context.Context) error {
	r.st.FencedAt = time.Now()
	if err := r.save(ctx); err != nil {
		return err
	}
	t, err := r.m.cfg.Store.SetState(ctx, r.tenant.ID, registry.Moving)
	if err != nil {
		return err
	}
	r.tenant = t
	if err := sleepCtx(ctx, r.m.cfg.RouterGrace); err != nil {
		return err
	}
	if err := r.fenceSource(ctx); err != nil {
		return err
	}
	return r.drain(ctx)
}

// fenceSource revokes the app and admin roles' writes on the source
// schema's tables.
func (r *run) fenceSource(ctx context.Context) error {
	return r.src.exec(ctx, "REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA "+ident(r.st.From.Schema)+
		" FROM "+ident(r.m.cfg.Roles.App)+", "+ident(r.m.cfg.Roles.Admin))
}

// unfenceSource gives the writes back (what migrate grants).
func (r *run) unfenceSource(ctx context.Context) error {
	return r.src.exec(ctx, "GRANT INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "+ident(r.st.From.Schema)+
		" TO "+ident(r.m.cfg.Roles.App)+", "+ident(r.m.cfg.Roles.Admin))
}

// drainSQL lists the backends that hold a write lock on a table of the
// schema in a transaction that began before the fence. Later ones see the
// revoked privileges (they take their locks after the REVOKE committed,
// and re-read the catalog when they do).
const drainSQL = `SELECT DISTINCT l.pid FROM pg_locks l
JOIN pg_class c ON c.oid = l.relation JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND n.nspname = $1 AND l.mode = 'RowExclusiveLock' AND l.granted
  AND l.pid <> pg_backend_pid() AND a.xact_start < $2`

// drain waits for the writes under way when the fence went up, and ends
// the transactions still running after DrainTimeout (their writes roll
// back and were never acknowledged).
func (r *run) drain(ctx context.Context) error {
	var fencedAt time.Time
	if err := r.src.pool.QueryRow(ctx, "SELECT clock_timestamp()").Scan(&fencedAt); err != nil {
		return fmt.Errorf("shard %s: %w", r.src.shard.Name, err)
	}
	deadline := time.Now().Add(r.m.cfg.DrainTimeout)
	for {
		rows, err := r.src.pool.Query(ctx, drainSQL, r.st.From.Schema, fencedAt)
		if err != nil {
			return fmt.Errorf("shard %s: drain: %w", r.src.shard.Name, err)
		}
		pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
		if err != nil {
			return fmt.Errorf("shard %s: drain: %w", r.src.shard.Name, err)
		}
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			r.log.Warn("move: ending transactions still writing after the drain timeout", "pids", pids)
			for _, pid := range pids {
				r.src.exec(ctx, "SELECT pg_terminate_backend($1)", pid)
			}
			deadline = time.Now().Add(r.m.cfg.DrainTimeout)
		}
		if err := sleepCtx(ctx, 2*time.Millisecond); err != nil {
			return err
		}
	}
}

// sync waits until the target confirmed the source's WAL up to its
// current position (after the drain: every write of the tenant), then
// copies the sequences and takes the verification snapshot of the target.
func (r *run) sync(ctx context.Context) error {
	// A resumed move re-applies the fence (idempotent) before trusting it.
	if err := r.fenceSource(ctx); err != nil {
		return err
	}
	var cur string
	if err := r.src.pool.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&cur); err != nil {
		return fmt.Errorf("shard %s: %w", r.src.shard.Name, err)
	}
	target, err := parseLSN(cur)
	if err != nil {
		return err
	}
	r.st.FenceLSN = cur
	deadline := time.Now().Add(r.m.cfg.SyncTimeout)
	for i := 0; ; i++ {
		confirmed, _, err := r.slotPosition(ctx)
		if err != nil {
			return err
		}
		if confirmed >= target {
			break
		}
		if i%50 == 49 {
			if n, err := r.subscriptionErrors(ctx); err != nil {
				return err
			} else if n > 0 {
				return fmt.Errorf("%w: %d apply errors on shard %s", ErrReplication, n, r.dst.shard.Name)
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: final catch-up: target at %s, source at %s after %s", ErrTimeout, confirmed, target, r.m.cfg.SyncTimeout)
		}
		if err := sleepCtx(ctx, time.Millisecond); err != nil {
			return err
		}
	}
	if err := r.copySequences(ctx); err != nil {
		return err
	}
	snap, err := openSnapshot(ctx, r.dst)
	if err != nil {
		return err
	}
	r.verifySnap = snap
	return nil
}

func (r *run) copySequences(ctx context.Context) error {
	seqs, err := sequences(ctx, r.src, r.st.From.Schema)
	if err != nil {
		return err
	}
	batch := &pgx.Batch{}
	for _, s := range seqs {
		var last int64
		var called bool
		if err := r.src.pool.QueryRow(ctx, "SELECT last_value, is_called FROM "+qualified(r.st.From.Schema, s)).Scan(&last, &called); err != nil {
			return fmt.Errorf("shard %s: sequence %s: %w", r.src.shard.Name, s, err)
		}
		batch.Queue("SELECT setval($1::regclass, $2, $3)", qualified(r.st.To.Schema, s), last, called)
	}
	if batch.Len() == 0 {
		return nil
	}
	if err := r.dst.pool.SendBatch(ctx, batch).Close(); err != nil {
		return fmt.Errorf("shard %s: set sequences: %w", r.dst.shard.Name, err)
	}
	return nil
}

// flip points the registry at the target and makes the tenant active.
func (r *run) flip(ctx context.Context) error {
	t, err := r.m.cfg.Store.Cutover(ctx, r.tenant.ID, r.st.To)
	if err != nil {
		if r.flipped(context.WithoutCancel(ctx)) {
			err = nil
		} else {
			return err
		}
	} else {
		r.tenant = t
	}
	if !r.st.FencedAt.IsZero() {
		r.st.WindowNanos = time.Since(r.st.FencedAt)
		r.m.cfg.Metrics.cutover(r.st.WindowNanos)
	}
	return r.save(context.WithoutCancel(ctx))
}

// flipped reports whether the registry points at the target.
func (r *run) flipped(ctx context.Context) bool {
	t, err := r.m.cfg.Store.Tenant(ctx, r.tenant.ID.String())
	return err == nil && t.Placement.Shard == r.st.To.Shard && t.Placement.Schema == r.st.To.Schema
}

// verify compares every table's count and hash on the (fenced, static)
// source with the target as of the flip.
func (r *run) verify(ctx context.Context) error {
	if r.verifySnap == nil {
		r.st.VerifyNote = "not verified: the move was resumed after the flip, and the target has taken writes since"
		r.log.Warn("move: " + r.st.VerifyNote)
		return r.save(ctx)
	}
	tables, err := readTables(ctx, r.src, r.st.From.Schema)
	if err != nil {
		return err
	}
	src, err := openSnapshot(ctx, r.src)
	if err != nil {
		return err
	}
	defer src.close()
	r.st.Tables, r.st.Rows = nil, 0
	var bad []string
	for _, t := range tables {
		c := TableCheck{Table: t.Name}
		if c.SourceRows, c.SourceHash, err = src.hash(ctx, r.st.From.Schema, t); err != nil {
			return fmt.Errorf("shard %s: hash %s: %w", r.src.shard.Name, t.Name, err)
		}
		if c.TargetRows, c.TargetHash, err = r.verifySnap.hash(ctx, r.st.To.Schema, t); err != nil {
			return fmt.Errorf("shard %s: hash %s: %w", r.dst.shard.Name, t.Name, err)
		}
		r.st.Tables = append(r.st.Tables, c)
		r.st.Rows += c.TargetRows
		if !c.Equal() {
			bad = append(bad, fmt.Sprintf("%s (rows %d/%d, hash %s/%s)", t.Name, c.SourceRows, c.TargetRows, c.SourceHash, c.TargetHash))
		}
	}
	r.verifySnap.close()
	r.verifySnap = nil
	r.m.cfg.Metrics.rows(r.st.Rows)
	if len(bad) > 0 {
		r.st.VerifyNote = "verification failed: " + strings.Join(bad, "; ")
		r.log.Error("move: "+r.st.VerifyNote, "tables", len(tables))
	} else {
		r.st.Verified = true
	}
	return r.save(ctx)
}

// cleanup removes the replication objects and retires the source schema
// (renamed, no access for the app and admin roles, kept for retention:
// backup.Retired lists it, backup.DropRetired drops it).
func (r *run) cleanup(ctx context.Context) error {
	if err := r.cleanupReplication(ctx); err != nil {
		return err
	}
	exists, err := schemaExists(ctx, r.src, r.st.From.Schema)
	if err != nil {
		return err
	}
	if exists {
		now := time.Now().UTC()
		retired := backup.RetiredPrefix + strings.TrimPrefix(r.tenant.ID.SchemaName(), "tenant_") + "_" +
			now.Format("20060102150405") + fmt.Sprintf("%03d", now.Nanosecond()/1e6)
		note, _ := json.Marshal(backup.RetiredSchema{Tenant: r.tenant.ID, Original: r.st.From.Schema, Mode: backup.ModeSchema,
			RetiredAt: now, Reason: "moved to shard " + r.st.To.Shard})
		tx, err := r.src.pool.Begin(ctx)
		if err != nil {
			return fmt.Errorf("shard %s: %w", r.src.shard.Name, err)
		}
		defer tx.Rollback(ctx)
		for _, stmt := range []string{
			"ALTER SCHEMA " + ident(r.st.From.Schema) + " RENAME TO " + ident(retired),
			"REVOKE ALL ON SCHEMA " + ident(retired) + " FROM " + ident(r.m.cfg.Roles.App) + ", " + ident(r.m.cfg.Roles.Admin),
			"REVOKE ALL ON ALL TABLES IN SCHEMA " + ident(retired) + " FROM " + ident(r.m.cfg.Roles.App) + ", " + ident(r.m.cfg.Roles.Admin),
			"COMMENT ON SCHEMA " + ident(retired) + " IS " + literal(string(note)),
		} {
			if _, err := tx.Exec(ctx, stmt); err != nil {
				return fmt.Errorf("shard %s: retire %s: %w", r.src.shard.Name, r.st.From.Schema, err)
			}
		}
		if err := tx.Commit(ctx); err != nil {
			return fmt.Errorf("shard %s: retire %s: %w", r.src.shard.Name, r.st.From.Schema, err)
		}
		r.st.Retired = retired
	}
	if err := r.save(ctx); err != nil {
		return err
	}
	if !r.st.Verified && strings.HasPrefix(r.st.VerifyNote, "verification failed") {
		return fmt.Errorf("%w: %s (source kept as %s)", ErrVerify, r.st.VerifyNote, r.st.Retired)
	}
	return nil
}

// rollback returns a move that has not flipped to where it started: writes
// unfenced, tenant state as before, replication objects and the target
// schema gone. It tries every step and joins the errors.
func (r *run) rollback(ctx context.Context) error {
	if r.verifySnap != nil {
		r.verifySnap.close()
		r.verifySnap = nil
	}
	if r.flipped(ctx) {
		return fmt.Errorf("rollback refused: %w", ErrTooLateToAbort)
	}
	var errs []error
	t, err := r.m.cfg.Store.Tenant(ctx, r.tenant.ID.String())
	if err != nil {
		return err
	}
	if t.State == registry.Moving || !Phase(r.job.Phase).before(PhaseFence) || !r.st.FencedAt.IsZero() {
		if err := r.unfenceSource(ctx); err != nil {
			// Writes stay refused: leave the tenant fenced in the registry too.
			return fmt.Errorf("give writes back on the source (the tenant stays fenced; abort again when the source answers): %w", err)
		}
		if t.State == registry.Moving {
			prior := r.st.PriorState
			if prior == "" {
				prior = registry.Active
			}
			if _, err := r.m.cfg.Store.SetState(ctx, r.tenant.ID, prior); err != nil {
				errs = append(errs, err)
			}
		}
	}
	errs = append(errs, r.cleanupReplication(ctx))
	if r.st.TargetCreated {
		errs = append(errs, r.dst.exec(ctx, "DROP SCHEMA IF EXISTS "+ident(r.st.To.Schema)+" CASCADE"))
	}
	return errors.Join(errs...)
}
