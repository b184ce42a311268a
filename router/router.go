package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenantry/tenantry/registry"
	"github.com/tenantry/tenantry/tenancy"
)

// ErrRegistryUnavailable is wrapped by Resolve's error for a tenant that is
// not cached while the registry cannot be reached. Cached tenants are
// served meanwhile. Retry later.
var ErrRegistryUnavailable = errors.New("router: registry unavailable: the tenant is not cached and the registry cannot be reached; cached tenants are still served; retry later")

// errClosed is the error of a placement built after the router closed.
var errClosed = errors.New("router: closed")

// PoolKind says which pool of a shard a PoolConfig hook configures.
type PoolKind string

const (
	// PoolApp is the shard's pool for the application role.
	PoolApp PoolKind = "app"
	// PoolAdmin is the shard's pool for the admin role (Unscoped contexts).
	PoolAdmin PoolKind = "admin"
	// PoolReplica is the pool of the shard's read replica (application role).
	PoolReplica PoolKind = "replica"
)

// Config configures a Router. RegistryDSN is required.
type Config struct {
	// RegistryDSN is the registry database's connection string. The router
	// reads it and listens on it.
	RegistryDSN string
	// AppRole and AdminRole replace the user of the shard DSNs in the app
	// and admin pools (default tenantry_app, tenantry_admin, as
	// migrate.DefaultRoles). A DSN's password is used only for its own user:
	// give the roles' passwords through PGPASSFILE or ConfigurePool.
	AppRole, AdminRole string
	// ConfigurePool, when set, adjusts every pool's configuration before the
	// pool is created: sizes, TLS, passwords, runtime parameters. By default
	// connections start with tenancy.DefaultLimits as session settings.
	ConfigurePool func(shard string, kind PoolKind, cfg *pgxpool.Config) error
	// TTL is how often the router reloads every placement whatever it has
	// heard, a fallback for lost notifications (default 5 minutes).
	TTL time.Duration
	// NegativeTTL is how long a tenant the registry does not know is
	// answered from the cache (default 1 s).
	NegativeTTL time.Duration
	// LookupTimeout bounds the registry lookup of an uncached tenant
	// (default 2 s).
	LookupTimeout time.Duration
	// UnscopedShard and UnscopedSchema are where Unscoped contexts that name
	// no tenant run (on the shard's admin pool). Empty: such contexts fail.
	UnscopedShard, UnscopedSchema string
	// RetiredPoolGrace is how long the pools of a shard whose DSN changed
	// (a failover, a new replica) stay open for what may still hold them,
	// placements resolved before the change and their open transactions,
	// before they are closed (default 1 minute).
	RetiredPoolGrace time.Duration
	// Logger receives reconnects and reload failures (default slog.Default()).
	Logger *slog.Logger
}

func (c *Config) defaults() {
	if c.AppRole == "" {
		c.AppRole = "tenantry_app"
	}
	if c.AdminRole == "" {
		c.AdminRole = "tenantry_admin"
	}
	if c.TTL <= 0 {
		c.TTL = 5 * time.Minute
	}
	if c.NegativeTTL <= 0 {
		c.NegativeTTL = time.Second
	}
	if c.LookupTimeout <= 0 {
		c.LookupTimeout = 2 * time.Second
	}
	if c.RetiredPoolGrace <= 0 {
		c.RetiredPoolGrace = time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// entry is what the router caches for one tenant: a placement or an error,
// never both. It is immutable once in the map.
type entry struct {
	epoch int64
	seq   uint64 // the load that produced it
	p     *tenancy.Placement
	err   error
	until int64 // unix nanos after which a negative entry is stale; 0: not negative
}

// Router is a tenancy.Resolver backed by the registry. It is safe for
// concurrent use. Close it to stop listening and close its pools.
type Router struct {
	cfg   Config
	store *registry.Store
	log   *slog.Logger

	mu      sync.RWMutex
	entries map[tenancy.ID]*entry

	shardMu  sync.Mutex
	shards   map[string]*shardPools
	retired  []*shardPools
	unscoped *tenancy.Placement
	closed   bool // no pools are opened after Close

	seq atomic.Uint64 // numbers loads, to order full reloads against others

	pendMu     sync.Mutex
	pending    map[tenancy.ID]int64 // tenants to reload -> notified epoch
	pendAll    bool
	pendResync bool // the full reload follows a reconnect: take the registry's epochs as they are
	wake       chan struct{}

	missMu   sync.Mutex
	inflight map[tenancy.ID]*lookup

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	stats struct {
		notifications, reloads, fullReloads, misses, reconnects atomic.Int64
		listening                                               atomic.Bool
		lastErr                                                 atomic.Pointer[string]
	}
}

var _ tenancy.Resolver = (*Router)(nil)

type shardPools struct {
	dsn, replicaDSN string
	shard           *tenancy.Shard
	seq             uint64 // the latest load that read these DSNs
}

type lookup struct {
	done chan struct{}
	p    *tenancy.Placement
	err  error
}

// New connects to the registry, starts listening for placement changes and
// loads every tenant's placement. It fails when the registry cannot be
// reached; after that, the router rides out registry outages.
func New(ctx context.Context, cfg Config) (*Router, error) {
	cfg.defaults()
	store, err := registry.Open(ctx, cfg.RegistryDSN)
	if err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}
	r := &Router{
		cfg:      cfg,
		store:    store,
		log:      cfg.Logger,
		entries:  map[tenancy.ID]*entry{},
		shards:   map[string]*shardPools{},
		pending:  map[tenancy.ID]int64{},
		wake:     make(chan struct{}, 1),
		inflight: map[tenancy.ID]*lookup{},
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	// Listen before loading, so that no change falls between the two.
	conn, err := r.connectListener(ctx)
	if err != nil {
		store.Close()
		return nil, err
	}
	if err := r.reloadAll(ctx, false); err != nil {
		conn.Close(context.Background())
		r.closePools()
		store.Close()
		return nil, err
	}
	r.wg.Add(2)
	go r.listen(conn)
	go r.reloader()
	return r, nil
}

// Resolve implements tenancy.Resolver. A cached tenant costs a map lookup
// under a read lock and no allocation.
func (r *Router) Resolve(ctx context.Context, tenant tenancy.ID) (*tenancy.Placement, error) {
	r.mu.RLock()
	e := r.entries[tenant]
	r.mu.RUnlock()
	if e != nil && (e.until == 0 || time.Now().UnixNano() < e.until) {
		return e.p, e.err
	}
	return r.miss(ctx, tenant)
}

// ResolveUnscoped implements tenancy.Resolver: the placement configured by
// UnscopedShard and UnscopedSchema.
func (r *Router) ResolveUnscoped(context.Context) (*tenancy.Placement, error) {
	r.shardMu.Lock()
	p := r.unscoped
	r.shardMu.Unlock()
	if p == nil {
		return nil, fmt.Errorf("%w: router: no UnscopedShard configured for unscoped access without a tenant", tenancy.ErrInvalidPlacement)
	}
	return p, nil
}

// Shards returns the shards the router has pools for, e.g. to size an
// admission gate.
func (r *Router) Shards() []*tenancy.Shard {
	r.shardMu.Lock()
	defer r.shardMu.Unlock()
	out := make([]*tenancy.Shard, 0, len(r.shards))
	for _, sp := range r.shards {
		out = append(out, sp.shard)
	}
	return out
}

// Stats are counters of a router's work.
type Stats struct {
	Notifications int64  // placement notifications received
	Reloads       int64  // tenants reloaded after a notification or a miss
	FullReloads   int64  // reloads of every placement (start, reconnect, TTL)
	Misses        int64  // registry lookups of uncached tenants
	Reconnects    int64  // times the listening connection was re-established
	Listening     bool   // whether the listening connection is up
	Tenants       int    // cached entries
	LastError     string // the last registry error, "" if none since the last success
}

// Stats returns the router's counters.
func (r *Router) Stats() Stats {
	r.mu.RLock()
	n := len(r.entries)
	r.mu.RUnlock()
	s := Stats{
		Notifications: r.stats.notifications.Load(),
		Reloads:       r.stats.reloads.Load(),
		FullReloads:   r.stats.fullReloads.Load(),
		Misses:        r.stats.misses.Load(),
		Reconnects:    r.stats.reconnects.Load(),
		Listening:     r.stats.listening.Load(),
		Tenants:       n,
	}
	if e := r.stats.lastErr.Load(); e != nil {
		s.LastError = *e
	}
	return s
}

func (r *Router) failed(err error) {
	if err == nil {
		r.stats.lastErr.Store(nil)
		return
	}
	msg := err.Error()
	r.stats.lastErr.Store(&msg)
}

// Close stops listening and reloading and closes every pool the router
// opened. Resolve must not be called after Close.
func (r *Router) Close() error {
	r.cancel()
	r.wg.Wait()
	r.closePools()
	return r.store.Close()
}

func (r *Router) closePools() {
	r.shardMu.Lock()
	defer r.shardMu.Unlock()
	r.closed = true
	for _, sp := range append(r.retired, mapValues(r.shards)...) {
		sp.close()
	}
	r.shards, r.retired = map[string]*shardPools{}, nil
}

// close closes the shard's pools, waiting for their connections in use.
func (sp *shardPools) close() {
	for _, p := range []*pgxpool.Pool{sp.shard.Pool, sp.shard.Admin, sp.shard.Replica} {
		if p != nil {
			p.Close()
		}
	}
}

// closeLater closes a replaced shard's pools after RetiredPoolGrace,
// unless the router has closed them by then.
func (r *Router) closeLater(sp *shardPools) {
	time.AfterFunc(r.cfg.RetiredPoolGrace, func() {
		r.shardMu.Lock()
		i := slices.Index(r.retired, sp)
		if i >= 0 {
			r.retired = slices.Delete(r.retired, i, i+1)
		}
		r.shardMu.Unlock()
		if i >= 0 {
			sp.close()
			r.log.Info("router: closed the pools of a shard's previous DSN", "shard", sp.shard.Name, "grace", r.cfg.RetiredPoolGrace)
		}
	})
}

func mapValues[K comparable, V any](m map[K]V) []V {
	out := make([]V, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// ----- building placements

// shardFor returns the pools of a registry shard as load seq read it,
// creating them on first use or when its DSNs changed. Pools connect
// lazily. The pools of DSNs read by a later load stay: a load that read the
// registry before a failover and finishes after it does not swap the shard
// back to its old server.
//
// Replacing a shard's pools queues a reload of every placement, so that
// the shard's other tenants move to the new pools before the old ones
// close (RetiredPoolGrace).
func (r *Router) shardFor(sh registry.Shard, seq uint64) (*tenancy.Shard, error) {
	r.shardMu.Lock()
	defer r.shardMu.Unlock()
	if r.closed {
		return nil, errClosed
	}
	old := r.shards[sh.Name]
	if old != nil {
		if old.dsn == sh.DSN && old.replicaDSN == sh.ReplicaDSN {
			old.seq = max(old.seq, seq)
			return old.shard, nil
		}
		if old.seq > seq {
			return old.shard, nil
		}
		// The DSN changed (failover, new replica): new pools; the old ones
		// serve what still holds them for a grace period.
		r.retired = append(r.retired, old)
		delete(r.shards, sh.Name)
	}
	out := &tenancy.Shard{Name: sh.Name}
	var err error
	if out.Pool, err = r.pool(sh.Name, PoolApp, sh.DSN, r.cfg.AppRole); err == nil {
		if out.Admin, err = r.pool(sh.Name, PoolAdmin, sh.DSN, r.cfg.AdminRole); err == nil && sh.ReplicaDSN != "" {
			out.Replica, err = r.pool(sh.Name, PoolReplica, sh.ReplicaDSN, r.cfg.AppRole)
		}
	}
	if err != nil {
		for _, p := range []*pgxpool.Pool{out.Pool, out.Admin, out.Replica} {
			if p != nil {
				p.Close()
			}
		}
		return nil, err
	}
	r.shards[sh.Name] = &shardPools{dsn: sh.DSN, replicaDSN: sh.ReplicaDSN, shard: out, seq: seq}
	if old != nil {
		r.request(tenancy.ID{}, 0, true)
		if r.unscoped != nil && r.unscoped.Shard == old.shard {
			// Unscoped access follows the shard to its new pools.
			if p, err := r.unscopedOn(out); err == nil {
				r.unscoped = p
			} else {
				r.log.Warn("router: unscoped access stays on the shard's previous pools", "shard", sh.Name, "err", err)
			}
		}
		r.closeLater(old)
	}
	return out, nil
}

func (r *Router) pool(shard string, kind PoolKind, dsn, role string) (*pgxpool.Pool, error) {
	dsn, err := registry.WithUser(dsn, role)
	if err != nil {
		return nil, fmt.Errorf("router: shard %q %s pool: %w", shard, kind, err)
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil { // pgx redacts passwords in parse errors
		return nil, fmt.Errorf("router: shard %q %s pool: %w", shard, kind, err)
	}
	params, err := tenancy.DefaultLimits.RuntimeParams()
	if err != nil {
		return nil, err
	}
	for k, v := range params {
		if _, set := cfg.ConnConfig.RuntimeParams[k]; !set {
			cfg.ConnConfig.RuntimeParams[k] = v
		}
	}
	if _, set := cfg.ConnConfig.RuntimeParams["application_name"]; !set {
		cfg.ConnConfig.RuntimeParams["application_name"] = "tenantry"
	}
	if r.cfg.ConfigurePool != nil {
		if err := r.cfg.ConfigurePool(shard, kind, cfg); err != nil {
			return nil, fmt.Errorf("router: shard %q %s pool: %w", shard, kind, err)
		}
	}
	p, err := pgxpool.NewWithConfig(r.ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("router: shard %q %s pool: %w", shard, kind, err)
	}
	return p, nil
}

// build turns a route into a cache entry.
func (r *Router) build(rt registry.Route, seq uint64) *entry {
	e := &entry{epoch: rt.Epoch, seq: seq}
	state := func(sentinel error, what string) error {
		return fmt.Errorf("tenant %s (%s) is %s: %w", rt.Tenant, rt.Slug, what, sentinel)
	}
	switch rt.State {
	case registry.Suspended:
		e.err = state(tenancy.ErrTenantSuspended, "suspended")
		return e
	case registry.Deleted:
		e.err = state(tenancy.ErrTenantDeleted, "deleted")
		return e
	case registry.Offboarded:
		e.err = state(tenancy.ErrTenantDeleted, "offboarded (deleted, restorable until its retention period ends)")
		return e
	case registry.Active, registry.ReadOnly, registry.Moving:
	default: // provisioning, or a state this version does not know
		e.err = state(tenancy.ErrUnknownTenant, string(rt.State)+", not served yet")
		return e
	}
	// A placement that cannot be built now (pools, a hook, a bad DSN or
	// schema) is tried again: by every reload, and by a lookup once
	// NegativeTTL has passed.
	retry := time.Now().Add(r.cfg.NegativeTTL).UnixNano()
	shard, err := r.shardFor(rt.Shard, seq)
	if err != nil {
		e.err, e.until = fmt.Errorf("tenant %s (%s): %w", rt.Tenant, rt.Slug, err), retry
		r.log.Error("router: cannot serve tenant", "tenant", rt.Tenant.String(), "error", err.Error())
		return e
	}
	var opts []tenancy.PlacementOption
	if rt.State == registry.ReadOnly || rt.State == registry.Moving {
		opts = append(opts, tenancy.FenceWrites(string(rt.State)))
	}
	if rt.Plan.ReplicaReads {
		opts = append(opts, tenancy.ReplicaReads())
	}
	limits := rt.Plan.Limits
	limits.Plan = rt.Plan.Name
	p, err := tenancy.NewPlacement(rt.Tenant, shard, rt.Schema, limits, opts...)
	if err != nil {
		e.err, e.until = fmt.Errorf("tenant %s (%s): %w", rt.Tenant, rt.Slug, err), retry
		r.log.Error("router: cannot serve tenant", "tenant", rt.Tenant.String(), "error", err.Error())
		return e
	}
	e.p = p
	return e
}

// apply stores the entries of routes loaded by load seq, keeping newer
// cached epochs. With full set, it also drops tenants the registry no
// longer has and that no later load put in the cache. With resync (a full
// reload after the listener reconnected), the registry's epochs are taken
// as they are, lower ones too, unless a later load cached the tenant: a
// registry that failed over to a standby or was restored may have lost its
// last changes, and its epochs count again from there.
func (r *Router) apply(routes []registry.Route, seq uint64, full, resync bool, asked []tenancy.ID) {
	// Build outside the lock, skipping what the cache has already: the same
	// epoch on the same shard pools.
	fresh := make(map[tenancy.ID]*entry, len(routes))
	r.mu.RLock()
	var todo []registry.Route
	for _, rt := range routes {
		// With resync every entry is rebuilt: after a rollback the
		// registry's epoch may have grown back to the cached number with
		// other content (a change committed after the lost ones).
		if old := r.entries[rt.Tenant]; resync || old == nil || old.until != 0 || old.epoch < rt.Epoch || r.shardChanged(old, rt.Shard) {
			todo = append(todo, rt)
		}
	}
	r.mu.RUnlock()
	for _, rt := range todo {
		fresh[rt.Tenant] = r.build(rt, seq)
	}
	seen := make(map[tenancy.ID]bool, len(routes))
	for _, rt := range routes {
		seen[rt.Tenant] = true
	}
	unknownUntil := time.Now().Add(r.cfg.NegativeTTL).UnixNano()
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, e := range fresh {
		// Never go back to an older epoch; at the same epoch, the later load
		// wins (it may carry new shard pools).
		if old := r.entries[id]; old == nil || old.until != 0 || old.epoch < e.epoch || ((old.epoch == e.epoch || resync) && old.seq < e.seq) {
			r.entries[id] = e
		}
	}
	if full {
		for id, old := range r.entries {
			if !seen[id] && old.seq < seq {
				delete(r.entries, id)
			}
		}
	}
	for _, id := range asked {
		if !seen[id] {
			if old := r.entries[id]; old == nil || old.seq < seq {
				r.entries[id] = &entry{seq: seq, until: unknownUntil,
					err: fmt.Errorf("tenant %s: %w", id, tenancy.ErrUnknownTenant)}
			}
		}
	}
}

// shardChanged reports whether a cached placement's shard pools are not the
// ones the router would use for sh now (its DSNs changed).
func (r *Router) shardChanged(old *entry, sh registry.Shard) bool {
	if old.p == nil {
		return false
	}
	r.shardMu.Lock()
	defer r.shardMu.Unlock()
	sp := r.shards[sh.Name]
	return sp == nil || sp.shard != old.p.Shard || sp.dsn != sh.DSN || sp.replicaDSN != sh.ReplicaDSN
}

// reloadAll loads every placement and the unscoped shard's DSNs; resync
// as apply.
func (r *Router) reloadAll(ctx context.Context, resync bool) error {
	seq := r.seq.Add(1)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	routes, err := r.store.Routes(ctx)
	if err != nil {
		r.failed(err)
		return fmt.Errorf("router: load placements: %w", err)
	}
	r.apply(routes, seq, true, resync, nil)
	if r.cfg.UnscopedShard != "" {
		if err := r.setUnscoped(ctx, seq); err != nil {
			r.failed(err)
			return err
		}
	}
	r.stats.fullReloads.Add(1)
	r.failed(nil)
	return nil
}

// reload loads the given tenants.
func (r *Router) reload(ctx context.Context, ids []tenancy.ID, timeout time.Duration) error {
	seq := r.seq.Add(1)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	routes, err := r.store.Routes(ctx, ids...)
	if err != nil && ctx.Err() == nil {
		// Once more: the first use of a pooled connection that died with
		// the registry fails, the next one connects afresh.
		routes, err = r.store.Routes(ctx, ids...)
	}
	if err != nil {
		r.failed(err)
		return err
	}
	r.apply(routes, seq, false, false, ids)
	r.stats.reloads.Add(int64(len(ids)))
	r.failed(nil)
	return nil
}

// miss looks an uncached tenant up in the registry, one lookup per tenant
// at a time.
func (r *Router) miss(ctx context.Context, id tenancy.ID) (*tenancy.Placement, error) {
	r.missMu.Lock()
	l := r.inflight[id]
	if l == nil {
		l = &lookup{done: make(chan struct{})}
		r.inflight[id] = l
		r.missMu.Unlock()
		r.stats.misses.Add(1)
		if err := r.reload(context.WithoutCancel(ctx), []tenancy.ID{id}, r.cfg.LookupTimeout); err != nil {
			l.err = fmt.Errorf("tenant %s: %w: %w", id, ErrRegistryUnavailable, err)
		} else {
			r.mu.RLock()
			e := r.entries[id]
			r.mu.RUnlock()
			if e != nil {
				l.p, l.err = e.p, e.err
			} else {
				l.err = fmt.Errorf("tenant %s: %w", id, tenancy.ErrUnknownTenant)
			}
		}
		r.missMu.Lock()
		delete(r.inflight, id)
		r.missMu.Unlock()
		close(l.done)
		return l.p, l.err
	}
	r.missMu.Unlock()
	select {
	case <-l.done:
		return l.p, l.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// setUnscoped points unscoped access at the pools of UnscopedShard as
// load seq reads it, unless it is there already.
func (r *Router) setUnscoped(ctx context.Context, seq uint64) error {
	sh, err := r.store.Shard(ctx, r.cfg.UnscopedShard)
	if err != nil {
		return fmt.Errorf("router: unscoped shard: %w", err)
	}
	shard, err := r.shardFor(sh, seq)
	if err != nil {
		return err
	}
	r.shardMu.Lock()
	defer r.shardMu.Unlock()
	if r.unscoped != nil && r.unscoped.Shard == shard {
		return nil
	}
	p, err := r.unscopedOn(shard)
	if err != nil {
		return err
	}
	r.unscoped = p
	return nil
}

// unscopedOn returns the placement of unscoped access without a tenant on
// shard's pools.
func (r *Router) unscopedOn(shard *tenancy.Shard) (*tenancy.Placement, error) {
	p, err := tenancy.NewPlacement(tenancy.ID{}, shard, r.cfg.UnscopedSchema, tenancy.DefaultLimits)
	if err != nil {
		return nil, fmt.Errorf("router: unscoped placement: %w", err)
	}
	return p, nil
}

// ----- listening

const (
	minBackoff = 50 * time.Millisecond
	maxBackoff = 5 * time.Second
	// pingEvery: a listening connection silent this long is pinged, so that a
	// dead registry is noticed even without a TCP reset.
	pingEvery = 10 * time.Second
)

func (r *Router) connectListener(ctx context.Context) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(r.cfg.RegistryDSN)
	if err != nil {
		return nil, fmt.Errorf("router: registry: %w", err)
	}
	cfg.RuntimeParams["application_name"] = "tenantry-router"
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(cctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("router: registry: listen: %w", err)
	}
	if _, err := conn.Exec(cctx, "LISTEN "+registry.Channel); err != nil {
		conn.Close(context.Background())
		return nil, fmt.Errorf("router: registry: listen: %w", err)
	}
	r.stats.listening.Store(true)
	return conn, nil
}

// listen receives notifications until the router closes, reconnecting with
// backoff; after a reconnect everything is reloaded.
func (r *Router) listen(conn *pgx.Conn) {
	defer r.wg.Done()
	backoff := minBackoff
	for {
		if conn == nil {
			var err error
			conn, err = r.connectListener(r.ctx)
			if err != nil {
				if r.ctx.Err() != nil {
					return
				}
				r.failed(err)
				r.log.Warn("router: registry unreachable; serving cached placements", "retry_in", backoff.String(), "error", err.Error())
				if !sleep(r.ctx, backoff) {
					return
				}
				backoff = min(backoff*2, maxBackoff)
				continue
			}
			backoff = minBackoff
			r.stats.reconnects.Add(1)
			r.log.Info("router: listening to the registry again; reloading every placement")
			r.resync() // notifications may have been missed, epochs lost
		}
		wctx, cancel := context.WithTimeout(r.ctx, pingEvery)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		if err == nil {
			r.stats.notifications.Add(1)
			id, epoch, all, perr := registry.ParseNotification(n.Payload)
			if perr != nil {
				r.log.Warn("router: ignoring notification", "error", perr.Error())
				continue
			}
			r.request(id, epoch, all)
			continue
		}
		if r.ctx.Err() != nil {
			conn.Close(context.Background())
			return
		}
		if wctx.Err() != nil && !conn.IsClosed() { // quiet: check the connection
			pctx, cancel := context.WithTimeout(r.ctx, 5*time.Second)
			err = conn.Ping(pctx)
			cancel()
			if err == nil {
				continue
			}
		}
		r.stats.listening.Store(false)
		r.failed(err)
		r.log.Warn("router: lost the registry connection; serving cached placements", "error", err.Error())
		conn.Close(context.Background())
		conn = nil
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// resync queues a full reload that takes the registry's epochs as they are.
func (r *Router) resync() {
	r.pendMu.Lock()
	r.pendResync = true
	r.pendMu.Unlock()
	r.request(tenancy.ID{}, 0, true)
}

// request queues a reload of tenant (at least to epoch), or of everything.
func (r *Router) request(tenant tenancy.ID, epoch int64, all bool) {
	if !all {
		r.mu.RLock()
		e := r.entries[tenant]
		r.mu.RUnlock()
		if e != nil && e.until == 0 && e.epoch >= epoch {
			return // already as new
		}
	}
	r.pendMu.Lock()
	if all {
		r.pendAll = true
	} else if epoch > r.pending[tenant] {
		r.pending[tenant] = epoch
	}
	r.pendMu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// reloader performs queued reloads, batching what queued up meanwhile, and
// the TTL reloads. Failed reloads are retried with backoff.
func (r *Router) reloader() {
	defer r.wg.Done()
	ttl := time.NewTicker(r.cfg.TTL)
	defer ttl.Stop()
	backoff := minBackoff
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-r.wake:
		case <-ttl.C:
			r.request(tenancy.ID{}, 0, true)
			continue
		}
		r.pendMu.Lock()
		all, resync, pending := r.pendAll, r.pendResync, r.pending
		r.pendAll, r.pendResync, r.pending = false, false, map[tenancy.ID]int64{}
		r.pendMu.Unlock()
		var err error
		if all {
			err = r.reloadAll(r.ctx, resync)
		} else if len(pending) > 0 {
			ids := make([]tenancy.ID, 0, len(pending))
			for id := range pending {
				ids = append(ids, id)
			}
			err = r.reload(r.ctx, ids, 10*time.Second)
		}
		if err == nil {
			backoff = minBackoff
			continue
		}
		if r.ctx.Err() != nil {
			return
		}
		r.log.Warn("router: reload failed; serving cached placements", "retry_in", backoff.String(), "error", err.Error())
		// Put the work back and retry.
		r.pendMu.Lock()
		r.pendAll = r.pendAll || all
		r.pendResync = r.pendResync || resync
		for id, epoch := range pending {
			if epoch > r.pending[id] {
				r.pending[id] = epoch
			}
		}
		r.pendMu.Unlock()
		if !sleep(r.ctx, backoff) {
			return
		}
		backoff = min(backoff*2, maxBackoff)
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
}
