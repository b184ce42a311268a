package registry

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/tenantry/tenantry/ent"
	entjob "github.com/tenantry/tenantry/ent/job"
	entoffboarding "github.com/tenantry/tenantry/ent/offboarding"
	enttenant "github.com/tenantry/tenantry/ent/tenant"
	"github.com/tenantry/tenantry/tenancy"
)

// DefaultRetention is how long a softly offboarded tenant's data is kept
// unless OffboardOptions.Retention says otherwise.
const DefaultRetention = 30 * 24 * time.Hour

// Errors of offboarding.
var (
	// ErrRetention: a hard offboarding (purge) of a tenant whose retention
	// period has not ended. Wait, or force it.
	ErrRetention = errors.New("registry: retention period not over: the tenant's data is kept until then (force the purge to delete it now)")
	// ErrNotOffboarded: restoring a tenant that is not offboarded.
	ErrNotOffboarded = errors.New("registry: tenant is not offboarded")
)

// Offboarding is the record of one offboarding of a tenant.
type Offboarding struct {
	ID     int
	Tenant tenancy.ID
	Slug   string
	Shard  string
	// Schema is the schema the tenant was served from; RetiredSchema its
	// name while retired (empty for shared placements, whose schema stays
	// and serves other tenants).
	Schema        string
	RetiredSchema string
	Mode          Mode
	Reason        string
	OffboardedAt  time.Time
	RetainUntil   time.Time
	// RetiredAt is when the schema was renamed; zero until then (and for
	// shared placements).
	RetiredAt time.Time
	// PurgedAt is when the data was deleted; zero if it was not.
	PurgedAt time.Time
	// Forced: purged before RetainUntil, on request.
	Forced bool
	// RestoredAt is when the tenant was restored; zero if it was not.
	RestoredAt time.Time
}

// Open reports whether the offboarding is neither purged nor restored.
func (o Offboarding) Open() bool { return o.PurgedAt.IsZero() && o.RestoredAt.IsZero() }

// OffboardOps does the shard side of offboarding. provision.Provisioner
// implements it. Every method must be idempotent: an interrupted
// offboarding is finished by running it again.
type OffboardOps interface {
	// Retire renames the tenant's schema (schema and dedicated
	// placements) to o.RetiredSchema. Done already: no error.
	Retire(ctx context.Context, sh Shard, o Offboarding) error
	// Unretire renames it back to o.Schema and brings it to the current
	// desired state.
	Unretire(ctx context.Context, sh Shard, o Offboarding) error
	// Purge deletes the tenant's data: drops o.RetiredSchema (or o.Schema
	// if it was never renamed), or, for a shared placement, deletes the
	// tenant's rows from o.Schema and nothing else.
	Purge(ctx context.Context, sh Shard, o Offboarding) error
}

// OffboardOptions tune Offboard.
type OffboardOptions struct {
	// Retention is how long the data is kept after a soft offboarding
	// (DefaultRetention when zero).
	Retention time.Duration
	// Hard purges the tenant's data as well: right away if the retention
	// period of an earlier soft offboarding is over, otherwise only with
	// Force (else ErrRetention, after the soft part is done).
	Hard  bool
	Force bool
	// Reason is recorded with the offboarding.
	Reason string
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

func (o OffboardOptions) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

// RetiredSchemaName is the name a tenant's schema gets while retired:
// tenancy.RetiredSchemaPrefix and the tenant id's 32 hex digits. No
// router or migration run looks at it.
func RetiredSchemaName(id tenancy.ID) string {
	return tenancy.RetiredSchemaPrefix + hex.EncodeToString(id[:])
}

// Offboard offboards a tenant: softly, it stops being served at once
// (state offboarded; routers are notified and answer
// tenancy.ErrTenantDeleted) and its schema is renamed to
// RetiredSchemaName and kept for the retention period (a shared
// placement keeps its rows in place); the offboarding is recorded. With
// Hard it is then purged (see Purge). An active, read-only or suspended
// tenant can be offboarded; offboarding an offboarded tenant again
// finishes what an interrupted run left and, with Hard, purges it.
func (s *Store) Offboard(ctx context.Context, id tenancy.ID, opt OffboardOptions, ops OffboardOps) (Offboarding, error) {
	if opt.Retention < 0 {
		return Offboarding{}, fmt.Errorf("registry: offboard %s: %w retention %s", id, ErrInvalid, opt.Retention)
	}
	if ops == nil {
		return Offboarding{}, fmt.Errorf("registry: offboard %s: %w: no OffboardOps (use a provision.Provisioner)", id, ErrInvalid)
	}
	if opt.Retention == 0 {
		opt.Retention = DefaultRetention
	}
	t, err := s.Tenant(ctx, id.String())
	if err != nil {
		return Offboarding{}, err
	}
	var o Offboarding
	switch t.State {
	case Active, ReadOnly, Suspended:
		now := opt.now()
		o = Offboarding{
			Tenant: t.ID, Slug: t.Slug, Shard: t.Placement.Shard, Schema: t.Placement.Schema, Mode: t.Placement.Mode,
			Reason: opt.Reason, OffboardedAt: now, RetainUntil: now.Add(opt.Retention),
		}
		if o.Mode != ModeShared {
			o.RetiredSchema = RetiredSchemaName(t.ID)
		}
		err = s.inTx(ctx, func(tx *ent.Tx) error {
			// A running job (a move, say) works on the tenant's data
			// and would leave its traces in the retired schema, or put
			// the tenant back where it was: it ends first.
			if j, err := tx.Job.Query().Where(entjob.TenantRef(id), entjob.StateEQ(entjob.StateRunning)).First(ctx); err == nil {
				return fmt.Errorf("%w (job %d, %s, phase %s): finish or abort it first (tenantctl tenants move -abort)", ErrJobRunning, j.ID, j.Kind, j.Phase)
			} else if !ent.IsNotFound(err) {
				return err
			}
			n, err := tx.Tenant.Update().Where(enttenant.ID(id), enttenant.StateEQ(enttenant.State(t.State))).
				SetState(enttenant.StateOffboarded).Save(ctx)
			if err != nil {
				return err
			}
			if n == 0 {
				return fmt.Errorf("%w: the tenant's state changed meanwhile (it was %s); look again and retry", ErrTransition, t.State)
			}
			rec, err := tx.Offboarding.Create().SetTenantRef(id).SetShard(o.Shard).SetSchema(o.Schema).
				SetRetiredSchema(o.RetiredSchema).SetMode(entoffboarding.Mode(o.Mode)).SetReason(o.Reason).
				SetOffboardedAt(o.OffboardedAt).SetRetainUntil(o.RetainUntil).Save(ctx)
			if err != nil {
				return err
			}
			o.ID = rec.ID
			return bumpTenant(ctx, tx, id)
		})
		if err != nil {
			return Offboarding{}, wrap(err, "registry: offboard tenant %s (%s)", t.Slug, id)
		}
	case Offboarded:
		if o, err = s.openOffboarding(ctx, id); err != nil {
			return Offboarding{}, err
		}
	default:
		return Offboarding{}, fmt.Errorf("registry: offboard tenant %s (%s): %w: state %s (offboard active, read_only or suspended tenants)",
			t.Slug, id, ErrTransition, t.State)
	}
	// Retired again even when recorded as retired: a restore that renamed
	// the schema back and then failed to record it leaves it live (Retire
	// does nothing to a schema retired already).
	if o.RetiredSchema != "" {
		if o, err = s.retire(ctx, o, ops); err != nil {
			return o, err
		}
	}
	if !opt.Hard {
		return o, nil
	}
	return s.purge(ctx, o, opt.now(), opt.Force, ops)
}

// retire renames the schema on the shard and records when.
func (s *Store) retire(ctx context.Context, o Offboarding, ops OffboardOps) (Offboarding, error) {
	sh, err := s.Shard(ctx, o.Shard)
	if err != nil {
		return o, err
	}
	if err := ops.Retire(ctx, sh, o); err != nil {
		return o, fmt.Errorf("registry: offboard tenant %s (%s): retire schema %s as %s on shard %s (the tenant is offboarded and not served; run the offboarding again to finish): %w",
			o.Slug, o.Tenant, o.Schema, o.RetiredSchema, o.Shard, err)
	}
	if !o.RetiredAt.IsZero() {
		return o, nil
	}
	now := time.Now()
	if err := s.client.Offboarding.UpdateOneID(o.ID).SetRetiredAt(now).Exec(ctx); err != nil {
		return o, wrap(err, "registry: offboard tenant %s: record the retired schema", o.Tenant)
	}
	o.RetiredAt = now
	return o, nil
}

// purge deletes an offboarded tenant's data and marks it deleted.
func (s *Store) purge(ctx context.Context, o Offboarding, now time.Time, force bool, ops OffboardOps) (Offboarding, error) {
	if now.Before(o.RetainUntil) && !force {
		return o, fmt.Errorf("registry: purge tenant %s (%s): %w (retained until %s)", o.Slug, o.Tenant, ErrRetention, o.RetainUntil.UTC().Format(time.RFC3339))
	}
	// The tenant is marked deleted first, if it is still offboarded by
	// this offboarding (a restore may have come since the listing): from
	// then on a restore refuses it, and only then is its data deleted.
	// A purge that fails after this is finished by running it again.
	err := s.inTx(ctx, func(tx *ent.Tx) error {
		open, err := tx.Offboarding.Query().Where(entoffboarding.ID(o.ID), entoffboarding.PurgedAtIsNil(), entoffboarding.RestoredAtIsNil()).Exist(ctx)
		if err != nil {
			return err
		}
		n, err := tx.Tenant.Update().Where(enttenant.ID(o.Tenant), enttenant.StateIn(enttenant.StateOffboarded, enttenant.StateDeleted)).
			SetState(enttenant.StateDeleted).Save(ctx)
		if err != nil {
			return err
		}
		if !open || n == 0 {
			return fmt.Errorf("%w: it was restored or purged meanwhile; nothing was deleted", ErrTransition)
		}
		return bumpTenant(ctx, tx, o.Tenant)
	})
	if err != nil {
		return o, wrap(err, "registry: purge tenant %s (%s)", o.Slug, o.Tenant)
	}
	sh, err := s.Shard(ctx, o.Shard)
	if err != nil {
		return o, err
	}
	if err := ops.Purge(ctx, sh, o); err != nil {
		return o, fmt.Errorf("registry: purge tenant %s (%s) on shard %s (run the purge again to finish): %w", o.Slug, o.Tenant, o.Shard, err)
	}
	forced := now.Before(o.RetainUntil)
	at := time.Now()
	if err := s.client.Offboarding.UpdateOneID(o.ID).SetPurgedAt(at).SetForced(forced).Exec(ctx); err != nil {
		return o, wrap(err, "registry: purge tenant %s: record it", o.Tenant)
	}
	o.PurgedAt, o.Forced = at, forced
	return o, nil
}

// RestoreOffboarded undoes a soft offboarding within the retention period:
// the schema gets its name back (and is brought to the current desired
// state: migration runs skip retired schemas), the tenant becomes active
// and routers are notified. A purged tenant cannot be restored.
func (s *Store) RestoreOffboarded(ctx context.Context, id tenancy.ID, ops OffboardOps) (Tenant, error) {
	if ops == nil {
		return Tenant{}, fmt.Errorf("registry: restore tenant %s: %w: no OffboardOps (use a provision.Provisioner)", id, ErrInvalid)
	}
	t, err := s.Tenant(ctx, id.String())
	if err != nil {
		return Tenant{}, err
	}
	if t.State != Offboarded {
		return Tenant{}, fmt.Errorf("registry: restore tenant %s (%s): %w (state %s)", t.Slug, id, ErrNotOffboarded, t.State)
	}
	o, err := s.openOffboarding(ctx, id)
	if err != nil {
		return Tenant{}, err
	}
	if o.RetiredSchema != "" {
		sh, err := s.Shard(ctx, o.Shard)
		if err != nil {
			return Tenant{}, err
		}
		if err := ops.Unretire(ctx, sh, o); err != nil {
			return Tenant{}, fmt.Errorf("registry: restore tenant %s (%s): schema %s back to %s on shard %s (run the restore again to finish): %w",
				t.Slug, id, o.RetiredSchema, o.Schema, o.Shard, err)
		}
	}
	err = s.inTx(ctx, func(tx *ent.Tx) error {
		n, err := tx.Tenant.Update().Where(enttenant.ID(id), enttenant.StateEQ(enttenant.StateOffboarded)).
			SetState(enttenant.StateActive).Save(ctx)
		if err != nil {
			return err
		}
		if n == 0 { // a purge claimed it since the check above
			return fmt.Errorf("%w: it was purged meanwhile", ErrNotOffboarded)
		}
		if err := tx.Offboarding.UpdateOneID(o.ID).SetRestoredAt(time.Now()).Exec(ctx); err != nil {
			return err
		}
		return bumpTenant(ctx, tx, id)
	})
	if err != nil {
		return Tenant{}, wrap(err, "registry: restore tenant %s", id)
	}
	return s.Tenant(ctx, id.String())
}

// Purge deletes the data of every offboarded tenant whose retention period
// ended before now, one at a time, and marks each deleted. It goes on
// after a failure and returns what it purged with the joined errors.
func (s *Store) Purge(ctx context.Context, now time.Time, ops OffboardOps) ([]Offboarding, error) {
	if ops == nil {
		return nil, fmt.Errorf("registry: purge: %w: no OffboardOps (use a provision.Provisioner)", ErrInvalid)
	}
	due, err := s.Offboardings(ctx, OffboardingFilter{Open: true, DueBy: now})
	if err != nil {
		return nil, err
	}
	var done []Offboarding
	var errs []error
	for _, o := range due {
		if err := ctx.Err(); err != nil {
			return done, errors.Join(append(errs, err)...)
		}
		if o.RetiredSchema != "" {
			// The rename may never have happened (interrupted), or been
			// undone by an interrupted restore: make sure of it first, so
			// that the schema dropped is the retired one.
			if o, err = s.retire(ctx, o, ops); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		p, err := s.purge(ctx, o, now, false, ops)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		done = append(done, p)
	}
	return done, errors.Join(errs...)
}

// OffboardingFilter selects offboardings; zero fields select all.
type OffboardingFilter struct {
	Tenant tenancy.ID
	// Open: neither purged nor restored.
	Open bool
	// DueBy: retention over by then (with Open: due for purging).
	DueBy time.Time
}

// Offboardings lists offboardings, oldest first.
func (s *Store) Offboardings(ctx context.Context, f OffboardingFilter) ([]Offboarding, error) {
	q := s.client.Offboarding.Query().WithTenant().Order(ent.Asc(entoffboarding.FieldOffboardedAt), ent.Asc(entoffboarding.FieldID))
	if !f.Tenant.IsZero() {
		q.Where(entoffboarding.TenantRef(f.Tenant))
	}
	if f.Open {
		q.Where(entoffboarding.PurgedAtIsNil(), entoffboarding.RestoredAtIsNil())
	}
	if !f.DueBy.IsZero() {
		q.Where(entoffboarding.RetainUntilLTE(f.DueBy))
	}
	rs, err := q.All(ctx)
	if err != nil {
		return nil, wrap(err, "registry: offboardings")
	}
	out := make([]Offboarding, len(rs))
	for i, r := range rs {
		out[i] = toOffboarding(r)
	}
	return out, nil
}

func (s *Store) openOffboarding(ctx context.Context, id tenancy.ID) (Offboarding, error) {
	os, err := s.Offboardings(ctx, OffboardingFilter{Tenant: id, Open: true})
	if err != nil {
		return Offboarding{}, err
	}
	if len(os) == 0 {
		return Offboarding{}, fmt.Errorf("registry: tenant %s is offboarded but has no open offboarding record: %w", id, ErrNotFound)
	}
	return os[len(os)-1], nil
}

func toOffboarding(r *ent.Offboarding) Offboarding {
	o := Offboarding{
		ID: r.ID, Tenant: r.TenantRef, Shard: r.Shard, Schema: r.Schema, RetiredSchema: r.RetiredSchema,
		Mode: Mode(r.Mode), Reason: r.Reason, OffboardedAt: r.OffboardedAt, RetainUntil: r.RetainUntil, Forced: r.Forced,
	}
	if r.Edges.Tenant != nil {
		o.Slug = r.Edges.Tenant.Slug
	}
	for _, p := range []struct {
		src *time.Time
		dst *time.Time
	}{{r.RetiredAt, &o.RetiredAt}, {r.PurgedAt, &o.PurgedAt}, {r.RestoredAt, &o.RestoredAt}} {
		if p.src != nil {
			*p.dst = *p.src
		}
	}
	return o
}
