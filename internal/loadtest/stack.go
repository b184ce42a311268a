package loadtest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/tenantry/tenantry/examples/app/ent"
	"github.com/tenantry/tenantry/examples/app/ent/customer"
	_ "github.com/tenantry/tenantry/examples/app/ent/runtime" // the mixin's hooks and interceptors
	"github.com/tenantry/tenantry/router"
	"github.com/tenantry/tenantry/tenancy"
	"github.com/tenantry/tenantry/tenancy/admission"
	"github.com/tenantry/tenantry/tenancy/ratelimit"
)

// StackConfig configures a Stack.
type StackConfig struct {
	// RegistryDSN is the registry the router reads and listens to.
	RegistryDSN string
	// Conns is each shard pool's size (default 8); the admission gate
	// admits as many statements per shard.
	Conns int
	// Redis, when set, holds the rate limits (shared across app replicas),
	// with the in-process fallback while it cannot be reached; nil: the
	// in-process limiter only.
	Redis redis.Scripter
	// Logger gets the router's and the limiter's logs (default slog.Default()).
	Logger *slog.Logger
}

// Stack is the runtime stack of an app, in process: router (registry,
// LISTEN/NOTIFY, one pool per shard), admission gate with a rate limiter,
// tenancy.Driver and the example app's scoped Ent client. As a Target, a
// read is Customer.Get of one of the tenant's customers and a write
// creates one Order.
type Stack struct {
	Router  *router.Router
	Gate    *admission.Gate
	Redis   *ratelimit.Redis // nil without StackConfig.Redis
	Client  *ent.Client
	nonce   string
	writes  atomic.Uint64
	mu      sync.RWMutex
	custIDs map[tenancy.ID][]uuid.UUID
}

var _ Target = (*Stack)(nil)

// NewStack connects the stack to the registry.
func NewStack(ctx context.Context, cfg StackConfig) (*Stack, error) {
	return newStack(ctx, cfg, nil)
}

// newStack connects the stack to the registry; build, when set, makes the
// gate and the client over the router and the limiter (the HTTP target
// takes the example app's own, server.NewStack).
func newStack(ctx context.Context, cfg StackConfig, build func(*router.Router, admission.RateLimiter) (*admission.Gate, *ent.Client, error)) (*Stack, error) {
	if cfg.Conns <= 0 {
		cfg.Conns = 8
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	r, err := router.New(ctx, router.Config{
		RegistryDSN: cfg.RegistryDSN,
		Logger:      cfg.Logger,
		ConfigurePool: func(_ string, kind router.PoolKind, pc *pgxpool.Config) error {
			if kind == router.PoolApp {
				pc.MaxConns = int32(cfg.Conns)
			}
			return nil
		},
	})
	if err != nil {
		return nil, err
	}
	s := &Stack{Router: r, nonce: uuid.NewString()[:8], custIDs: map[tenancy.ID][]uuid.UUID{}}
	var limiter admission.RateLimiter = ratelimit.NewLocal()
	if cfg.Redis != nil {
		s.Redis = ratelimit.NewRedis(cfg.Redis, ratelimit.RedisOptions{Logger: cfg.Logger})
		limiter = s.Redis
	}
	if build == nil {
		s.Gate = admission.New(admission.Config{RateLimiter: limiter})
		s.Client = ent.NewClient(ent.Driver(tenancy.NewDriver(r, tenancy.WithGate(s.Gate))))
		return s, nil
	}
	if s.Gate, s.Client, err = build(r, limiter); err != nil {
		r.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the router and its pools.
func (s *Stack) Close() error { return s.Router.Close() }

// Seed makes sure every tenant has perTenant customers (creating the
// missing ones through the scoped client) and remembers their ids for Do.
// Run it before the load, with 4 tenants at a time.
func (s *Stack) Seed(ctx context.Context, tenants []tenancy.ID, perTenant int) error {
	if perTenant <= 0 {
		perTenant = 5
	}
	var (
		next  atomic.Int64
		wg    sync.WaitGroup
		errMu sync.Mutex
		first error
	)
	for range 4 {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(tenants) || ctx.Err() != nil {
					return
				}
				if err := s.seed(tenancy.WithTenant(ctx, tenants[i]), tenants[i], perTenant); err != nil {
					errMu.Lock()
					if first == nil {
						first = fmt.Errorf("loadtest: seed tenant %s: %w", tenants[i], err)
					}
					errMu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}

func (s *Stack) seed(ctx context.Context, id tenancy.ID, n int) error {
	var ids []uuid.UUID
	err := patiently(func() (err error) {
		ids, err = s.Client.Customer.Query().Order(ent.Asc(customer.FieldCreatedAt)).Limit(n).IDs(ctx)
		return err
	})
	if err != nil {
		return err
	}
	if missing := n - len(ids); missing > 0 {
		bulk := make([]*ent.CustomerCreate, missing)
		for j := range bulk {
			bulk[j] = s.Client.Customer.Create().SetName(fmt.Sprintf("load customer %d", len(ids)+j)).SetEmail(uuid.NewString() + "@load.test")
		}
		var cs []*ent.Customer
		if err := patiently(func() (err error) { cs, err = s.Client.Customer.CreateBulk(bulk...).Save(ctx); return err }); err != nil {
			return err
		}
		for _, c := range cs {
			ids = append(ids, c.ID)
		}
	}
	s.mu.Lock()
	s.custIDs[id] = ids
	s.mu.Unlock()
	return nil
}

// patiently runs f until it is neither throttled nor busy (a tenant's plan
// may allow fewer statements at once than seeding takes), waiting as the
// limiter says, at most 50 times.
func patiently(f func() error) error {
	err := f()
	for try := 0; err != nil && try < 50 && (Classify(err) == Throttled || Classify(err) == Busy); try++ {
		time.Sleep(retryAfter(err))
		err = f()
	}
	return err
}

// retryAfter is how long a throttled or busy tenant should wait.
func retryAfter(err error) time.Duration {
	var r interface{ RetryAfter() time.Duration }
	if errors.As(err, &r) && r.RetryAfter() > 0 {
		return r.RetryAfter()
	}
	return 100 * time.Millisecond
}

// customer returns the customer request r reads (or writes an order of).
func (s *Stack) customer(r Request) (uuid.UUID, error) {
	s.mu.RLock()
	ids := s.custIDs[r.Tenant]
	s.mu.RUnlock()
	if len(ids) == 0 {
		return uuid.UUID{}, fmt.Errorf("loadtest: tenant %s was not seeded: call Seed first", r.Tenant)
	}
	return ids[r.Seq%uint64(len(ids))], nil
}

// orderNumber returns a new order number, unique across runs of this
// stack (runs repeat sequence numbers) and stacks (a random nonce).
func (s *Stack) orderNumber() string {
	return fmt.Sprintf("lt-%s-%d", s.nonce, s.writes.Add(1))
}

// Do implements Target.
func (s *Stack) Do(ctx context.Context, r Request) error {
	cid, err := s.customer(r)
	if err != nil {
		return err
	}
	ctx = tenancy.WithTenant(ctx, r.Tenant)
	if r.Op == Write {
		return s.Client.Order.Create().
			SetNumber(s.orderNumber()).
			SetCustomerID(cid).
			SetTotalCents(int64(r.Seq % 10000)).
			Exec(ctx)
	}
	c, err := s.Client.Customer.Get(ctx, cid)
	if err == nil && c.ID != cid {
		err = fmt.Errorf("loadtest: read customer %s of tenant %s, got %s", cid, r.Tenant, c.ID)
	}
	return err
}
