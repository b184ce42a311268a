package move

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenantry/tenantry/migrate"
	"github.com/tenantry/tenantry/registry"
	"github.com/tenantry/tenantry/tenancy"
)

// Kind is the registry job kind of moves.
const Kind = "move"

// Phase is a step of a move, in order. The job record names the phase the
// mover entered last.
type Phase string

// The phases of a move.
const (
	PhasePrepare Phase = "prepare" // checks, target schema at the desired state, empty
	PhaseCopy    Phase = "copy"    // publication, slot, subscription; snapshot copy
	PhaseCatchup Phase = "catchup" // replication until the lag is small
	PhaseFence   Phase = "fence"   // registry state moving, database fence on the source, drain
	PhaseSync    Phase = "sync"    // final catch-up to the source's current LSN, sequences
	PhaseFlip    Phase = "flip"    // registry points at the target, state active, NOTIFY
	PhaseVerify  Phase = "verify"  // counts and hashes, source against target
	PhaseCleanup Phase = "cleanup" // subscription, slot, publication; source retired
	PhaseDone    Phase = "done"
)

// Phases lists the phases in order.
var Phases = []Phase{PhasePrepare, PhaseCopy, PhaseCatchup, PhaseFence, PhaseSync, PhaseFlip, PhaseVerify, PhaseCleanup, PhaseDone}

func (p Phase) index() int { return slices.Index(Phases, p) }

// before reports whether p comes before q.
func (p Phase) before(q Phase) bool { return p.index() < q.index() }

// Config configures a Mover. Store and Apply are required.
type Config struct {
	Store *registry.Store
	// Apply creates the target schema at the desired state (normally
	// provision.ApplySchema, as tenants create does).
	Apply registry.ApplyFunc
	// Roles: the app and admin roles are fenced on the source and lose the
	// retired copy (default migrate.DefaultRoles()).
	Roles migrate.Roles
	// Logger receives one line per phase (default slog.Default()).
	Logger *slog.Logger
	// Metrics, when set, records phase durations, cutover windows and what
	// was copied (NewMetrics).
	Metrics *Metrics
	// Progress, when set, receives a progress line redrawn in place (give
	// it a terminal).
	Progress io.Writer
	// Owner names this mover in the job record (default host/pid/random).
	Owner string
	// RouterGrace is how long the mover waits between setting the tenant
	// moving in the registry and fencing the source database, so that live
	// routers refuse writes with tenancy.ErrTenantReadOnly (retryable)
	// before the database fence makes a stale router's write fail
	// (default 25 ms; routers hear the registry within milliseconds).
	RouterGrace time.Duration
	// CatchupLag is the replication lag (bytes of the source's WAL) under
	// which the mover fences writes (default 1 MiB).
	CatchupLag int64
	// CopyTimeout bounds the snapshot copy with its index rebuild, and
	// then the catch-up (default 1 h each).
	CopyTimeout time.Duration
	// CopyWorkers is how many tables the snapshot copy streams at a time,
	// each on a connection to either shard (default 2, at most 4). A table
	// is one stream.
	CopyWorkers int
	// IndexWorkers is how many connections rebuild the target's indexes
	// (primary keys included) after the snapshot copy, each building one index at a time
	// without PostgreSQL's parallel maintenance workers (default 2, at most
	// 4). On a 2-core shard two serial builds side by side beat one build
	// after the other with parallel workers by about a quarter; raise it
	// with the target's cores.
	IndexWorkers int
	// DrainTimeout bounds the wait for the tenant's transactions that were
	// writing when the fence went up; those still running then are
	// terminated (their writes roll back, unacknowledged) (default 2 s).
	DrainTimeout time.Duration
	// SyncTimeout bounds the final catch-up while writes are fenced; past
	// it the move rolls back (default 30 s).
	SyncTimeout time.Duration
	// HeartbeatInterval is how often the mover renews its job's heartbeat
	// and looks for an abort request (default 1 s); a job without
	// heartbeat for StaleAfter (default 10 heartbeats) may be resumed or
	// aborted by another mover.
	HeartbeatInterval, StaleAfter time.Duration
	// OnPhase, when set, runs as each phase begins; an error stops the move
	// there (and rolls it back before the flip). For observers and tests.
	OnPhase func(ctx context.Context, tenant tenancy.ID, p Phase) error
}

func (c *Config) defaults() error {
	if c.Store == nil || c.Apply == nil {
		return errors.New("move: Config.Store and Config.Apply are required")
	}
	if c.Roles == (migrate.Roles{}) {
		c.Roles = migrate.DefaultRoles()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Owner == "" {
		host, _ := os.Hostname()
		b := make([]byte, 4)
		rand.Read(b)
		c.Owner = fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b))
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if c.RouterGrace == 0 {
		c.RouterGrace = 25 * time.Millisecond
	}
	if c.CatchupLag <= 0 {
		c.CatchupLag = 1 << 20
	}
	def(&c.CopyTimeout, time.Hour)
	if c.IndexWorkers <= 0 {
		c.IndexWorkers = 2
	}
	c.IndexWorkers = min(c.IndexWorkers, maxWorkers)
	if c.CopyWorkers <= 0 {
		c.CopyWorkers = 2
	}
	c.CopyWorkers = min(c.CopyWorkers, maxWorkers)
	def(&c.DrainTimeout, 2*time.Second)
	def(&c.SyncTimeout, 30*time.Second)
	def(&c.HeartbeatInterval, time.Second)
	def(&c.StaleAfter, 10*c.HeartbeatInterval)
	return nil
}

// Mover moves tenants between shards. It is safe for concurrent use; each
// tenant is moved by at most one mover at a time (the registry allows one
// running job per tenant).
type Mover struct {
	cfg Config
}

// New returns a Mover.
func New(cfg Config) (*Mover, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	return &Mover{cfg: cfg}, nil
}

// Request asks for a move.
type Request struct {
	// Tenant is a slug or a tenant id.
	Tenant string
	// Shard names the target shard.
	Shard string
	// Mode is the target placement mode: schema (default) or dedicated
	// (the target shard must hold no tenant; it stops accepting others).
	Mode registry.Mode
	// Force moves the tenant to a shard that is drained (not accepting
	// new tenants) or full. A shard that holds a dedicated tenant never
	// takes another.
	Force bool
}

// Result describes a finished move.
type Result struct {
	Tenant tenancy.ID
	Job    int
	From   registry.Placement
	To     registry.Placement
	// Window is the write-unavailability window: from the registry fence
	// to the registry flip.
	Window time.Duration
	// Copy is the snapshot copy's duration; Bytes and Rows what it copied.
	Copy     time.Duration
	Bytes    int64
	Rows     int64
	Tables   []TableCheck
	Verified bool   // counts and hashes compared equal
	Retired  string // the source's retired schema
	Duration time.Duration
}

// state is what a move records in its job's params for a resume.
type state struct {
	From       registry.Placement `json:"from"`
	To         registry.Placement `json:"to"`
	PriorState registry.State     `json:"prior_state"`
	// Target schema created by this job (so rollback may drop it).
	TargetCreated bool `json:"target_created,omitempty"`
	// SubOID is the target subscription's oid, which names its table sync
	// slots on the source (pg_<oid>_sync_<table oid>_<system id>).
	SubOID uint32 `json:"sub_oid,omitempty"`
	// Shared: the tenant leaves a shared schema; its rows are replicated
	// into Staging (the shared schema's name) on the target, renamed to
	// To.Schema at the flip.
	Shared  bool   `json:"shared,omitempty"`
	Staging string `json:"staging,omitempty"`
	// Deferred are the statements that recreate the target's
	// indexes and constraints, dropped for the copy.
	Deferred    []string      `json:"deferred,omitempty"`
	FenceLSN    string        `json:"fence_lsn,omitempty"`
	FencedAt    time.Time     `json:"fenced_at,omitzero"`
	CopyNanos   time.Duration `json:"copy_ns,omitempty"`
	Bytes       int64         `json:"bytes,omitempty"`
	Rows        int64         `json:"rows,omitempty"`
	WindowNanos time.Duration `json:"window_ns,omitempty"`
	Verified    bool          `json:"verified,omitempty"`
	VerifyNote  string        `json:"verify_note,omitempty"`
	Tables      []TableCheck  `json:"tables,omitempty"`
	Retired     string        `json:"retired,omitempty"`
}

func (s *state) params() map[string]any {
	b, _ := json.Marshal(s)
	var m map[string]any
	json.Unmarshal(b, &m)
	return m
}

func stateOf(j registry.Job) (*state, error) {
	b, err := json.Marshal(j.Params)
	if err != nil {
		return nil, err
	}
	var s state
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("move: job %d: params: %w", j.ID, err)
	}
	return &s, nil
}

// run is one mover's work on one job.
type run struct {
	m       *Mover
	job     registry.Job
	tenant  registry.Tenant
	st      *state
	src     *shardConn
	dst     *shardConn
	log     *slog.Logger
	phase   atomic.Value // Phase
	names   names
	start   time.Time
	resumed bool

	verifySnap *snapshot // the target, as of the flip

	// Connections holding migrate's advisory lock on the schemas the move
	// reads and writes (schemaLocks).
	srcLock, dstLock *pgxpool.Conn
}

// Move moves a tenant to another shard: snapshot copy and logical
// replication, write fence, final catch-up, flip, verification, cleanup.
// On a failure before the flip it rolls back, leaving the tenant served by
// its source; errors are *PhaseError.
func (m *Mover) Move(ctx context.Context, req Request) (*Result, error) {
	t, err := m.cfg.Store.Tenant(ctx, req.Tenant)
	if err != nil {
		return nil, err
	}
	if j, err := m.cfg.Store.RunningJob(ctx, t.ID); err == nil {
		return nil, fmt.Errorf("tenant %s: %w (job %d, %s, phase %s, owner %q)", t.Slug, ErrMoveInProgress, j.ID, j.Kind, j.Phase, j.Owner)
	} else if !errors.Is(err, registry.ErrNotFound) {
		return nil, err
	}
	if t.State != registry.Active && t.State != registry.ReadOnly {
		return nil, fmt.Errorf("tenant %s is %s: %w", t.Slug, t.State, ErrNotServable)
	}
	if req.Mode == "" {
		req.Mode = registry.ModeSchema
	}
	switch {
	case req.Mode != registry.ModeSchema && req.Mode != registry.ModeDedicated:
		return nil, fmt.Errorf("tenant %s: %w: to mode %q (want schema or dedicated)", t.Slug, ErrUnsupported, req.Mode)
	case req.Shard == t.Placement.Shard:
		return nil, fmt.Errorf("tenant %s to shard %s: %w", t.Slug, req.Shard, ErrSameShard)
	}
	target, err := m.cfg.Store.Shard(ctx, req.Shard)
	if err != nil {
		return nil, err
	}
	source, err := m.cfg.Store.Shard(ctx, t.Placement.Shard)
	if err != nil {
		return nil, err
	}
	if registry.SameDatabase(source.DSN, target.DSN) {
		// Replicating a database into itself: the subscription's slot
		// would wait for the very transaction that creates it.
		return nil, fmt.Errorf("tenant %s to shard %s: it is on the same database as shard %s: %w", t.Slug, target.Name, source.Name, ErrSameShard)
	}
	others, err := m.cfg.Store.Tenants(ctx, registry.TenantFilter{Shard: target.Name})
	if err != nil {
		return nil, err
	}
	live, dedicated := 0, ""
	for _, o := range others {
		if o.State == registry.Deleted {
			continue
		}
		live++
		if o.Placement.Mode == registry.ModeDedicated {
			dedicated = o.Slug
		}
	}
	switch {
	case req.Mode == registry.ModeDedicated && live > 0:
		return nil, fmt.Errorf("tenant %s to shard %s (%d tenants): %w", t.Slug, target.Name, live, ErrTargetNotEmpty)
	case dedicated != "":
		return nil, fmt.Errorf("tenant %s to shard %s: it is tenant %s's dedicated shard: %w", t.Slug, target.Name, dedicated, ErrTargetRefuses)
	case !req.Force && !target.Accepting:
		return nil, fmt.Errorf("tenant %s to shard %s: it is drained (not accepting tenants): %w", t.Slug, target.Name, ErrTargetRefuses)
	case !req.Force && live >= target.Capacity:
		return nil, fmt.Errorf("tenant %s to shard %s: it is full (%d/%d tenants): %w", t.Slug, target.Name, live, target.Capacity, ErrTargetRefuses)
	}
	st := &state{From: t.Placement, PriorState: t.State,
		To: registry.Placement{Shard: target.Name, Schema: t.Placement.Schema, Mode: req.Mode}}
	if t.Placement.Mode == registry.ModeShared {
		st.Shared, st.Staging, st.To.Schema = true, t.Placement.Schema, t.ID.SchemaName()
	}
	job, err := m.cfg.Store.StartJob(ctx, Kind, t.ID, m.cfg.Owner, string(PhasePrepare), st.params())
	if err != nil {
		if errors.Is(err, registry.ErrJobRunning) {
			return nil, fmt.Errorf("tenant %s: %w: %w", t.Slug, ErrMoveInProgress, err)
		}
		return nil, err
	}
	return m.run(ctx, job, t, st, true)
}

// Resume continues a move whose mover died (no heartbeat for StaleAfter),
// from the phase it had reached: a copy starts over, a catch-up continues,
// a fenced move finishes its final catch-up, a flipped one its
// verification and cleanup. force takes the move over whatever its
// heartbeat says (only when its mover is known to be dead).
func (m *Mover) Resume(ctx context.Context, tenant string, force bool) (*Result, error) {
	t, job, err := m.take(ctx, tenant, force)
	if err != nil {
		return nil, err
	}
	st, err := stateOf(job)
	if err != nil {
		return nil, err
	}
	return m.run(ctx, job, t, st, false)
}

// take finds the tenant's running move and takes it over.
func (m *Mover) take(ctx context.Context, tenant string, force bool) (registry.Tenant, registry.Job, error) {
	t, err := m.cfg.Store.Tenant(ctx, tenant)
	if err != nil {
		return t, registry.Job{}, err
	}
	job, err := m.cfg.Store.RunningJob(ctx, t.ID)
	if errors.Is(err, registry.ErrNotFound) || (err == nil && job.Kind != Kind) {
		return t, job, fmt.Errorf("tenant %s: %w", t.Slug, ErrNoMove)
	}
	if err != nil {
		return t, job, err
	}
	stale := m.cfg.StaleAfter
	if force {
		stale = -1
	}
	job, err = m.cfg.Store.TakeJob(ctx, job.ID, m.cfg.Owner, stale)
	if errors.Is(err, registry.ErrJobOwner) {
		return t, job, fmt.Errorf("tenant %s: %w: %w", t.Slug, ErrMoverAlive, err)
	}
	return t, job, err
}

// Abort stops the tenant's running move and rolls it back: the tenant is
// served by its source as before. A live mover is asked to stop (it sees
// the request with its next heartbeat) and Abort waits for it; a dead
// mover's move is rolled back here. After the flip it fails with
// ErrTooLateToAbort.
func (m *Mover) Abort(ctx context.Context, tenant string) error {
	t, err := m.cfg.Store.Tenant(ctx, tenant)
	if err != nil {
		return err
	}
	job, err := m.cfg.Store.RunningJob(ctx, t.ID)
	if errors.Is(err, registry.ErrNotFound) || (err == nil && job.Kind != Kind) {
		return fmt.Errorf("tenant %s: %w", t.Slug, ErrNoMove)
	}
	if err != nil {
		return err
	}
	if !Phase(job.Phase).before(PhaseFlip) {
		return fmt.Errorf("tenant %s (phase %s): %w", t.Slug, job.Phase, ErrTooLateToAbort)
	}
	if !job.Stale(time.Now(), m.cfg.StaleAfter) && job.Owner != m.cfg.Owner && job.Owner != "" {
		if err := m.cfg.Store.RequestCancel(ctx, job.ID); err != nil {
			return err
		}
		for {
			j, err := m.cfg.Store.Job(ctx, job.ID)
			if err != nil {
				return err
			}
			switch j.State {
			case registry.JobAborted, registry.JobFailed:
				m.cfg.Logger.Info("move: aborted", "tenant", t.ID.String(), "job", j.ID, "phase", j.Phase)
				return nil
			case registry.JobDone:
				return fmt.Errorf("tenant %s: %w", t.Slug, ErrTooLateToAbort)
			}
			if !Phase(j.Phase).before(PhaseFlip) {
				return fmt.Errorf("tenant %s (phase %s): %w", t.Slug, j.Phase, ErrTooLateToAbort)
			}
			if j.Stale(time.Now(), m.cfg.StaleAfter) {
				break // the mover died meanwhile: roll back here
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	job, err = m.cfg.Store.TakeJob(ctx, job.ID, m.cfg.Owner, m.cfg.StaleAfter)
	if err != nil {
		return fmt.Errorf("tenant %s: abort: %w", t.Slug, err)
	}
	st, err := stateOf(job)
	if err != nil {
		return err
	}
	r, err := m.newRun(ctx, job, t, st)
	if err != nil {
		return err
	}
	defer r.close()
	if Phase(job.Phase) == PhaseFlip && r.flipped(ctx) {
		m.cfg.Store.UpdateJob(ctx, job.ID, m.cfg.Owner, registry.JobUpdate{Params: st.params()})
		return fmt.Errorf("tenant %s: %w", t.Slug, ErrTooLateToAbort)
	}
	cerr := r.rollback(ctx)
	if errors.Is(cerr, errStillFenced) {
		r.release(context.WithoutCancel(ctx))
		return fmt.Errorf("tenant %s: abort: %w", t.Slug, cerr)
	}
	msg := "aborted by an operator"
	if cerr != nil {
		msg += "; cleanup incomplete: " + cerr.Error()
	}
	if err := m.cfg.Store.FinishJob(ctx, job.ID, m.cfg.Owner, registry.JobAborted, msg); err != nil {
		return err
	}
	m.cfg.Metrics.finished("aborted")
	m.cfg.Logger.Info("move: aborted and rolled back", "tenant", t.ID.String(), "job", job.ID, "phase", job.Phase, "cleanup_error", errText(cerr))
	return nil
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func (m *Mover) newRun(ctx context.Context, job registry.Job, t registry.Tenant, st *state) (*run, error) {
	r := &run{m: m, job: job, tenant: t, st: st, names: namesFor(t.ID), start: time.Now(),
		log: m.cfg.Logger.With("tenant", t.ID.String(), "slug", t.Slug, "job", job.ID)}
	r.phase.Store(Phase(job.Phase))
	var err error
	if r.src, err = m.connect(ctx, st.From.Shard); err != nil {
		return nil, err
	}
	if r.dst, err = m.connect(ctx, st.To.Shard); err != nil {
		r.src.close()
		return nil, err
	}
	return r, nil
}

func (r *run) close() {
	if r.verifySnap != nil {
		r.verifySnap.close()
	}
	unlockSchemas(r.srcLock)
	unlockSchemas(r.dstLock)
	r.src.close()
	r.dst.close()
}

// run drives a job from its phase to the end.
func (m *Mover) run(ctx context.Context, job registry.Job, t registry.Tenant, st *state, fresh bool) (*Result, error) {
	r, err := m.newRun(ctx, job, t, st)
	if err != nil {
		m.cfg.Store.FinishJob(context.WithoutCancel(ctx), job.ID, m.cfg.Owner, registry.JobFailed, err.Error())
		return nil, err
	}
	defer r.close()
	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// The heartbeat goes on through a rollback, so that an aborter does
	// not take a live mover's job for a dead one's.
	hbStop, hbDone := make(chan struct{}), make(chan struct{})
	go r.heartbeat(context.WithoutCancel(ctx), hbStop, cancel, hbDone)
	defer func() { close(hbStop); <-hbDone }()

	p := Phase(job.Phase)
	if !fresh {
		r.resumed = true
		p = r.resumePoint(runCtx, p)
		r.log.Info("move: resuming", "phase", p)
	}
	for ; p != PhaseDone; p = Phases[p.index()+1] {
		err := r.lockSchemas(runCtx, p)
		if err == nil {
			err = r.enter(runCtx, p)
		}
		if err == nil {
			err = r.do(runCtx, p)
		}
		if err != nil {
			return nil, r.fail(ctx, runCtx, p, err)
		}
	}
	done := string(PhaseDone)
	if err := m.cfg.Store.UpdateJob(ctx, job.ID, m.cfg.Owner, registry.JobUpdate{Phase: &done, Params: st.params()}); err != nil {
		return nil, err
	}
	if err := m.cfg.Store.FinishJob(ctx, job.ID, m.cfg.Owner, registry.JobDone, st.VerifyNote); err != nil {
		return nil, err
	}
	m.cfg.Metrics.finished("done")
	res := &Result{Tenant: t.ID, Job: job.ID, From: st.From, To: st.To, Window: st.WindowNanos, Copy: st.CopyNanos,
		Bytes: st.Bytes, Rows: st.Rows, Tables: st.Tables, Verified: st.Verified, Retired: st.Retired, Duration: time.Since(r.start)}
	r.progress("done: %s moved %s/%s → %s/%s in %s (writes fenced %s)\n", t.Slug, st.From.Shard, st.From.Schema,
		st.To.Shard, st.To.Schema, res.Duration.Round(time.Millisecond), res.Window.Round(time.Millisecond))
	r.log.Info("move: done", "from", st.From.Shard, "to", st.To.Shard, "window", res.Window.String(),
		"bytes", res.Bytes, "rows", res.Rows, "verified", res.Verified, "duration", res.Duration.String())
	return res, nil
}

// resumePoint is where a resumed job continues.
func (r *run) resumePoint(ctx context.Context, p Phase) Phase {
	switch p {
	case PhasePrepare, PhaseCopy:
		return PhasePrepare // the copy starts over (prepare removes what the last one left)
	case PhaseCatchup:
		if ok, _ := r.subscriptionReady(ctx); ok && len(r.st.Deferred) == 0 {
			return PhaseCatchup
		}
		return PhasePrepare
	case PhaseFlip:
		if r.flipped(ctx) {
			return PhaseVerify
		}
		return PhaseSync // still fenced: catch up again, for a verification snapshot
	}
	return p
}

// enter records that the job enters phase p.
func (r *run) enter(ctx context.Context, p Phase) error {
	r.phase.Store(p)
	ph := string(p)
	if err := r.m.cfg.Store.UpdateJob(ctx, r.job.ID, r.m.cfg.Owner, registry.JobUpdate{Phase: &ph, Params: r.st.params()}); err != nil {
		return err
	}
	r.log.Info("move: phase", "phase", ph)
	r.progress("%s: %s\n", r.tenant.Slug, p)
	if h := r.m.cfg.OnPhase; h != nil {
		return h(ctx, r.tenant.ID, p)
	}
	return nil
}

// save records the job's params.
func (r *run) save(ctx context.Context) error {
	return r.m.cfg.Store.UpdateJob(ctx, r.job.ID, r.m.cfg.Owner, registry.JobUpdate{Params: r.st.params()})
}

func (r *run) do(ctx context.Context, p Phase) error {
	start := time.Now()
	var err error
	switch p {
	case PhasePrepare:
		err = r.prepare(ctx)
	case PhaseCopy:
		err = r.copy(ctx)
	case PhaseCatchup:
		err = r.catchup(ctx)
	case PhaseFence:
		err = r.fence(ctx)
	case PhaseSync:
		err = r.sync(ctx)
	case PhaseFlip:
		err = r.flip(ctx)
	case PhaseVerify:
		err = r.verify(ctx)
	case PhaseCleanup:
		err = r.cleanup(ctx)
	}
	if err == nil {
		r.m.cfg.Metrics.phase(p, time.Since(start))
		r.log.Info("move: phase done", "phase", string(p), "duration", time.Since(start).String())
	}
	return err
}

// fail handles a phase's error: before the flip it rolls back.
func (r *run) fail(ctx, runCtx context.Context, p Phase, err error) error {
	if cause := context.Cause(runCtx); cause != nil && runCtx.Err() != nil && ctx.Err() == nil && !errors.Is(err, cause) {
		err = fmt.Errorf("%w (%v)", cause, err)
	}
	bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	perr := &PhaseError{Tenant: r.tenant.Slug, Phase: p, Err: err}
	if errors.Is(err, registry.ErrJobOwner) {
		r.log.Warn("move: lost the job to another mover; stopping", "phase", p, "error", err.Error())
		return perr // someone else runs it now
	}
	if !p.before(PhaseFlip) && (p != PhaseFlip || r.flipped(bg)) {
		// Served by the target: hand the job over for a resume.
		r.log.Error("move: failed after the flip; resume it", "phase", p, "error", err.Error())
		r.handOver(bg)
		return perr
	}
	perr.RolledBack = true
	perr.Cleanup = r.rollback(bg)
	if errors.Is(perr.Cleanup, errStillFenced) {
		r.log.Error("move: failed and could not unfence the source; abort it when the source answers", "phase", p, "error", err.Error(), "cleanup_error", perr.Cleanup.Error())
		r.handOver(bg)
		return perr
	}
	final := registry.JobFailed
	if errors.Is(err, ErrAborted) {
		final = registry.JobAborted
	}
	msg := err.Error()
	if perr.Cleanup != nil {
		msg += "; cleanup incomplete: " + perr.Cleanup.Error()
	}
	if ferr := r.m.cfg.Store.FinishJob(bg, r.job.ID, r.m.cfg.Owner, final, msg); ferr != nil {
		r.log.Error("move: cannot record the failure", "error", ferr.Error())
	}
	r.m.cfg.Metrics.finished(string(final))
	r.log.Warn("move: rolled back", "phase", p, "error", err.Error(), "cleanup_error", errText(perr.Cleanup))
	r.progress("%s: rolled back in phase %s: %v\n", r.tenant.Slug, p, err)
	return perr
}

// handOver leaves the failed job running, its state saved and without an
// owner, for a resume (after the flip) or an abort (a rollback that could
// not unfence) to take at once.
func (r *run) handOver(ctx context.Context) {
	r.m.cfg.Store.UpdateJob(ctx, r.job.ID, r.m.cfg.Owner, registry.JobUpdate{Params: r.st.params()})
	r.release(ctx)
	r.m.cfg.Metrics.finished("failed")
}

// release gives the job up (no owner), so that a resume may take it at once.
func (r *run) release(ctx context.Context) {
	r.m.cfg.Store.TakeJob(ctx, r.job.ID, "", -1)
}

// heartbeat renews the job's heartbeat and cancels the run on an abort
// request (before the flip) or when the job was taken over.
func (r *run) heartbeat(ctx context.Context, stop <-chan struct{}, cancel context.CancelCauseFunc, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(r.m.cfg.HeartbeatInterval)
	defer t.Stop()
	cancelled := false
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		hctx, hcancel := context.WithTimeout(ctx, max(r.m.cfg.HeartbeatInterval, time.Second))
		j, err := r.m.cfg.Store.Heartbeat(hctx, r.job.ID, r.m.cfg.Owner)
		hcancel()
		switch {
		case errors.Is(err, registry.ErrJobOwner):
			cancel(err)
			return
		case err != nil:
			r.log.Warn("move: heartbeat failed", "error", err.Error())
		case j.CancelRequested && !cancelled && r.phase.Load().(Phase).before(PhaseFlip):
			r.log.Info("move: abort requested", "phase", r.phase.Load())
			cancel(ErrAborted)
			cancelled = true
		}
	}
}

func (r *run) progress(format string, args ...any) {
	if w := r.m.cfg.Progress; w != nil {
		fmt.Fprintf(w, "\r\033[K"+format, args...)
	}
}

// connect opens a small pool on a shard as the DSN's own user, which must
// be allowed to create publications, replication slots and subscriptions
// (a superuser on PostgreSQL 15).
// lockSchemas takes, before phase p, the per-schema advisory lock that
// migrate's Apply, the fleet runner, provisioning and offboarding take, on a
// connection held until the move ends: the source schema from the start,
// the target's once prepare has created it (Apply takes the same lock from
// another session). Migrations of those schemas then wait, time out and
// are retried by the fleet runner after the move. They must: logical
// replication does not carry DDL, so a column added on one side only breaks
// the subscription or drops its values, and migrate reconciles grants,
// which would give back the writes the fence revokes.
func (r *run) lockSchemas(ctx context.Context, p Phase) error {
	if r.srcLock == nil {
		c, err := lockSchemas(ctx, r.src, r.st.From.Schema)
		if err != nil {
			return err
		}
		r.srcLock = c
	}
	if r.dstLock == nil && PhasePrepare.before(p) {
		names := []string{r.st.To.Schema}
		if r.st.Staging != "" && r.st.Staging != r.st.To.Schema {
			names = append(names, r.st.Staging)
		}
		c, err := lockSchemas(ctx, r.dst, names...)
		if err != nil {
			return err
		}
		r.dstLock = c
	}
	return nil
}

// lockSchemas takes the session-level advisory lock of each schema on a
// connection of c, which it returns (release it with unlockSchemas).
func lockSchemas(ctx context.Context, c *shardConn, schemas ...string) (*pgxpool.Conn, error) {
	conn, err := c.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("shard %s: %w", c.shard.Name, err)
	}
	for _, s := range schemas {
		if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock(hashtext('tenantry:' || $1))", s); err != nil {
			conn.Release()
			return nil, fmt.Errorf("shard %s: lock schema %s against migrations: %w", c.shard.Name, s, err)
		}
	}
	return conn, nil
}

func unlockSchemas(conn *pgxpool.Conn) {
	if conn == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_unlock_all()"); err != nil {
		// The session is gone or unusable: its locks went with it.
		conn.Conn().Close(ctx)
	}
	conn.Release()
}

func (m *Mover) connect(ctx context.Context, shard string) (*shardConn, error) {
	sh, err := m.cfg.Store.Shard(ctx, shard)
	if err != nil {
		return nil, err
	}
	cfg, err := pgxpool.ParseConfig(sh.DSN)
	if err != nil {
		return nil, fmt.Errorf("move: shard %s: %w", shard, err)
	}
	cfg.MaxConns = maxWorkers + 2 // one holds the schema locks, one reads progress
	cfg.MinConns = 0
	cfg.ConnConfig.RuntimeParams["application_name"] = "tenantry-move"
	cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("move: shard %s: %w", shard, err)
	}
	return &shardConn{shard: sh, pool: pool}, nil
}
