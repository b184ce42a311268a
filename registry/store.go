package registry

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/tenantry/tenantry/ent"
	entplacement "github.com/tenantry/tenantry/ent/placement"
	entplan "github.com/tenantry/tenantry/ent/plan"
	entshard "github.com/tenantry/tenantry/ent/shard"
	enttenant "github.com/tenantry/tenantry/ent/tenant"
	"github.com/tenantry/tenantry/tenancy"
)

// Channel is the PostgreSQL notification channel of placement changes. The
// payload is "<tenant id> <epoch>", or "*" when every router should reload
// everything.
const Channel = "tenantry_placement"

// Advisory lock keys (pg_advisory_xact_lock / pg_advisory_lock) of the
// registry: placing tenants, and creating the registry tables.
const (
	placeLockKey = 0x7465_6e61_6e74_01 // "tenant" 01
	initLockKey  = 0x7465_6e61_6e74_02
)

// Store is the registry: an Ent client on the registry database plus the
// operations that keep routers informed. It is safe for concurrent use.
type Store struct {
	db     *sql.DB
	client *ent.Client
}

// Open connects to the registry database at dsn (a postgres:// URL or any
// connection string pgx accepts) and checks that it answers. Errors never
// contain the DSN's password.
func Open(ctx context.Context, dsn string) (*Store, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// pgx redacts the password in its parse errors; say no more.
		return nil, fmt.Errorf("registry: %w", err)
	}
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(8)
	db.SetMaxIdleConns(2)
	db.SetConnMaxIdleTime(time.Minute)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("registry: connect: %w", err)
	}
	return NewStore(db), nil
}

// NewStore returns a store on an open registry database (a pgx stdlib
// *sql.DB); Close closes db.
func NewStore(db *sql.DB) *Store {
	return &Store{db: db, client: ent.NewClient(ent.Driver(entsql.OpenDB(dialect.Postgres, db)))}
}

// Client returns the Ent client of the registry, for reads the store does
// not offer. Write through the store's operations: they notify routers.
func (s *Store) Client() *ent.Client { return s.client }

// Close closes the database handle.
func (s *Store) Close() error { return s.client.Close() }

// Init creates or upgrades the registry tables (additive changes only) and
// the default plan. It is idempotent and serialized across processes by an
// advisory lock.
func (s *Store) Init(ctx context.Context) error {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("registry: init: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock($1)", initLockKey); err != nil {
		return fmt.Errorf("registry: init: lock: %w", err)
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", initLockKey)
	if err := s.client.Schema.Create(ctx); err != nil {
		return fmt.Errorf("registry: init: create tables: %w", err)
	}
	l := tenancy.DefaultLimits
	err = s.client.Plan.Create().
		SetName(DefaultPlan).
		SetStatementTimeoutMs(l.StatementTimeout.Milliseconds()).
		SetLockTimeoutMs(l.LockTimeout.Milliseconds()).
		SetIdleInTransactionTimeoutMs(l.IdleInTransactionTimeout.Milliseconds()).
		SetWorkMem(l.WorkMem).
		OnConflictColumns(entplan.FieldName).DoNothing().
		Exec(ctx)
	if err != nil && !errors.Is(err, sql.ErrNoRows) { // DO NOTHING on conflict returns no row
		return fmt.Errorf("registry: init: default plan: %w", err)
	}
	return nil
}

// wrap maps database errors to the package's errors.
func wrap(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	msg := fmt.Sprintf(format, args...)
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr) && pgErr.Code == "42P01":
		return fmt.Errorf("%s: %w", msg, ErrNotInitialized)
	case ent.IsNotFound(err):
		return fmt.Errorf("%s: %w", msg, ErrNotFound)
	case ent.IsConstraintError(err):
		return fmt.Errorf("%s: %w (%v)", msg, ErrExists, err)
	case ent.IsValidationError(err):
		var ve *ent.ValidationError
		if errors.As(err, &ve) && (ve.Name == "slug" || ve.Name == "name") {
			return fmt.Errorf("%s: %w %s: want lower-case letters, digits, - and _, starting with a letter or digit, at most 63 characters", msg, ErrInvalid, ve.Name)
		}
		return fmt.Errorf("%s: %w: %v", msg, ErrInvalid, err)
	}
	return fmt.Errorf("%s: %w", msg, err)
}

// inTx runs fn in a transaction of the registry.
func (s *Store) inTx(ctx context.Context, fn func(tx *ent.Tx) error) error {
	tx, err := s.client.Tx(ctx)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		return errors.Join(err, ignoreDone(tx.Rollback()))
	}
	return tx.Commit()
}

func ignoreDone(err error) error {
	if errors.Is(err, sql.ErrTxDone) {
		return nil
	}
	return err
}

// bumpTenantSQL and bumpPlanSQL raise the epoch of placements and notify
// routers, in the caller's transaction (NOTIFY is delivered at commit).
const (
	bumpTenantSQL = `WITH p AS (UPDATE placements SET epoch = epoch + 1, updated_at = now() WHERE tenant_ref = $2 RETURNING tenant_ref, epoch)
SELECT pg_notify($1, p.tenant_ref::text || ' ' || p.epoch::text) FROM p`
	bumpPlanSQL = `WITH p AS (UPDATE placements SET epoch = epoch + 1, updated_at = now() WHERE tenant_ref IN (SELECT id FROM tenants WHERE plan_id = $2) RETURNING tenant_ref, epoch)
SELECT pg_notify($1, p.tenant_ref::text || ' ' || p.epoch::text) FROM p`
)

func bumpTenant(ctx context.Context, tx *ent.Tx, id tenancy.ID) error {
	_, err := tx.ExecContext(ctx, bumpTenantSQL, Channel, id)
	return err
}

// ----- plans

// PutPlan creates the plan, or updates it; every tenant on it is notified.
func (s *Store) PutPlan(ctx context.Context, p Plan) error {
	l := p.Limits
	if err := validateLimits(l); err != nil {
		return fmt.Errorf("registry: plan %q: %w: %v", p.Name, ErrInvalid, err)
	}
	if l.WorkMem == "" {
		l.WorkMem = tenancy.DefaultLimits.WorkMem
	}
	err := s.inTx(ctx, func(tx *ent.Tx) error {
		id, err := tx.Plan.Create().
			SetName(p.Name).
			SetMaxConnections(l.MaxConns).
			SetStatementTimeoutMs(l.StatementTimeout.Milliseconds()).
			SetLockTimeoutMs(l.LockTimeout.Milliseconds()).
			SetIdleInTransactionTimeoutMs(l.IdleInTransactionTimeout.Milliseconds()).
			SetWorkMem(l.WorkMem).
			SetRateLimit(l.RatePerSec).
			SetRateBurst(l.Burst).
			SetQueueTimeoutMs(l.QueueTimeout.Milliseconds()).
			SetReplicaReads(p.ReplicaReads).
			OnConflictColumns(entplan.FieldName).
			UpdateNewValues().
			ID(ctx)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, bumpPlanSQL, Channel, id)
		return err
	})
	return wrap(err, "registry: put plan %q", p.Name)
}

// validateLimits checks limits the way tenancy.NewPlacement will.
func validateLimits(l tenancy.Limits) error {
	for _, d := range []time.Duration{l.StatementTimeout, l.LockTimeout, l.IdleInTransactionTimeout, l.QueueTimeout} {
		if d < 0 || d.Milliseconds() > math.MaxInt32 {
			return fmt.Errorf("duration %s out of range", d)
		}
		if d > 0 && d < time.Millisecond {
			// Stored in milliseconds, it would become 0: no limit.
			return fmt.Errorf("duration %s below 1ms (0 means no limit; the smallest limit is 1ms)", d)
		}
	}
	if l.MaxConns < 0 || l.Burst < 0 || l.RatePerSec < 0 || math.IsNaN(l.RatePerSec) || math.IsInf(l.RatePerSec, 0) {
		return errors.New("negative admission limit")
	}
	_, err := l.RuntimeParams() // checks work_mem
	return err
}

// Plan returns the named plan.
func (s *Store) Plan(ctx context.Context, name string) (Plan, error) {
	p, err := s.client.Plan.Query().Where(entplan.Name(name)).Only(ctx)
	if err != nil {
		return Plan{}, wrap(err, "registry: plan %q", name)
	}
	return toPlan(p), nil
}

// Plans lists the plans by name.
func (s *Store) Plans(ctx context.Context) ([]Plan, error) {
	ps, err := s.client.Plan.Query().Order(ent.Asc(entplan.FieldName)).All(ctx)
	if err != nil {
		return nil, wrap(err, "registry: plans")
	}
	out := make([]Plan, len(ps))
	for i, p := range ps {
		out[i] = toPlan(p)
	}
	return out, nil
}

func toPlan(p *ent.Plan) Plan {
	ms := func(v int64) time.Duration { return time.Duration(v) * time.Millisecond }
	return Plan{
		Name: p.Name,
		Limits: tenancy.Limits{
			StatementTimeout:         ms(p.StatementTimeoutMs),
			LockTimeout:              ms(p.LockTimeoutMs),
			IdleInTransactionTimeout: ms(p.IdleInTransactionTimeoutMs),
			WorkMem:                  p.WorkMem,
			Plan:                     p.Name,
			MaxConns:                 p.MaxConnections,
			RatePerSec:               p.RateLimit,
			Burst:                    p.RateBurst,
			QueueTimeout:             ms(p.QueueTimeoutMs),
		},
		ReplicaReads: p.ReplicaReads,
	}
}

// ----- shards

// AddShard registers a shard. It does not connect to it.
func (s *Store) AddShard(ctx context.Context, sh Shard) error {
	if err := ValidateShardDSN(sh.DSN); err != nil {
		return fmt.Errorf("registry: shard %q: %w", sh.Name, err)
	}
	if sh.ReplicaDSN != "" {
		if err := ValidateShardDSN(sh.ReplicaDSN); err != nil {
			return fmt.Errorf("registry: shard %q: replica: %w", sh.Name, err)
		}
	}
	if sh.Capacity == 0 {
		sh.Capacity = 1000
	}
	c := s.client.Shard.Create().
		SetName(sh.Name).
		SetDsn(sh.DSN).
		SetRegion(sh.Region).
		SetCapacity(sh.Capacity).
		SetAccepting(sh.Accepting)
	if sh.ReplicaDSN != "" {
		c.SetReplicaDsn(sh.ReplicaDSN)
	}
	// The error of a failed insert carries no values, so no DSN.
	return wrap(c.Exec(ctx), "registry: add shard %q", sh.Name)
}

// shardLoadSQL lists shards with their number of placed tenants, least
// loaded first.
const shardLoadSQL = `SELECT s.id, s.name, s.capacity, s.accepting, count(t.id)
FROM shards s
LEFT JOIN placements p ON p.shard_id = s.id
LEFT JOIN tenants t ON t.id = p.tenant_ref AND t.state <> 'deleted'
GROUP BY s.id
ORDER BY count(t.id)::float8 / s.capacity, s.name`

type shardLoad struct {
	id, capacity, tenants int
	name                  string
	accepting             bool
}

func loads(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*entsql.Rows, error)
}) ([]shardLoad, error) {
	rows, err := q.QueryContext(ctx, shardLoadSQL)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []shardLoad
	for rows.Next() {
		var l shardLoad
		if err := rows.Scan(&l.id, &l.name, &l.capacity, &l.accepting, &l.tenants); err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, rows.Err()
}

// Shards lists the shards by name, with their tenant counts.
func (s *Store) Shards(ctx context.Context) ([]Shard, error) {
	shs, err := s.client.Shard.Query().Order(ent.Asc(entshard.FieldName)).All(ctx)
	if err != nil {
		return nil, wrap(err, "registry: shards")
	}
	ls, err := loads(ctx, s.client)
	if err != nil {
		return nil, wrap(err, "registry: shard loads")
	}
	count := map[int]int{}
	for _, l := range ls {
		count[l.id] = l.tenants
	}
	out := make([]Shard, len(shs))
	for i, sh := range shs {
		out[i] = toShard(sh)
		out[i].Tenants = count[sh.ID]
	}
	return out, nil
}

// Shard returns the named shard.
func (s *Store) Shard(ctx context.Context, name string) (Shard, error) {
	sh, err := s.client.Shard.Query().Where(entshard.Name(name)).Only(ctx)
	if err != nil {
		return Shard{}, wrap(err, "registry: shard %q", name)
	}
	return toShard(sh), nil
}

// SetAccepting opens (true) or drains (false) a shard for new tenants. A
// drained shard keeps serving its tenants; moving them off is a move.
func (s *Store) SetAccepting(ctx context.Context, name string, accepting bool) error {
	n, err := s.client.Shard.Update().Where(entshard.Name(name)).SetAccepting(accepting).Save(ctx)
	if err == nil && n == 0 {
		err = &ent.NotFoundError{}
	}
	return wrap(err, "registry: shard %q: set accepting %t", name, accepting)
}

func toShard(sh *ent.Shard) Shard {
	return Shard{Name: sh.Name, DSN: sh.Dsn, ReplicaDSN: sh.ReplicaDsn, Region: sh.Region, Capacity: sh.Capacity, Accepting: sh.Accepting}
}

// ----- tenants

// Register records a new tenant in state Provisioning and places it: on the
// named shard, or on the least loaded accepting shard with room. It creates
// nothing on the shard; CreateTenant does both (and a CreateTenant of the
// same slug provisions it).
func (s *Store) Register(ctx context.Context, nt NewTenant) (Tenant, error) {
	t, _, err := s.register(ctx, nt, "")
	return t, err
}

// register is Register, returning the tenant and its shard as the
// transaction wrote them (no second read), with token as its provisioner
// ("" for none).
func (s *Store) register(ctx context.Context, nt NewTenant, token string) (Tenant, Shard, error) {
	if nt.ID.IsZero() {
		nt.ID = tenancy.NewID()
	}
	if err := enttenant.SlugValidator(nt.Slug); err != nil {
		// Before placing: a bad slug says so, whatever the shards.
		return Tenant{}, Shard{}, wrap(&ent.ValidationError{Name: enttenant.FieldSlug}, "registry: tenant slug %.70q", nt.Slug)
	}
	// Tenants are looked up by slug or id (Tenant): a slug that reads as
	// an id would name another tenant, whose id may be known (logs,
	// metrics), to every command that takes a tenant.
	if _, err := tenancy.ParseID(nt.Slug); err == nil {
		return Tenant{}, Shard{}, fmt.Errorf("registry: tenant slug %q: %w: a slug may not be a tenant id (it would name that tenant)", nt.Slug, ErrInvalid)
	}
	if nt.Plan == "" {
		nt.Plan = DefaultPlan
	}
	if nt.Mode == "" {
		nt.Mode = ModeSchema
	}
	if !nt.Mode.valid() {
		return Tenant{}, Shard{}, fmt.Errorf("registry: tenant %q: %w mode %q: want schema, shared or dedicated", nt.Slug, ErrInvalid, nt.Mode)
	}
	if nt.Schema == "" {
		nt.Schema = nt.ID.SchemaName()
		if nt.Mode == ModeShared {
			nt.Schema = DefaultSharedSchema
		}
	}
	if err := checkSchemaName(nt.Mode, nt.Schema); err != nil {
		return Tenant{}, Shard{}, fmt.Errorf("registry: tenant %q: %w", nt.Slug, err)
	}
	var t Tenant
	var sh Shard
	err := s.inTx(ctx, func(tx *ent.Tx) error {
		if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", placeLockKey); err != nil {
			return err
		}
		planID, err := tx.Plan.Query().Where(entplan.Name(nt.Plan)).OnlyID(ctx)
		if err != nil {
			return wrap(err, "plan %q", nt.Plan)
		}
		ls, err := loads(ctx, tx)
		if err != nil {
			return err
		}
		shardID, err := pick(ls, nt)
		if err != nil {
			return err
		}
		if nt.Mode != ModeShared {
			// A schema of its own: one that no other tenant of the shard
			// is placed in (offboarding this tenant would retire and drop
			// that tenant's data).
			taken, err := tx.Placement.Query().Where(entplacement.Schema(nt.Schema), entplacement.HasShardWith(entshard.ID(shardID)),
				entplacement.HasTenantWith(enttenant.StateNEQ(enttenant.StateDeleted))).Exist(ctx)
			if err != nil {
				return err
			}
			if taken {
				return fmt.Errorf("schema %q: %w: another tenant of the shard is placed in it; a %s placement needs a schema of its own (leave Schema empty for %s)",
					nt.Schema, ErrExists, nt.Mode, nt.ID.SchemaName())
			}
		}
		et, err := tx.Tenant.Create().SetID(nt.ID).SetSlug(nt.Slug).SetPlanID(planID).
			SetState(enttenant.StateProvisioning).SetProvisioner(token).Save(ctx)
		if err != nil {
			return err
		}
		if token != "" {
			// The claim's time is the registry's (see claimSQL); not left
			// to the column default, which a registry not initialized
			// since it gained the column lacks.
			if _, err := tx.ExecContext(ctx, renewSQL, nt.ID, token); err != nil {
				return err
			}
		}
		ep, err := tx.Placement.Create().SetTenantRef(nt.ID).SetShardID(shardID).
			SetSchema(nt.Schema).SetMode(entplacement.Mode(nt.Mode)).Save(ctx)
		if err != nil {
			return err
		}
		var es *ent.Shard
		if nt.Mode == ModeDedicated {
			es, err = tx.Shard.UpdateOneID(shardID).SetAccepting(false).Save(ctx)
		} else {
			es, err = tx.Shard.Get(ctx, shardID)
		}
		if err != nil {
			return err
		}
		et.Edges.Placement, ep.Edges.Shard = ep, es
		t, sh = toTenant(et), toShard(es)
		t.Plan = nt.Plan
		// As read back: microseconds, no monotonic clock reading.
		t.CreatedAt, t.UpdatedAt = t.CreatedAt.Truncate(time.Microsecond), t.UpdatedAt.Truncate(time.Microsecond)
		return nil
	})
	if err != nil {
		return Tenant{}, Shard{}, wrap(err, "registry: register tenant %q", nt.Slug)
	}
	return t, sh, nil
}

// pick chooses the shard of a new tenant from ls (least loaded first).
func pick(ls []shardLoad, nt NewTenant) (int, error) {
	fits := func(l shardLoad) bool {
		if !l.accepting || l.tenants >= l.capacity {
			return false
		}
		return nt.Mode != ModeDedicated || l.tenants == 0
	}
	for _, l := range ls {
		if nt.Shard != "" && l.name != nt.Shard {
			continue
		}
		if fits(l) {
			return l.id, nil
		}
		if nt.Shard != "" {
			return 0, fmt.Errorf("shard %q (%d/%d tenants, accepting %t): %w", l.name, l.tenants, l.capacity, l.accepting, ErrNoCapacity)
		}
	}
	if nt.Shard != "" {
		return 0, fmt.Errorf("shard %q: %w", nt.Shard, ErrNotFound)
	}
	return 0, ErrNoCapacity
}

// ApplyFunc creates (or brings up to date) a tenant's schema on its shard.
type ApplyFunc func(ctx context.Context, shard Shard, schema string) error

// CreateTenant registers, places and provisions a tenant, then activates it
// (routers are notified). If a tenant of the same slug is still
// provisioning and nobody provisions it (an earlier attempt failed, or its
// caller died ProvisionStaleAfter ago), it resumes that one; while another
// call provisions it, it fails with ErrProvisioning, so two creates of one
// slug never both succeed. apply nil skips the schema (it exists already,
// e.g. a shared schema).
//
// A new tenant costs about ten registry round trips besides apply: the
// placing transaction, and one statement that activates it and notifies.
func (s *Store) CreateTenant(ctx context.Context, nt NewTenant, apply ApplyFunc) (Tenant, error) {
	token := newClaim()
	t, sh, err := s.register(ctx, nt, token)
	if errors.Is(err, ErrExists) && nt.Slug != "" {
		// The slug (or id) is taken: resume a provisioning of the same
		// tenant that nobody runs, refuse anything else.
		cur, lerr := s.Tenant(ctx, nt.Slug)
		switch {
		case lerr != nil:
			return Tenant{}, err
		case cur.State == Provisioning && (nt.ID.IsZero() || nt.ID == cur.ID):
			if diff := nt.differs(cur); diff != "" {
				return Tenant{}, fmt.Errorf("registry: tenant %q (%s) is provisioning %s: %w: resume it with the same create (or leave the field out)",
					nt.Slug, cur.ID, diff, ErrExists)
			}
			if err := s.claim(ctx, cur, token); err != nil {
				return Tenant{}, err
			}
			t = cur
			if sh, err = s.Shard(ctx, t.Placement.Shard); err != nil {
				s.unclaim(ctx, t.ID, token)
				return t, err
			}
		default:
			return Tenant{}, fmt.Errorf("registry: tenant %q: %w (id %s, state %s)", nt.Slug, ErrExists, cur.ID, cur.State)
		}
	} else if err != nil {
		return Tenant{}, err
	}
	if apply != nil {
		if err := s.provision(ctx, t, sh, token, apply); err != nil {
			return t, fmt.Errorf("registry: provision tenant %q (%s) in schema %s on shard %s (run the same create again to resume): %w",
				t.Slug, t.ID, t.Placement.Schema, sh.Name, err)
		}
	}
	at, err := s.activate(ctx, t, token)
	if err != nil && !errors.Is(err, ErrProvisioning) {
		// Not activated, or activated and the answer lost (then the
		// claim is gone already): a retry resumes at once.
		s.unclaim(ctx, t.ID, token)
	}
	return at, err
}

// differs names what nt asks for that t, a provisioning tenant of the
// same slug, does not have ("" if nothing): a resume must not silently
// ignore another plan, mode, shard or schema.
func (nt NewTenant) differs(t Tenant) string {
	var d []string
	for _, f := range []struct{ name, want, have string }{
		{"plan", nt.Plan, t.Plan},
		{"mode", string(nt.Mode), string(t.Placement.Mode)},
		{"shard", nt.Shard, t.Placement.Shard},
		{"schema", nt.Schema, t.Placement.Schema},
	} {
		if f.want != "" && f.want != f.have {
			d = append(d, fmt.Sprintf("with %s %s, not %s", f.name, f.have, f.want))
		}
	}
	return strings.Join(d, ", ")
}

// activateSQL makes a provisioning tenant that token provisions active,
// bumps its epoch and notifies routers, in one statement (one implicit
// transaction).
const activateSQL = `WITH t AS (UPDATE tenants SET state = 'active', provisioner = '', provisioner_seen = NULL, updated_at = $3
    WHERE id = $2 AND state = 'provisioning' AND provisioner = $4 RETURNING id),
p AS (UPDATE placements SET epoch = epoch + 1, updated_at = $3 WHERE tenant_ref IN (SELECT id FROM t) RETURNING tenant_ref, epoch)
SELECT p.epoch, pg_notify($1, p.tenant_ref::text || ' ' || p.epoch::text) IS NULL FROM p`

// activate makes a provisioning tenant that token provisions active
// (SetState if it is no longer provisioning).
func (s *Store) activate(ctx context.Context, t Tenant, token string) (Tenant, error) {
	now := time.Now().Truncate(time.Microsecond)
	var epoch int64
	var ignored bool
	err := s.db.QueryRowContext(ctx, activateSQL, Channel, t.ID, now, token).Scan(&epoch, &ignored)
	if errors.Is(err, sql.ErrNoRows) {
		cur, cerr := s.client.Tenant.Get(ctx, t.ID)
		if cerr != nil {
			return Tenant{}, wrap(cerr, "registry: tenant %s: activate", t.ID)
		}
		if cur.Provisioner != token {
			// This call's claim went stale and another caller took it
			// over (and may have activated the tenant since).
			return Tenant{}, fmt.Errorf("registry: tenant %q (%s): activate: %w (this call's claim went stale and was taken over; the tenant is %s)", t.Slug, t.ID, ErrProvisioning, cur.State)
		}
		return s.SetState(ctx, t.ID, Active) // not provisioning any more (an operator): the general path
	}
	if err != nil {
		return Tenant{}, wrap(err, "registry: tenant %s: activate", t.ID)
	}
	t.State, t.Placement.Epoch, t.UpdatedAt = Active, epoch, now
	return t, nil
}

// Tenant returns a tenant by slug or id.
func (s *Store) Tenant(ctx context.Context, ref string) (Tenant, error) {
	q := s.tenantQuery()
	if id, err := tenancy.ParseID(ref); err == nil {
		q.Where(enttenant.ID(id))
	} else {
		q.Where(enttenant.Slug(ref))
	}
	t, err := q.Only(ctx)
	if err != nil {
		return Tenant{}, wrap(err, "registry: tenant %q", ref)
	}
	return toTenant(t), nil
}

// TenantFilter selects tenants in Tenants; zero fields select all.
type TenantFilter struct {
	State State
	Shard string
	Plan  string
}

// Tenants lists tenants by slug.
func (s *Store) Tenants(ctx context.Context, f TenantFilter) ([]Tenant, error) {
	q := s.tenantQuery().Order(ent.Asc(enttenant.FieldSlug))
	if f.State != "" {
		q.Where(enttenant.StateEQ(enttenant.State(f.State)))
	}
	if f.Plan != "" {
		q.Where(enttenant.HasPlanWith(entplan.Name(f.Plan)))
	}
	if f.Shard != "" {
		q.Where(enttenant.HasPlacementWith(entplacement.HasShardWith(entshard.Name(f.Shard))))
	}
	ts, err := q.All(ctx)
	if err != nil {
		return nil, wrap(err, "registry: tenants")
	}
	out := make([]Tenant, len(ts))
	for i, t := range ts {
		out[i] = toTenant(t)
	}
	return out, nil
}

func (s *Store) tenantQuery() *ent.TenantQuery {
	return s.client.Tenant.Query().Select(tenantColumns...).WithPlan().WithPlacement(func(q *ent.PlacementQuery) { q.WithShard() })
}

// tenantColumns are the columns of tenants that reads of tenants select:
// not every column, so that routers and tools still read a registry that
// Init has not yet given a column added since (the provisioning claim's).
var tenantColumns = []string{enttenant.FieldID, enttenant.FieldSlug, enttenant.FieldState, enttenant.FieldPlanID,
	enttenant.FieldCreatedAt, enttenant.FieldUpdatedAt}

func toTenant(t *ent.Tenant) Tenant {
	out := Tenant{ID: t.ID, Slug: t.Slug, State: State(t.State), CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt}
	if p := t.Edges.Plan; p != nil {
		out.Plan = p.Name
	}
	if p := t.Edges.Placement; p != nil {
		out.Placement = Placement{Schema: p.Schema, Mode: Mode(p.Mode), Epoch: p.Epoch}
		if sh := p.Edges.Shard; sh != nil {
			out.Placement.Shard = sh.Name
		}
	}
	return out
}

// SetState changes a tenant's state and notifies routers. Setting the
// state it has already is a no-op; a change its state does not allow fails
// with ErrTransition.
func (s *Store) SetState(ctx context.Context, id tenancy.ID, to State) (Tenant, error) {
	if !to.valid() {
		return Tenant{}, fmt.Errorf("registry: tenant %s: %w state %q", id, ErrInvalid, to)
	}
	var from []enttenant.State
	for s, next := range transitions {
		if slices.Contains(next, to) {
			from = append(from, enttenant.State(s))
		}
	}
	err := s.inTx(ctx, func(tx *ent.Tx) error {
		n, err := tx.Tenant.Update().Where(enttenant.ID(id), enttenant.StateIn(from...)).
			SetState(enttenant.State(to)).Save(ctx)
		if err != nil {
			return err
		}
		if n == 0 {
			cur, err := tx.Tenant.Query().Where(enttenant.ID(id)).Only(ctx)
			if err != nil {
				return err
			}
			if State(cur.State) == to {
				return errNoChange
			}
			return fmt.Errorf("%w: %s → %s (allowed from %s: %s)", ErrTransition, cur.State, to, cur.State, statesText(transitions[State(cur.State)]))
		}
		return bumpTenant(ctx, tx, id)
	})
	if err != nil && !errors.Is(err, errNoChange) {
		return Tenant{}, wrap(err, "registry: tenant %s: set state %s", id, to)
	}
	return s.Tenant(ctx, id.String())
}

var errNoChange = errors.New("no change")

func statesText(ss []State) string {
	if len(ss) == 0 {
		return "none"
	}
	parts := make([]string, len(ss))
	for i, s := range ss {
		parts[i] = string(s)
	}
	return strings.Join(parts, ", ")
}

// Suspend stops serving a tenant (routers answer
// tenancy.ErrTenantSuspended).
func (s *Store) Suspend(ctx context.Context, id tenancy.ID) (Tenant, error) {
	return s.SetState(ctx, id, Suspended)
}

// Resume serves a suspended (or read-only) tenant again.
func (s *Store) Resume(ctx context.Context, id tenancy.ID) (Tenant, error) {
	t, err := s.Tenant(ctx, id.String())
	if err != nil {
		return Tenant{}, err
	}
	if t.State != Suspended && t.State != ReadOnly && t.State != Active {
		return Tenant{}, fmt.Errorf("registry: tenant %s: resume: %w: state %s (resume applies to suspended and read_only tenants)", id, ErrTransition, t.State)
	}
	return s.SetState(ctx, id, Active)
}

// SetPlan puts a tenant on another plan and notifies routers.
func (s *Store) SetPlan(ctx context.Context, id tenancy.ID, plan string) (Tenant, error) {
	err := s.inTx(ctx, func(tx *ent.Tx) error {
		planID, err := tx.Plan.Query().Where(entplan.Name(plan)).OnlyID(ctx)
		if err != nil {
			return wrap(err, "plan %q", plan)
		}
		if err := tx.Tenant.UpdateOneID(id).SetPlanID(planID).Exec(ctx); err != nil {
			return err
		}
		return bumpTenant(ctx, tx, id)
	})
	if err != nil {
		return Tenant{}, wrap(err, "registry: tenant %s: set plan %q", id, plan)
	}
	return s.Tenant(ctx, id.String())
}

// MoveTo points a tenant's placement at another shard, schema or mode and
// notifies routers: the flip at the end of a move. Copying the data is the
// mover's job, done before; a tenant in state Moving stays fenced for
// writes until its state is set back to Active.
func (s *Store) MoveTo(ctx context.Context, id tenancy.ID, to Placement) (Tenant, error) {
	if to.Mode == "" {
		to.Mode = ModeSchema
	}
	if !to.Mode.valid() {
		return Tenant{}, fmt.Errorf("registry: tenant %s: %w mode %q", id, ErrInvalid, to.Mode)
	}
	err := s.inTx(ctx, func(tx *ent.Tx) error {
		shardID, err := tx.Shard.Query().Where(entshard.Name(to.Shard)).OnlyID(ctx)
		if err != nil {
			return wrap(err, "shard %q", to.Shard)
		}
		n, err := tx.Placement.Update().Where(entplacement.TenantRef(id)).
			SetShardID(shardID).SetSchema(to.Schema).SetMode(entplacement.Mode(to.Mode)).Save(ctx)
		if err != nil {
			return err
		}
		if n == 0 {
			return &ent.NotFoundError{}
		}
		return bumpTenant(ctx, tx, id)
	})
	if err != nil {
		return Tenant{}, wrap(err, "registry: tenant %s: move to %s/%s", id, to.Shard, to.Schema)
	}
	return s.Tenant(ctx, id.String())
}

// ----- routes

// Routes returns the routes of the given tenants (of all tenants when none
// is given), read in one consistent snapshot. Tenants without a placement
// are left out; unknown ids are simply absent.
func (s *Store) Routes(ctx context.Context, ids ...tenancy.ID) ([]Route, error) {
	tx, err := s.client.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
	if err != nil {
		return nil, wrap(err, "registry: routes")
	}
	defer tx.Rollback()
	var out []Route
	const chunk = 1000
	for start := 0; start == 0 || start < len(ids); start += chunk {
		q := tx.Tenant.Query().Select(tenantColumns...).WithPlan().WithPlacement(func(q *ent.PlacementQuery) { q.WithShard() })
		if len(ids) > 0 {
			q.Where(enttenant.IDIn(ids[start:min(start+chunk, len(ids))]...))
		}
		ts, err := q.All(ctx)
		if err != nil {
			return nil, wrap(err, "registry: routes")
		}
		for _, t := range ts {
			p := t.Edges.Placement
			if p == nil || p.Edges.Shard == nil || t.Edges.Plan == nil {
				continue
			}
			out = append(out, Route{
				Tenant: t.ID,
				Slug:   t.Slug,
				State:  State(t.State),
				Epoch:  p.Epoch,
				Shard:  toShard(p.Edges.Shard),
				Schema: p.Schema,
				Mode:   Mode(p.Mode),
				Plan:   toPlan(t.Edges.Plan),
			})
		}
		if len(ids) == 0 {
			break
		}
	}
	return out, tx.Commit()
}

// ParseNotification parses a payload sent on Channel. all is true for "*"
// (reload everything).
func ParseNotification(payload string) (tenant tenancy.ID, epoch int64, all bool, err error) {
	if payload == "*" {
		return tenancy.ID{}, 0, true, nil
	}
	idText, epochText, ok := strings.Cut(payload, " ")
	if ok {
		if tenant, err = tenancy.ParseID(idText); err == nil {
			_, err = fmt.Sscanf(epochText, "%d", &epoch)
		}
	}
	if !ok || err != nil || epoch <= 0 {
		return tenancy.ID{}, 0, false, fmt.Errorf("registry: malformed notification %q: want \"<tenant id> <epoch>\" or \"*\"", payload)
	}
	return tenant, epoch, false, nil
}

// NotifyAll tells every router to reload every placement, e.g. after a
// shard's DSN was changed by hand.
func (s *Store) NotifyAll(ctx context.Context) error {
	_, err := s.db.ExecContext(ctx, "SELECT pg_notify($1, '*')", Channel)
	return wrap(err, "registry: notify all")
}
