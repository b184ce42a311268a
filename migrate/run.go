package migrate

import (
	"cmp"
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Outcomes of a target in a run.
const (
	OutcomeApplied  = "applied"    // migrated, ledger row written with the DDL
	OutcomeUpToDate = "up_to_date" // already at the version, not touched
	OutcomeFailed   = "failed"     // not migrated; the error is in the report (and the ledger when the shard was reachable)
	OutcomeSkipped  = "skipped"    // not attempted: the run halted first
	OutcomeDrifted  = "drifted"    // differs from the version in ways the run cannot repair
)

var (
	// ErrHalted is wrapped by a run's error when it stopped before every
	// target was attempted: the canary batch failed, the failure budget was
	// exceeded, or the context ended.
	ErrHalted = errors.New("migrate: run halted")
	// ErrFailed is wrapped by a run's error when some targets failed.
	ErrFailed = errors.New("migrate: some schemas failed")
	// ErrShardUnavailable is wrapped by the error of targets on a shard
	// that could not be reached: they were not attempted, or the
	// connection broke during their migration.
	ErrShardUnavailable = errors.New("migrate: shard unavailable")
	// ErrNoPlan is wrapped by FleetPlan.Err when a group of schemas has no
	// plan (Group.Error): applying the plan would fail its members.
	ErrNoPlan = errors.New("migrate: no plan")
)

// Progress is reported after every target's outcome.
type Progress struct {
	Target  Target
	Outcome string
	Err     error
	// Attempt is the number of attempts the target took.
	Attempt int
	// Shard is the counts of the target's shard, Total of the run.
	Shard, Total Counts
	Elapsed      time.Duration
}

// Counts are a run's counters.
type Counts struct {
	Targets  int `json:"targets"`
	UpToDate int `json:"up_to_date"`
	Applied  int `json:"applied"`
	Failed   int `json:"failed"`
	Skipped  int `json:"skipped"`
	Drifted  int `json:"drifted"`
	Retries  int `json:"retries"`
}

// Done is the number of targets with an outcome.
func (c Counts) Done() int { return c.UpToDate + c.Applied + c.Failed + c.Skipped + c.Drifted }

// Report is the outcome of a run.
type Report struct {
	RunID   string        `json:"run_id"`
	Mode    string        `json:"mode"`
	Version string        `json:"version"`
	Started time.Time     `json:"started"`
	Elapsed time.Duration `json:"elapsed_ns"`
	// Phases are the durations of planning, applying and verifying.
	Phases []Phase       `json:"phases"`
	Total  Counts        `json:"total"`
	Shards []ShardReport `json:"shards"`
	Groups int           `json:"groups"`
	Failed []Failure     `json:"failed,omitempty"`
	Drift  []Drift       `json:"drifted,omitempty"`
	Halted string        `json:"halted,omitempty"`
	// Plan is the plan the run applied.
	Plan *FleetPlan `json:"-"`
}

// Phase is a named part of a run.
type Phase struct {
	Name    string        `json:"name"`
	Elapsed time.Duration `json:"elapsed_ns"`
}

// ShardReport is a shard's part of a run.
type ShardReport struct {
	Shard string `json:"shard"`
	Counts
	Elapsed time.Duration `json:"elapsed_ns"`
	Error   string        `json:"error,omitempty"`
}

// Failure is a target that failed, with its error.
type Failure struct {
	Target
	Error    string `json:"error"`
	Attempts int    `json:"attempts"`
	// Recorded is set when the failure is in the shard's ledger.
	Recorded bool `json:"recorded"`
}

// Err returns nil when every target is migrated or up to date, and else an
// error wrapping ErrHalted or ErrFailed that names the first failures. A
// shard the run could not read (down when the run started: none of its
// targets is known, so none is counted as failed) fails the run too, with
// an error wrapping ErrFailed and ErrShardUnavailable.
func (r *Report) Err() error {
	var down []string
	for _, s := range r.Shards {
		if s.Error != "" && s.Targets == 0 {
			down = append(down, fmt.Sprintf("%s: %s", s.Shard, s.Error))
		}
	}
	if len(down) > 0 && r.Halted == "" && len(r.Failed) == 0 {
		return fmt.Errorf("%w: %w: %d shard(s) not migrated, run again once they are up: %s",
			ErrFailed, ErrShardUnavailable, len(down), strings.Join(down, "; "))
	}
	var names []string
	for i, f := range r.Failed {
		if i == 5 {
			names = append(names, fmt.Sprintf("and %d more", len(r.Failed)-5))
			break
		}
		names = append(names, fmt.Sprintf("%s: %s", f.Target, f.Error))
	}
	switch {
	case r.Halted != "":
		return fmt.Errorf("%w: %s (%d failed, %d skipped)%s", ErrHalted, r.Halted, r.Total.Failed, r.Total.Skipped, prefixed("; ", names))
	case len(r.Failed) > 0:
		return fmt.Errorf("%w: %d of %d: %s%s", ErrFailed, len(r.Failed), r.Total.Targets, strings.Join(names, "; "), prefixed("; shards not read: ", down))
	}
	return nil
}

func prefixed(p string, names []string) string {
	if len(names) == 0 {
		return ""
	}
	return p + strings.Join(names, "; ")
}

// WriteTable writes the per-shard summary table, then the failed and
// drifted targets.
func (r *Report) WriteTable(w io.Writer) error {
	ew := &errWriter{w: w}
	ew.printf("run %s: %s mode, version %s, %d targets in %v", r.RunID, r.Mode, r.Version, r.Total.Targets, r.Elapsed.Round(time.Millisecond))
	for _, p := range r.Phases {
		ew.printf(", %s %v", p.Name, p.Elapsed.Round(time.Millisecond))
	}
	ew.printf("\n")
	tw := newTable(ew, "SHARD", "TARGETS", "UP TO DATE", "APPLIED", "FAILED", "SKIPPED", "DRIFTED", "RETRIES", "APPLY TIME", "ERROR")
	for _, s := range r.Shards {
		tw.row(s.Shard, s.Targets, s.UpToDate, s.Applied, s.Failed, s.Skipped, s.Drifted, s.Retries, s.Elapsed.Round(time.Millisecond), s.Error)
	}
	t := r.Total
	tw.row("total", t.Targets, t.UpToDate, t.Applied, t.Failed, t.Skipped, t.Drifted, t.Retries, r.Elapsed.Round(time.Millisecond), "")
	tw.flush()
	if r.Halted != "" {
		ew.printf("HALTED: %s\n", r.Halted)
	}
	if len(r.Failed) > 0 {
		ew.printf("\nfailed:\n")
		for _, f := range r.Failed {
			rec := ""
			if !f.Recorded {
				rec = " (not in the ledger)"
			}
			ew.printf("  %s tenant=%s attempts=%d%s: %s\n", f.Target, orDash(f.Tenant), f.Attempts, rec, f.Error)
		}
	}
	for _, d := range r.Drift {
		ew.printf("\ndrifted %s (fingerprint %s):\n", d.Target, d.Fingerprint)
		for _, l := range d.Differences {
			ew.printf("  %s\n", l)
		}
	}
	return ew.err
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// Run plans and applies: Plan, then Apply.
func (f *Fleet) Run(ctx context.Context, opts RunOptions) (*Report, error) {
	p, err := f.Plan(ctx, opts)
	if err != nil {
		return nil, err
	}
	return f.Apply(ctx, p)
}

// job is one target's migration in a run.
type job struct {
	t         Target
	g         *Group
	st        *shardState
	from      string // ledger version before
	fromRun   string // run that wrote the ledger row before
	txDone    bool   // the transactional part of a concurrent-index migration committed
	attempts  int
	notBefore time.Time
	outcome   string
	err       error
	recorded  bool
	changed   bool // another run changed it meanwhile: verify it
	canary    bool
}

// run is the state of one Apply.
type run struct {
	f       *Fleet
	p       *FleetPlan
	opts    RunOptions
	log     *slog.Logger
	started time.Time

	mu       sync.Mutex
	total    Counts
	shards   map[string]*Counts
	failures []Failure
	drift    []Drift
	halted   string
	down     map[string]error         // shards found unreachable
	lastDone map[string]time.Duration // per shard: when its last outcome came
	connErrs map[string]int           // consecutive connection errors per shard
}

// Apply runs a plan: refuses destructive changes unless the plan's
// options allow them; records the version's fingerprints in each shard's
// ledger; migrates the groups' members on all shards in parallel,
// Concurrency at a time per shard, canary batch first, then batches; each
// member in one transaction (advisory lock, lock_timeout, the group's
// statements under a transaction-local search_path, the ledger row);
// retries lock timeouts with backoff; halts when the failure budget is
// exceeded; and finally verifies that every migrated schema has the
// fingerprint its plan promised, repairing (with a full inspection) any
// that does not.
func (f *Fleet) Apply(ctx context.Context, p *FleetPlan) (*Report, error) {
	if err := f.validate(); err != nil {
		return nil, err
	}
	r := &run{f: f, p: p, opts: p.opts, log: f.logger().With("run", p.RunID), started: time.Now(),
		shards: make(map[string]*Counts), down: make(map[string]error), connErrs: make(map[string]int), lastDone: make(map[string]time.Duration)}
	if len(p.Destructive) > 0 && !r.opts.AllowDestructive {
		var members int
		var rep string
		for _, g := range p.Groups {
			if len(g.Destructive) > 0 {
				members += len(g.Members)
				if rep == "" {
					rep = g.Representative.Schema
				}
			}
		}
		return nil, &DestructiveError{Schema: rep, Schemas: members, Changes: p.Destructive}
	}
	for name, st := range p.shards {
		c := &Counts{Targets: len(st.targets)}
		r.shards[name] = c
		r.total.Targets += c.Targets
	}
	for _, t := range p.upToDate {
		r.shards[t.Shard].UpToDate++
		r.total.UpToDate++
		f.Metrics.outcome(t.Shard, OutcomeUpToDate)
	}
	for _, d := range p.Drifted {
		r.shards[d.Shard].Drifted++
		r.total.Drifted++
		r.drift = append(r.drift, d)
		f.Metrics.outcome(d.Shard, OutcomeDrifted)
	}
	r.recordKnown(ctx)

	var jobs []*job
	for _, g := range p.Groups {
		for _, m := range g.Members {
			st := p.shards[m.Shard]
			jobs = append(jobs, &job{t: m, g: g, st: st, from: st.state[m.Schema].version, fromRun: st.state[m.Schema].run})
		}
	}
	for name, st := range p.shards {
		if st.err != nil {
			r.down[name] = st.err
			for _, t := range st.targets {
				jobs = append(jobs, &job{t: t, st: st})
			}
		}
	}
	applyStart := time.Now()
	waves := r.waves(jobs)
	r.log.Info("applying", "version", p.Version, "targets", r.total.Targets, "up_to_date", r.total.UpToDate,
		"to_migrate", len(jobs), "groups", len(p.Groups), "batches", len(waves))
	for i, w := range waves {
		if r.isHalted() || ctx.Err() != nil {
			r.skip(w, r.haltReason(ctx))
			continue
		}
		r.wave(ctx, w)
		if i == 0 && len(w) > 0 && w[0].canary {
			failed := 0
			for _, j := range w {
				if j.outcome != OutcomeApplied {
					failed++
				}
			}
			if failed > 0 {
				r.halt(fmt.Sprintf("canary batch failed: %d of %d schemas", failed, len(w)))
			}
		}
	}
	if ctx.Err() != nil {
		r.halt(ctx.Err().Error()) // no-op when already halted
	}
	applyElapsed := time.Since(applyStart)

	verifyStart := time.Now()
	if ctx.Err() == nil {
		r.verify(ctx, jobs)
	}
	for _, j := range jobs {
		if j.g != nil && len(j.g.Drift) > 0 && j.outcome == OutcomeApplied {
			r.markDrift(j, Drift{Target: j.t, Fingerprint: j.g.Expect, Version: p.Version, Differences: j.g.Drift})
		}
	}
	verifyElapsed := time.Since(verifyStart)

	rep := r.report(jobs)
	rep.Phases = []Phase{{"plan", p.Duration}, {"apply", applyElapsed}, {"verify", verifyElapsed}}
	rep.Elapsed = p.Duration + time.Since(r.started)
	rep.Started = p.started
	r.recordRun(ctx, rep)
	f.Metrics.run(rep)
	r.log.Info("run finished", "applied", rep.Total.Applied, "failed", rep.Total.Failed, "up_to_date", rep.Total.UpToDate,
		"skipped", rep.Total.Skipped, "drifted", rep.Total.Drifted, "elapsed", rep.Elapsed.Round(time.Millisecond), "halted", rep.Halted)
	return rep, nil
}

// errGone is a target whose schema no longer exists when verify comes to
// repair it: offboarded, moved or renamed during the run.
var errGone = errors.New("the schema no longer exists (offboarded, moved or renamed during the run)")

// recordKnown records, on every reachable shard, the desired state's
// fingerprint and description and the fingerprints the groups' plans lead
// to: all are states of the version, whether or not this run gets to
// apply them.
func (r *run) recordKnown(ctx context.Context) {
	var expects []string
	for _, g := range r.p.Groups {
		if g.Error == "" && g.Expect != "" && len(g.Drift) == 0 {
			expects = append(expects, g.Expect)
		}
	}
	var wg sync.WaitGroup
	for name, st := range r.p.shards {
		if st.err != nil {
			continue
		}
		wg.Go(func() {
			mode := r.p.Mode
			var err error
			if st.desired != "" && st.fresh {
				err = recordVersion(ctx, st.shard.DB, r.f.roles(), mode, r.p.Version, st.desired, strings.Join(st.desc, "\n"), "")
			}
			for _, s := range r.p.steps {
				if err == nil {
					err = recordVersion(ctx, st.shard.DB, r.f.roles(), mode, s.version, "", "", s.hash)
				}
			}
			if err == nil {
				err = recordFingerprints(ctx, st.shard.DB, r.f.roles(), r.p.Version, append(slices.Clone(expects), st.recorded...))
			}
			if err != nil {
				r.log.Warn("could not record the version's fingerprints", "shard", name, "err", err)
			}
		})
	}
	wg.Wait()
}

// waves splits the jobs into the canary batch and the batches, each
// interleaving the shards.
func (r *run) waves(jobs []*job) [][]*job {
	slices.SortFunc(jobs, func(a, b *job) int {
		return cmp.Or(cmp.Compare(a.t.Shard, b.t.Shard), cmp.Compare(a.t.Schema, b.t.Schema))
	})
	jobs = interleave(jobs)
	var waves [][]*job
	var canary, rest []*job
	switch {
	case len(r.opts.CanarySchemas) > 0:
		for _, j := range jobs {
			if slices.Contains(r.opts.CanarySchemas, j.t.Schema) || slices.Contains(r.opts.CanarySchemas, j.t.String()) {
				canary = append(canary, j)
			} else {
				rest = append(rest, j)
			}
		}
	case r.opts.Canary > 0:
		n := min(r.opts.Canary, len(jobs))
		canary, rest = jobs[:n], jobs[n:]
	default:
		rest = jobs
	}
	if len(canary) > 0 {
		for _, j := range canary {
			j.canary = true
		}
		waves = append(waves, canary)
	}
	size := r.opts.BatchSize
	if size <= 0 {
		size = len(rest)
	}
	for len(rest) > 0 {
		n := min(size, len(rest))
		waves = append(waves, rest[:n])
		rest = rest[n:]
	}
	return waves
}

// interleave orders jobs round-robin over their shards (they come sorted
// by shard).
func interleave(jobs []*job) []*job {
	var byShard [][]*job
	for _, j := range jobs {
		if n := len(byShard); n == 0 || byShard[n-1][0].t.Shard != j.t.Shard {
			byShard = append(byShard, nil)
		}
		byShard[len(byShard)-1] = append(byShard[len(byShard)-1], j)
	}
	out := make([]*job, 0, len(jobs))
	for i := 0; len(out) < len(jobs); i++ {
		for _, s := range byShard {
			if i < len(s) {
				out = append(out, s[i])
			}
		}
	}
	return out
}

// queue is a shard's jobs of one wave.
type queue struct {
	mu       sync.Mutex
	pending  []*job
	delayed  []*job
	inflight int
}

// next returns a job to run, or how long to wait for one, or done.
func (q *queue) next() (j *job, wait time.Duration, done bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := time.Now()
	for i, d := range q.delayed {
		if !d.notBefore.After(now) {
			q.delayed = slices.Delete(q.delayed, i, i+1)
			q.inflight++
			return d, 0, false
		}
	}
	if len(q.pending) > 0 {
		j = q.pending[0]
		q.pending = q.pending[1:]
		q.inflight++
		return j, 0, false
	}
	if len(q.delayed) == 0 && q.inflight == 0 {
		return nil, 0, true
	}
	wait = 20 * time.Millisecond
	for _, d := range q.delayed {
		wait = min(wait, d.notBefore.Sub(now))
	}
	return nil, max(wait, time.Millisecond), false
}

func (q *queue) finish(j *job, retry bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.inflight--
	if retry {
		q.delayed = append(q.delayed, j)
	}
}

// drain takes every job not yet started.
func (q *queue) drain() []*job {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := append(q.pending, q.delayed...)
	q.pending, q.delayed = nil, nil
	return out
}

// wave runs jobs on all shards in parallel, Concurrency at a time per
// shard, and returns when every job has an outcome.
func (r *run) wave(ctx context.Context, jobs []*job) {
	queues := make(map[string]*queue)
	for _, j := range jobs {
		q := queues[j.t.Shard]
		if q == nil {
			q = &queue{}
			queues[j.t.Shard] = q
		}
		q.pending = append(q.pending, j)
	}
	var wg sync.WaitGroup
	for _, q := range queues {
		for range min(r.opts.Concurrency, len(q.pending)) {
			wg.Go(func() { r.worker(ctx, q) })
		}
	}
	wg.Wait()
}

func (r *run) worker(ctx context.Context, q *queue) {
	for {
		if r.isHalted() || ctx.Err() != nil {
			r.skip(q.drain(), r.haltReason(ctx))
			// Wait for jobs in flight that may still ask for a retry.
			j, wait, done := q.next()
			if done {
				return
			}
			if j != nil {
				q.finish(j, false)
				r.skip([]*job{j}, r.haltReason(ctx))
				continue
			}
			time.Sleep(wait)
			continue
		}
		j, wait, done := q.next()
		if done {
			return
		}
		if j == nil {
			time.Sleep(wait)
			continue
		}
		retry := r.execute(ctx, j)
		q.finish(j, retry)
	}
}

// execute runs one attempt of a job and records its outcome unless it is
// to be retried (then it returns true, with notBefore set).
func (r *run) execute(ctx context.Context, j *job) (retry bool) {
	shard := j.t.Shard
	if err := r.shardDown(shard); err != nil {
		r.finish(j, OutcomeFailed, fmt.Errorf("%w: %s: %w", ErrShardUnavailable, shard, err))
		return false
	}
	if j.g != nil && j.g.Error != "" {
		r.finish(j, OutcomeFailed, errors.New(j.g.Error))
		return false
	}
	j.attempts++
	start := time.Now()
	err := r.attempt(ctx, j)
	elapsed := time.Since(start)
	switch {
	case err == nil:
		r.connOK(shard)
		r.f.Metrics.duration(shard, OutcomeApplied, elapsed)
		r.finish(j, OutcomeApplied, nil)
		return false
	case ctx.Err() != nil:
		r.finish(j, OutcomeSkipped, ctx.Err())
		return false
	case isConnError(err):
		r.connFailed(shard, err)
		r.f.Metrics.duration(shard, OutcomeFailed, elapsed)
		r.finish(j, OutcomeFailed, fmt.Errorf("%w: %s: %w", ErrShardUnavailable, shard, err))
		return false
	}
	r.connOK(shard)
	code := pgCode(err)
	switch {
	case code == sqlstateChanged:
		// Another run migrated it since planning: verify decides.
		j.changed = true
		r.log.Warn("changed by another run; will verify", "target", j.t.String(), "err", err)
		r.finish(j, OutcomeUpToDate, nil)
		return false
	case (code == "55P03" || code == "40P01" || code == "40001") && j.attempts <= r.opts.Retries:
		backoff := r.opts.RetryBackoff << (j.attempts - 1)
		backoff = min(backoff, maxRetryBackoff)
		backoff = backoff/2 + rand.N(backoff/2+1) // jitter
		j.notBefore = time.Now().Add(backoff)
		r.mu.Lock()
		r.total.Retries++
		r.shards[shard].Retries++
		r.mu.Unlock()
		r.f.Metrics.retry(shard, code)
		r.log.Info("retrying after lock timeout", "target", j.t.String(), "attempt", j.attempts, "backoff", backoff, "err", err)
		return true
	}
	if code == "55P03" {
		err = fmt.Errorf("%w: %w", ErrLockTimeout, err)
	}
	r.f.Metrics.duration(shard, OutcomeFailed, elapsed)
	rec := r.record(j)
	if lerr := recordFailure(ctx, j.st.shard.DB, rec, r.f.roles(), err); lerr == nil {
		j.recorded = true
	} else {
		r.log.Warn("could not record the failure in the ledger", "target", j.t.String(), "err", lerr)
	}
	r.finish(j, OutcomeFailed, err)
	return false
}

// record is the ledger record of a job's migration.
func (r *run) record(j *job) ledgerRecord {
	rec := ledgerRecord{
		runID: r.p.RunID, schema: j.t.Schema, tenant: j.t.Tenant, mode: r.p.Mode, version: r.p.Version,
		from: j.from, attempts: j.attempts, started: time.Now(),
	}
	if j.g != nil {
		rec.fingerprint, rec.planHash = j.g.Expect, j.g.PlanHash
		rec.statements = len(j.g.tx) + len(j.g.conc)
		if j.g.create {
			rec.statements++
		}
	}
	return rec
}

// attempt migrates one member: the whole transaction in one round trip
// (a pipeline of statements before one Sync runs as one implicit
// transaction; any error rolls all of it back).
func (r *run) attempt(ctx context.Context, j *job) error {
	if r.p.Mode == ModeVersioned {
		return r.attemptVersioned(ctx, j)
	}
	g, db := j.g, j.st.shard.DB
	rec := r.record(j)
	if len(g.conc) == 0 {
		return execPipeline(ctx, db, r.script(j, g.create, g.tx, rec.appliedSQL()))
	}
	// Concurrent indexes: the transactional part first, without the
	// ledger row; then each index, outside any transaction; then the
	// ledger row, once every index is valid. A crash in between leaves a
	// schema whose fingerprint is neither the old nor the new one: the next
	// run plans it as a group of its own and finishes the work (IF NOT
	// EXISTS, invalid leftovers dropped first).
	if (g.create || len(g.tx) > 0) && !j.txDone {
		if err := execPipeline(ctx, db, r.script(j, g.create, g.tx, nil)); err != nil {
			return err
		}
		j.txDone = true // a retry (an index build's lock timeout) resumes at the indexes
	}
	for _, c := range g.conc {
		if err := r.buildIndex(ctx, db, j.t.Schema, c); err != nil {
			return err
		}
	}
	var checks []string
	for _, c := range g.conc {
		checks = append(checks, fmt.Sprintf("SELECT tenantry.expect_valid_index(%s, %s)", literal(j.t.Schema), literal(c.name)))
	}
	return execPipeline(ctx, db, r.script(j, false, checks, rec.appliedSQL()))
}

// script is one member's transaction: owner role, lock_timeout (set
// first, so it bounds the advisory lock wait too), advisory lock, ledger
// version check, search_path of exactly the schema, the statements, the
// ledger rows.
func (r *run) script(j *job, create bool, stmts []string, ledger []string) []string {
	schema := j.t.Schema
	out := []string{
		fmt.Sprintf("SELECT set_config('role', %s, true), set_config('lock_timeout', %s, true)",
			literal(r.f.roles().Owner), literal(lockTimeoutSetting(r.opts.LockTimeout))),
		fmt.Sprintf("SELECT pg_advisory_xact_lock(hashtext('tenantry:' || %s))", literal(schema)),
		expectStateSQL(schema, ledgerState{j.from, j.fromRun}),
		fmt.Sprintf("SELECT set_config('search_path', %s, true)", literal(ident(schema))),
	}
	if create {
		out = append(out, fmt.Sprintf("CREATE SCHEMA IF NOT EXISTS %s AUTHORIZATION %s", ident(schema), ident(r.f.roles().Owner)))
	}
	for _, s := range stmts {
		out = append(out, render(s, schema))
	}
	return append(out, ledger...)
}

// execPipeline sends the statements in one round trip: each parsed on its
// own (so that expressions stored in the catalog record the same source
// positions as when Apply runs them one by one), all before one Sync, so
// they run as one implicit transaction.
func execPipeline(ctx context.Context, db *sql.DB, stmts []string) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Raw(func(dc any) error {
		pc, ok := dc.(interface{ Conn() *pgx.Conn })
		if !ok {
			return fmt.Errorf("migrate: shard connections must use pgx's database/sql driver (github.com/jackc/pgx/v5/stdlib), not %T", dc)
		}
		return pipeline(ctx, pc.Conn(), stmts)
	})
}

// buildIndex builds one index with CREATE INDEX CONCURRENTLY IF NOT
// EXISTS, after dropping an invalid leftover of an interrupted build.
func (r *run) buildIndex(ctx context.Context, db *sql.DB, schema string, c concurrentIdx) (err error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	defer func() {
		if _, rerr := conn.ExecContext(context.Background(), "RESET lock_timeout; RESET ROLE"); rerr != nil && err == nil {
			err = rerr
		}
	}()
	if _, err := conn.ExecContext(ctx, fmt.Sprintf("SET ROLE %s; SET lock_timeout = %s", ident(r.f.roles().Owner), literal(lockTimeoutSetting(r.opts.LockTimeout)))); err != nil {
		return err
	}
	var invalid bool
	if err := conn.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
		JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2 AND NOT i.indisvalid)`,
		schema, c.name).Scan(&invalid); err != nil {
		return err
	}
	if invalid {
		r.log.Info("dropping an invalid index left by an interrupted build", "schema", schema, "index", c.name)
		if _, err := conn.ExecContext(ctx, "DROP INDEX CONCURRENTLY IF EXISTS "+ident(schema)+"."+ident(c.name)); err != nil {
			return err
		}
	}
	_, err = conn.ExecContext(ctx, render(c.create, schema))
	return err
}

// finish records a job's outcome.
func (r *run) finish(j *job, outcome string, err error) {
	r.mu.Lock()
	r.countLocked(j, outcome, err)
	r.lastDone[j.t.Shard] = time.Since(r.started)
	pr := Progress{Target: j.t, Outcome: outcome, Err: err, Attempt: j.attempts, Shard: *r.shards[j.t.Shard], Total: r.total, Elapsed: time.Since(r.started)}
	halted := r.halted
	if r.f.OnProgress != nil {
		r.f.OnProgress(pr) // under r.mu: one call at a time
	}
	r.mu.Unlock()
	r.f.Metrics.outcome(j.t.Shard, outcome)
	switch outcome {
	case OutcomeFailed:
		r.log.Warn("schema failed", "target", j.t.String(), "tenant", j.t.Tenant, "attempts", j.attempts, "err", err)
		if halted != "" {
			r.log.Error("halting", "reason", halted)
		}
	case OutcomeApplied:
		r.log.Debug("schema migrated", "target", j.t.String(), "attempts", j.attempts)
	}
}

// reclassify changes the outcome of a finished job (after verification).
func (r *run) reclassify(j *job, outcome string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.f.Metrics.repair(j.t.Shard, outcome)
	r.countLocked(j, j.outcome, nil, -1)
	r.countLocked(j, outcome, err)
}

// countLocked counts an outcome (delta -1 takes it back); r.mu is held.
func (r *run) countLocked(j *job, outcome string, err error, delta ...int) {
	d := 1
	if len(delta) > 0 {
		d = delta[0]
	}
	if d > 0 {
		j.outcome, j.err = outcome, err
	}
	sc := r.shards[j.t.Shard]
	switch outcome {
	case OutcomeApplied:
		sc.Applied += d
		r.total.Applied += d
	case OutcomeUpToDate:
		sc.UpToDate += d
		r.total.UpToDate += d
	case OutcomeFailed:
		sc.Failed += d
		r.total.Failed += d
		if b := r.opts.FailureBudget; d > 0 && b >= 0 && r.total.Failed > b && r.halted == "" {
			r.halted = fmt.Sprintf("failure budget exceeded: %d failed, budget %d", r.total.Failed, b)
		}
	case OutcomeSkipped:
		sc.Skipped += d
		r.total.Skipped += d
	case OutcomeDrifted:
		sc.Drifted += d
		r.total.Drifted += d
	}
}

func (r *run) skip(jobs []*job, reason string) {
	for _, j := range jobs {
		if j.outcome == "" {
			r.finish(j, OutcomeSkipped, errors.New(reason))
		}
	}
}

func (r *run) halt(reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.halted == "" {
		r.halted = reason
		r.log.Error("halting", "reason", reason)
	}
}

func (r *run) isHalted() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.halted != ""
}

func (r *run) haltReason(ctx context.Context) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.halted != "" {
		return "not attempted: " + r.halted
	}
	if err := ctx.Err(); err != nil {
		return "not attempted: " + err.Error()
	}
	return "not attempted"
}

// A shard is taken for down after this many connection errors in a row;
// its remaining targets then fail at once instead of each waiting for a
// connection.
const shardDownAfter = 3

func (r *run) connFailed(shard string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.connErrs[shard]++
	if r.connErrs[shard] >= shardDownAfter && r.down[shard] == nil {
		r.down[shard] = err
		r.log.Error("shard unavailable; failing its remaining targets", "shard", shard, "err", err)
	}
}

func (r *run) connOK(shard string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.connErrs[shard] = 0
}

func (r *run) shardDown(shard string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.down[shard]
}

// isConnError reports whether err means the connection or the server is
// gone, rather than the statement failing.
func isConnError(err error) bool {
	if err == nil {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return strings.HasPrefix(pgErr.Code, "08") || pgErr.Code == "57P01" || pgErr.Code == "57P02" || pgErr.Code == "57P03"
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	return errors.As(err, &ce) || errors.As(err, &ne) || errors.Is(err, driver.ErrBadConn) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || pgconn.SafeToRetry(err) ||
		strings.Contains(err.Error(), "conn closed") || strings.Contains(err.Error(), "connection reset") ||
		strings.Contains(err.Error(), "broken pipe") || strings.Contains(err.Error(), "unexpected EOF")
}

// verify fingerprints every migrated schema, one query per shard, and
// repairs those not at the fingerprint their plan promised (nor any other
// known for the version) with a full inspection and plan of their own.
func (r *run) verify(ctx context.Context, jobs []*job) {
	byShard := make(map[string][]*job)
	for _, j := range jobs {
		if j.outcome == OutcomeApplied || j.changed {
			byShard[j.t.Shard] = append(byShard[j.t.Shard], j)
		}
	}
	var wg sync.WaitGroup
	for shard, js := range byShard {
		wg.Go(func() {
			st := js[0].st
			start := time.Now()
			names := make([]string, len(js))
			for i, j := range js {
				names[i] = j.t.Schema
			}
			if len(names) > 500 {
				if analyzed, err := refreshCatalogStats(ctx, st.shard.DB); err != nil {
					r.log.Warn("could not refresh catalog statistics", "shard", shard, "err", err)
				} else if len(analyzed) > 0 {
					r.log.Info("analyzed stale catalogs", "shard", shard, "catalogs", analyzed, "duration", time.Since(start).Round(time.Millisecond))
				}
			}
			fps, err := Fingerprints(ctx, st.shard.DB, names, nil)
			if err != nil {
				r.log.Error("verify: cannot fingerprint", "shard", shard, "err", err)
				return
			}
			known, err := knownFingerprints(ctx, st.shard.DB)
			if err != nil {
				r.log.Error("verify: cannot read known fingerprints", "shard", shard, "err", err)
				return
			}
			var bad []*job
			// Groups without an expected fingerprint (versioned files run
			// outside a transaction, which planning could not try): their
			// members must agree; the most common fingerprint becomes known.
			unexpected := make(map[*Group]map[string]int)
			for _, j := range js {
				fp := fps[j.t.Schema]
				if j.g != nil && j.g.Expect == "" {
					if unexpected[j.g] == nil {
						unexpected[j.g] = make(map[string]int)
					}
					unexpected[j.g][fp]++
					continue
				}
				if (j.g != nil && fp == j.g.Expect) || slices.Contains(known[fp], r.p.Version) {
					continue
				}
				bad = append(bad, j)
			}
			for g, counts := range unexpected {
				var common string
				for fp, n := range counts {
					if n > counts[common] || (n == counts[common] && fp < common) {
						common = fp
					}
				}
				if err := recordFingerprints(ctx, st.shard.DB, r.f.roles(), r.p.Version, []string{common}); err != nil {
					r.log.Warn("could not record a fingerprint", "shard", shard, "err", err)
				}
				for _, j := range js {
					if j.g == g && fps[j.t.Schema] != common && !slices.Contains(known[fps[j.t.Schema]], r.p.Version) {
						bad = append(bad, j)
					}
				}
			}
			for _, j := range bad {
				r.log.Warn("verify: schema not at its expected fingerprint; repairing", "target", j.t.String(), "fingerprint", fps[j.t.Schema])
				r.repair(ctx, j)
			}
			r.f.Metrics.observePhase(shard, "verify", time.Since(start))
		})
	}
	wg.Wait()
}

// repair brings one schema to the version with a full inspection (the
// naive path), writing its ledger row in the same transaction.
func (r *run) repair(ctx context.Context, j *job) {
	if r.f.Desired == nil {
		r.markDrift(j, Drift{Target: j.t, Version: r.p.Version, Differences: []string{"after applying the files, the fingerprint differs from that of the other schemas at this version"}})
		return
	}
	err := func() error {
		db := j.st.shard.DB
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		if err := prologue(ctx, tx, j.t.Schema, r.f.roles(), r.opts.LockTimeout, true); err != nil {
			return err
		}
		// A schema that went away since planning (its tenant offboarded,
		// moved, or its spare claimed under another name) is not created
		// again: it is no longer a target.
		var exists bool
		if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = $1)`, j.t.Schema).Scan(&exists); err != nil {
			return err
		}
		if !exists {
			return errGone
		}
		var from sql.NullString
		if err := tx.QueryRowContext(ctx, `SELECT version FROM tenantry.schema_state WHERE schema_name = $1`, j.t.Schema).Scan(&from); err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		sp, err := r.f.Desired.reconcile(ctx, tx, j.t.Schema, r.f.roles(), reconcileOptions{allowDestructive: r.opts.AllowDestructive, schemaRef: ident(j.t.Schema)})
		if err != nil {
			return err
		}
		fp, err := fingerprintTx(ctx, tx, j.t.Schema)
		if err != nil {
			return err
		}
		desc, err := describeTx(ctx, tx, j.t.Schema)
		if err != nil {
			return err
		}
		if diff := diffLines(j.st.desc, desc[j.t.Schema]); len(diff) > 0 {
			r.markDrift(j, Drift{Target: j.t, Fingerprint: fp, Version: r.p.Version, Differences: diff})
		} else if err := recordFingerprints(ctx, db, r.f.roles(), r.p.Version, []string{fp}); err != nil {
			return err
		}
		if !sp.empty() {
			rec := r.record(j)
			rec.from, rec.fingerprint, rec.planHash = from.String, fp, ""
			rec.statements = len(sp.statements(j.t.Schema))
			for _, stmt := range rec.appliedSQL() {
				if _, err := tx.ExecContext(ctx, stmt); err != nil {
					return err
				}
			}
		}
		return tx.Commit()
	}()
	switch {
	case errors.Is(err, errGone):
		r.log.Info("the schema went away during the run; left alone", "target", j.t.String())
		r.reclassify(j, OutcomeSkipped, fmt.Errorf("%s: %w", j.t, errGone))
	case err != nil:
		r.reclassify(j, OutcomeFailed, fmt.Errorf("verify: %w", err))
	}
}

func (r *run) markDrift(j *job, d Drift) {
	r.reclassify(j, OutcomeDrifted, nil)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.drift = append(r.drift, d)
}

// report builds the run's report.
func (r *run) report(jobs []*job) *Report {
	r.mu.Lock()
	defer r.mu.Unlock()
	rep := &Report{RunID: r.p.RunID, Mode: r.p.Mode, Version: r.p.Version, Total: r.total, Halted: r.halted, Plan: r.p, Groups: len(r.p.Groups)}
	for _, name := range sortedKeys(r.shards) {
		sr := ShardReport{Shard: name, Counts: *r.shards[name]}
		if st := r.p.shards[name]; st != nil && st.err != nil {
			sr.Error = st.err.Error()
		} else if err := r.down[name]; err != nil {
			sr.Error = "unavailable: " + err.Error()
		}
		rep.Shards = append(rep.Shards, sr)
	}
	for _, j := range jobs {
		if j.outcome == OutcomeFailed {
			rep.Failed = append(rep.Failed, Failure{Target: j.t, Error: j.err.Error(), Attempts: j.attempts, Recorded: j.recorded})
		}
	}
	slices.SortFunc(rep.Failed, func(a, b Failure) int { return cmp.Compare(a.Target.String(), b.Target.String()) })
	rep.Drift = slices.Clone(r.drift)
	slices.SortFunc(rep.Drift, func(a, b Drift) int { return cmp.Compare(a.Target.String(), b.Target.String()) })
	// Time per shard: from the start of applying to its last outcome.
	for i := range rep.Shards {
		rep.Shards[i].Elapsed = r.lastDone[rep.Shards[i].Shard]
	}
	return rep
}

// recordRun writes the run's summary to each reachable shard's ledger.
func (r *run) recordRun(ctx context.Context, rep *Report) {
	for _, s := range rep.Shards {
		st := r.p.shards[s.Shard]
		if st == nil || st.err != nil || r.down[s.Shard] != nil {
			continue
		}
		_, err := st.shard.DB.ExecContext(ctx, `INSERT INTO tenantry.runs (run_id, mode, version, started_at, finished_at, targets, applied, failed, up_to_date, skipped, halted)
			VALUES ($1, $2, $3, $4, clock_timestamp(), $5, $6, $7, $8, $9, NULLIF($10, ''))
			ON CONFLICT (run_id) DO UPDATE SET finished_at = excluded.finished_at, applied = excluded.applied, failed = excluded.failed,
				up_to_date = excluded.up_to_date, skipped = excluded.skipped, halted = excluded.halted`,
			rep.RunID, rep.Mode, rep.Version, rep.Started, s.Targets, s.Applied, s.Failed, s.UpToDate, s.Skipped, rep.Halted)
		if err != nil {
			r.log.Warn("could not record the run", "shard", s.Shard, "err", err)
		}
	}
}
