package server

import (
	"context"
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tenantry/tenantry/examples/app/ent"
	_ "github.com/tenantry/tenantry/examples/app/ent/runtime" // the mixin's hooks and interceptors
	"github.com/tenantry/tenantry/tenancy"
	"github.com/tenantry/tenantry/tenancy/admission"
	"github.com/tenantry/tenantry/tenancy/metrics"
	"github.com/tenantry/tenantry/tenancy/ratelimit"
)

// Stack is the request path below the handlers: one generated client for
// every tenant, on the tenancy driver, behind an admission gate (per-plan
// concurrency caps, fair queue, rate limits) that the metrics recorder
// observes.
type Stack struct {
	Client *ent.Client
	// Admin is the client for admin work across tenants (admin.Fleet):
	// the same resolver without the gate and the per-tenant metrics, so
	// that a report is neither charged to the plan of the tenant whose
	// placement it reads through nor queued behind tenants; the shards'
	// admin pools bound it.
	Admin    *ent.Client
	Gate     *admission.Gate
	Recorder *metrics.Recorder
}

// StackOptions configure NewStack.
type StackOptions struct {
	// RateLimiter: nil means an in-process limiter (ratelimit.NewLocal);
	// pass a ratelimit.Redis to share budgets across replicas.
	RateLimiter admission.RateLimiter
	// Admission tunes the gate; its RateLimiter and Observer are set here.
	Admission admission.Config
}

// NewStack wires the client on resolver and registers the tenancy metrics
// on reg.
func NewStack(resolver tenancy.Resolver, reg prometheus.Registerer, opts StackOptions) (*Stack, error) {
	rl := opts.RateLimiter
	if rl == nil {
		rl = ratelimit.NewLocal()
	}
	rec := metrics.New(metrics.Options{})
	cfg := opts.Admission
	cfg.RateLimiter, cfg.Observer = rl, rec
	gate := admission.New(cfg)
	rec.WatchGate(gate)
	if reg != nil {
		if err := reg.Register(rec); err != nil {
			return nil, fmt.Errorf("server: register tenancy metrics: %w", err)
		}
	}
	drv := rec.Driver(tenancy.NewDriver(resolver, tenancy.WithGate(gate)), resolver)
	return &Stack{Client: ent.NewClient(ent.Driver(drv)), Admin: ent.NewClient(ent.Driver(tenancy.NewDriver(resolver))), Gate: gate, Recorder: rec}, nil
}

// ShardChecks returns a readiness check per shard: its app pool answers a
// ping.
func ShardChecks(shards []*tenancy.Shard) []Check {
	out := make([]Check, 0, len(shards))
	for _, sh := range shards {
		out = append(out, Check{Name: "shard " + sh.Name, Check: func(ctx context.Context) error {
			if sh.Pool == nil {
				return errors.New("no pool")
			}
			return sh.Pool.Ping(ctx)
		}})
	}
	return out
}
