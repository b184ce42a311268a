package registry

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tenantry/tenantry/ent"
	entjob "github.com/tenantry/tenantry/ent/job"
	entplacement "github.com/tenantry/tenantry/ent/placement"
	entshard "github.com/tenantry/tenantry/ent/shard"
	enttenant "github.com/tenantry/tenantry/ent/tenant"
	"github.com/tenantry/tenantry/tenancy"
)

// Errors of job operations.
var (
	// ErrJobRunning: the tenant has a running job already (one per tenant).
	// Wait for it, resume it if its runner died, or abort it.
	ErrJobRunning = errors.New("registry: the tenant has a running job: wait for it, resume it (its runner died if its heartbeat is old) or abort it")
	// ErrJobOwner: the job is run by someone else (or no longer running):
	// this runner lost it and must stop touching the tenant.
	ErrJobOwner = errors.New("registry: the job is not running under this owner any more: another runner took it over or it ended; stop")
)

// JobState is the state of a Job.
type JobState string

// Job states.
const (
	JobRunning JobState = "running"
	JobDone    JobState = "done"
	JobFailed  JobState = "failed"
	JobAborted JobState = "aborted"
)

// Job is the resumable record of a long operation on one tenant (a move, a
// backup, a restore): its phase, state, parameters, owner and heartbeat.
type Job struct {
	ID     int
	Kind   string
	Tenant tenancy.ID
	// Phase is the phase the job entered last; its kind defines them.
	Phase string
	State JobState
	// Params are the job's parameters and what its phases recorded for a
	// resume (kind-specific JSON object).
	Params map[string]any
	Error  string
	// CancelRequested: an operator asked the job to stop (RequestCancel);
	// its owner sees it with its next heartbeat.
	CancelRequested bool
	Owner           string
	Heartbeat       time.Time // zero: never
	CreatedAt       time.Time
	UpdatedAt       time.Time
	FinishedAt      time.Time // zero: not finished
}

// Stale reports whether a running job's owner has not sent a heartbeat for
// longer than after (it probably died) at time now.
func (j Job) Stale(now time.Time, after time.Duration) bool {
	return j.State == JobRunning && (j.Owner == "" || now.Sub(j.Heartbeat) > after)
}

func toJob(j *ent.Job) Job {
	out := Job{ID: j.ID, Kind: j.Kind, Tenant: j.TenantRef, Phase: j.Phase, State: JobState(j.State),
		Params: j.Params, Error: j.Error, CancelRequested: j.CancelRequested, Owner: j.Owner, CreatedAt: j.CreatedAt, UpdatedAt: j.UpdatedAt}
	if j.Heartbeat != nil {
		out.Heartbeat = *j.Heartbeat
	}
	if j.FinishedAt != nil {
		out.FinishedAt = *j.FinishedAt
	}
	if out.Params == nil {
		out.Params = map[string]any{}
	}
	return out
}

// StartJob records a new running job of kind for tenant, owned by owner.
// It fails with ErrJobRunning when the tenant has a running job already.
func (s *Store) StartJob(ctx context.Context, kind string, tenant tenancy.ID, owner string, phase string, params map[string]any) (Job, error) {
	now := time.Now()
	j, err := s.client.Job.Create().SetKind(kind).SetTenantRef(tenant).SetOwner(owner).SetHeartbeat(now).
		SetPhase(phase).SetParams(params).Save(ctx)
	if err != nil {
		if ent.IsConstraintError(err) {
			running, rerr := s.RunningJob(ctx, tenant)
			if rerr == nil {
				return Job{}, fmt.Errorf("registry: tenant %s: start %s job: %w (job %d, %s, phase %s, owner %q)", tenant, kind, ErrJobRunning, running.ID, running.Kind, running.Phase, running.Owner)
			}
		}
		return Job{}, wrap(err, "registry: tenant %s: start %s job", tenant, kind)
	}
	return toJob(j), nil
}

// Job returns a job by id.
func (s *Store) Job(ctx context.Context, id int) (Job, error) {
	j, err := s.client.Job.Get(ctx, id)
	if err != nil {
		return Job{}, wrap(err, "registry: job %d", id)
	}
	return toJob(j), nil
}

// RunningJob returns the tenant's running job, or ErrNotFound.
func (s *Store) RunningJob(ctx context.Context, tenant tenancy.ID) (Job, error) {
	j, err := s.client.Job.Query().Where(entjob.TenantRef(tenant), entjob.StateEQ(entjob.StateRunning)).Only(ctx)
	if err != nil {
		return Job{}, wrap(err, "registry: tenant %s: running job", tenant)
	}
	return toJob(j), nil
}

// JobFilter selects jobs in Jobs; zero fields select all.
type JobFilter struct {
	Kind   string
	Tenant tenancy.ID
	State  JobState
	Limit  int
}

// Jobs lists jobs, newest first.
func (s *Store) Jobs(ctx context.Context, f JobFilter) ([]Job, error) {
	q := s.client.Job.Query().Order(ent.Desc(entjob.FieldID))
	if f.Kind != "" {
		q.Where(entjob.Kind(f.Kind))
	}
	if !f.Tenant.IsZero() {
		q.Where(entjob.TenantRef(f.Tenant))
	}
	if f.State != "" {
		q.Where(entjob.StateEQ(entjob.State(f.State)))
	}
	if f.Limit > 0 {
		q.Limit(f.Limit)
	}
	js, err := q.All(ctx)
	if err != nil {
		return nil, wrap(err, "registry: jobs")
	}
	out := make([]Job, len(js))
	for i, j := range js {
		out[i] = toJob(j)
	}
	return out, nil
}

// JobUpdate changes a running job. Nil fields are left alone.
type JobUpdate struct {
	Phase  *string
	Params map[string]any // replaces the params when not nil
}

// UpdateJob records progress of a running job owned by owner and renews its
// heartbeat, in one statement. It fails with ErrJobOwner when owner no
// longer runs the job.
func (s *Store) UpdateJob(ctx context.Context, id int, owner string, u JobUpdate) error {
	q := s.client.Job.Update().Where(entjob.ID(id), entjob.Owner(owner), entjob.StateEQ(entjob.StateRunning)).
		SetHeartbeat(time.Now())
	if u.Phase != nil {
		q.SetPhase(*u.Phase)
	}
	if u.Params != nil {
		q.SetParams(u.Params)
	}
	n, err := q.Save(ctx)
	if err != nil {
		return wrap(err, "registry: job %d: update", id)
	}
	if n == 0 {
		return fmt.Errorf("registry: job %d (owner %q): %w", id, owner, ErrJobOwner)
	}
	return nil
}

// TakeJob makes owner the runner of a running job whose runner is owner
// already, or is gone: no owner, or no heartbeat for longer than staleAfter
// (staleAfter < 0 takes it whatever the heartbeat, for an operator who
// knows the runner is dead). It fails with ErrJobOwner otherwise.
func (s *Store) TakeJob(ctx context.Context, id int, owner string, staleAfter time.Duration) (Job, error) {
	q := s.client.Job.Update().Where(entjob.ID(id), entjob.StateEQ(entjob.StateRunning))
	if staleAfter >= 0 {
		q.Where(entjob.Or(entjob.Owner(owner), entjob.Owner(""), entjob.HeartbeatIsNil(),
			entjob.HeartbeatLT(time.Now().Add(-staleAfter))))
	}
	n, err := q.SetOwner(owner).SetHeartbeat(time.Now()).Save(ctx)
	if err != nil {
		return Job{}, wrap(err, "registry: job %d: take over", id)
	}
	if n == 0 {
		j, err := s.Job(ctx, id)
		if err != nil {
			return Job{}, err
		}
		return Job{}, fmt.Errorf("registry: job %d is %s, owner %q, last heartbeat %s ago: %w", id, j.State, j.Owner,
			time.Since(j.Heartbeat).Round(time.Millisecond), ErrJobOwner)
	}
	return s.Job(ctx, id)
}

// FinishJob ends a running job owned by owner with state (done, failed or
// aborted) and, for failures, the error text.
func (s *Store) FinishJob(ctx context.Context, id int, owner string, state JobState, errText string) error {
	if state == JobRunning || state == "" {
		return fmt.Errorf("registry: job %d: finish: %w state %q", id, ErrInvalid, state)
	}
	now := time.Now()
	n, err := s.client.Job.Update().Where(entjob.ID(id), entjob.Owner(owner), entjob.StateEQ(entjob.StateRunning)).
		SetState(entjob.State(state)).SetError(errText).SetFinishedAt(now).SetHeartbeat(now).Save(ctx)
	if err != nil {
		return wrap(err, "registry: job %d: finish", id)
	}
	if n == 0 {
		return fmt.Errorf("registry: job %d (owner %q): finish %s: %w", id, owner, state, ErrJobOwner)
	}
	return nil
}

// Cutover is the flip at the end of a move, in one transaction: the
// tenant's placement points at to, its state goes from Moving to then
// (Active, or ReadOnly for a tenant an operator had made read-only before
// the move), the epoch grows once and routers are notified. A dedicated
// placement also stops its shard from accepting other tenants. It fails
// with ErrTransition when the tenant is not Moving (e.g. an abort set it
// back).
func (s *Store) Cutover(ctx context.Context, id tenancy.ID, to Placement, then State) (Tenant, error) {
	if to.Mode == "" {
		to.Mode = ModeSchema
	}
	if then != Active && then != ReadOnly {
		return Tenant{}, fmt.Errorf("registry: tenant %s: %w: a move ends in state active or read_only, not %q", id, ErrInvalid, then)
	}
	if !to.Mode.valid() {
		return Tenant{}, fmt.Errorf("registry: tenant %s: %w mode %q", id, ErrInvalid, to.Mode)
	}
	err := s.inTx(ctx, func(tx *ent.Tx) error {
		shardID, err := tx.Shard.Query().Where(entshard.Name(to.Shard)).OnlyID(ctx)
		if err != nil {
			return wrap(err, "shard %q", to.Shard)
		}
		n, err := tx.Tenant.Update().Where(enttenant.ID(id), enttenant.StateEQ(enttenant.StateMoving)).
			SetState(enttenant.State(then)).Save(ctx)
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("%w: cutover of a tenant that is not moving", ErrTransition)
		}
		n, err = tx.Placement.Update().Where(entplacement.TenantRef(id)).
			SetShardID(shardID).SetSchema(to.Schema).SetMode(entplacement.Mode(to.Mode)).Save(ctx)
		if err != nil {
			return err
		}
		if n == 0 {
			return &ent.NotFoundError{}
		}
		if to.Mode == ModeDedicated {
			if err := tx.Shard.UpdateOneID(shardID).SetAccepting(false).Exec(ctx); err != nil {
				return err
			}
		}
		return bumpTenant(ctx, tx, id)
	})
	if err != nil {
		return Tenant{}, wrap(err, "registry: tenant %s: cutover to %s/%s", id, to.Shard, to.Schema)
	}
	return s.Tenant(ctx, id.String())
}

// Heartbeat renews a running job's heartbeat and returns the job, so that
// its owner sees a cancel request. It fails with ErrJobOwner when owner no
// longer runs the job.
func (s *Store) Heartbeat(ctx context.Context, id int, owner string) (Job, error) {
	if err := s.UpdateJob(ctx, id, owner, JobUpdate{}); err != nil {
		return Job{}, err
	}
	return s.Job(ctx, id)
}

// RequestCancel asks a running job to stop: its owner sees the request with
// its next heartbeat. It fails with ErrNotFound when the job is not running.
func (s *Store) RequestCancel(ctx context.Context, id int) error {
	n, err := s.client.Job.Update().Where(entjob.ID(id), entjob.StateEQ(entjob.StateRunning)).
		SetCancelRequested(true).Save(ctx)
	if err == nil && n == 0 {
		err = &ent.NotFoundError{}
	}
	return wrap(err, "registry: job %d: request cancel (not running?)", id)
}
