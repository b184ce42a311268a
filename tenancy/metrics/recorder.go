package metrics

import (
	"context"
	"errors"
	"math"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tenantry/tenantry/tenancy"
	"github.com/tenantry/tenantry/tenancy/admission"
	"github.com/tenantry/tenantry/tenancy/ratelimit"
)

// Options configure a Recorder. The zero value is usable.
type Options struct {
	// Namespace of every metric. Default "tenantry".
	Namespace string
	// TopN is how many of the busiest tenants get series of their own.
	// Default 10.
	TopN int
	// MaxPlans bounds the plan label: plans seen after this many are
	// counted as "other". Default 32.
	MaxPlans int
	// Buckets of the latency histograms, in seconds. Default 0.25 ms to
	// about 8 s, doubling.
	Buckets []float64
	// HalfLife of the activity score that ranks tenants: a tenant's
	// statements count half as much after this long. Default 1 min.
	HalfLife time.Duration
	// IdleAfter: a tenant without activity for this long is forgotten (its
	// counters start again from zero when it comes back). Default 15 min.
	IdleAfter time.Duration
}

// Recorder collects tenant activity; see the package documentation. It is
// safe for concurrent use and does not allocate per observation once it
// has seen the tenant and the plan.
type Recorder struct {
	opts Options

	queries, errs *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	wait          *prometheus.HistogramVec
	rejected      *prometheus.CounterVec

	plansMu sync.RWMutex
	plans   map[string]*planMetrics
	nplans  int

	parts [64]tenantPart

	gatesMu sync.Mutex
	gates   []*admission.Gate

	collectMu   sync.Mutex
	lastCollect int64

	shardCapacity, shardInFlight, shardQueued       *prometheus.Desc
	topQueries, topErrors, topRejected, topDuration *prometheus.Desc
	topInFlight, topQueued                          *prometheus.Desc
}

type planMetrics struct {
	queries, errs              prometheus.Counter
	duration, wait             prometheus.Observer
	throttled, busy, cancelled prometheus.Counter
}

type tenantPart struct {
	mu      sync.Mutex
	tenants map[tenancy.ID]*tenantStats
	_       [48]byte
}

type tenantStats struct {
	id   tenancy.ID
	name string
	plan string // guarded by the part's mutex

	queries, errs, admitted    atomic.Uint64
	throttled, busy, cancelled atomic.Uint64
	lat                        hist
	lastSeen                   atomic.Int64

	lastTotal uint64  // activity total at the previous scrape (collectMu)
	score     float64 // decayed activity (collectMu)
}

var epoch = time.Now()

func monotonic() int64 { return int64(time.Since(epoch)) }

// New returns a Recorder. Register it with a prometheus.Registerer.
func New(opts Options) *Recorder {
	if opts.Namespace == "" {
		opts.Namespace = "tenantry"
	}
	if opts.TopN <= 0 {
		opts.TopN = 10
	}
	if opts.MaxPlans <= 0 {
		opts.MaxPlans = 32
	}
	if len(opts.Buckets) == 0 {
		opts.Buckets = prometheus.ExponentialBuckets(0.00025, 2, 16)
	}
	if opts.HalfLife <= 0 {
		opts.HalfLife = time.Minute
	}
	if opts.IdleAfter <= 0 {
		opts.IdleAfter = 15 * time.Minute
	}
	ns := opts.Namespace
	r := &Recorder{
		opts: opts,
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "queries_total",
			Help: "Statements and transactions started, by plan."}, []string{"plan"}),
		errs: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "query_errors_total",
			Help: "Statements and transactions that failed, by plan (admission rejections excluded)."}, []string{"plan"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "query_duration_seconds",
			Help: "Statement latency, by plan (to the first row for queries).", Buckets: opts.Buckets}, []string{"plan"}),
		wait: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "admission_wait_seconds",
			Help: "Time queued at the admission gate, by plan.", Buckets: opts.Buckets}, []string{"plan"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "admission_rejected_total",
			Help: "Statements the gate refused, by plan and reason (throttled, busy, cancelled)."}, []string{"plan", "reason"}),
		plans: map[string]*planMetrics{},

		shardCapacity: prometheus.NewDesc(ns+"_shard_capacity", "Statements a shard's pool admits at once.", []string{"shard", "pool"}, nil),
		shardInFlight: prometheus.NewDesc(ns+"_shard_in_flight", "Statements holding connections of a shard's pool.", []string{"shard", "pool"}, nil),
		shardQueued:   prometheus.NewDesc(ns+"_shard_queued", "Statements waiting for a shard's pool at the gate.", []string{"shard", "pool"}, nil),
		topQueries: prometheus.NewDesc(ns+"_top_tenant_queries_total",
			"Statements and transactions of one of the busiest tenants (since the process started).", []string{"tenant", "plan"}, nil),
		topErrors: prometheus.NewDesc(ns+"_top_tenant_query_errors_total",
			"Failed statements and transactions of one of the busiest tenants.", []string{"tenant", "plan"}, nil),
		topRejected: prometheus.NewDesc(ns+"_top_tenant_rejected_total",
			"Statements of one of the busiest tenants refused by the gate.", []string{"tenant", "plan", "reason"}, nil),
		topDuration: prometheus.NewDesc(ns+"_top_tenant_query_duration_seconds",
			"Statement latency of one of the busiest tenants.", []string{"tenant", "plan"}, nil),
		topInFlight: prometheus.NewDesc(ns+"_top_tenant_in_flight",
			"Statements of one of the busiest tenants holding connections of a shard.", []string{"tenant", "plan", "shard"}, nil),
		topQueued: prometheus.NewDesc(ns+"_top_tenant_queued",
			"Statements of one of the busiest tenants waiting at a shard's gate.", []string{"tenant", "plan", "shard"}, nil),
	}
	for i := range r.parts {
		r.parts[i].tenants = map[tenancy.ID]*tenantStats{}
	}
	return r
}

// WatchGate makes scrapes report g's queue depth and connections in use.
func (r *Recorder) WatchGate(g *admission.Gate) {
	r.gatesMu.Lock()
	r.gates = append(r.gates, g)
	r.gatesMu.Unlock()
}

func planLabel(plan string) string {
	if plan == "" {
		return "default"
	}
	return plan
}

// plan returns the metrics of a plan, creating them on first use.
func (r *Recorder) plan(name string) *planMetrics {
	r.plansMu.RLock()
	pm := r.plans[name]
	r.plansMu.RUnlock()
	if pm != nil {
		return pm
	}
	r.plansMu.Lock()
	defer r.plansMu.Unlock()
	if pm = r.plans[name]; pm != nil {
		return pm
	}
	label := planLabel(name)
	if r.nplans >= r.opts.MaxPlans {
		label = "other"
	} else {
		r.nplans++
	}
	pm = &planMetrics{
		queries:   r.queries.WithLabelValues(label),
		errs:      r.errs.WithLabelValues(label),
		duration:  r.duration.WithLabelValues(label),
		wait:      r.wait.WithLabelValues(label),
		throttled: r.rejected.WithLabelValues(label, "throttled"),
		busy:      r.rejected.WithLabelValues(label, "busy"),
		cancelled: r.rejected.WithLabelValues(label, "cancelled"),
	}
	r.plans[name] = pm
	return pm
}

// tenant returns the stats of a tenant, creating them on first use, and
// notes its plan.
func (r *Recorder) tenant(id tenancy.ID, plan string, planKnown bool) *tenantStats {
	pt := &r.parts[id[15]%byte(len(r.parts))]
	pt.mu.Lock()
	ts := pt.tenants[id]
	if ts == nil {
		ts = &tenantStats{id: id, name: id.String(), plan: plan}
		ts.lat.init(len(r.opts.Buckets))
		pt.tenants[id] = ts
	} else if planKnown && ts.plan != plan {
		ts.plan = plan
	}
	pt.mu.Unlock()
	ts.lastSeen.Store(monotonic())
	return ts
}

// knownPlan returns the plan last seen for a tenant.
func (r *Recorder) knownPlan(id tenancy.ID) (string, bool) {
	pt := &r.parts[id[15]%byte(len(r.parts))]
	pt.mu.Lock()
	defer pt.mu.Unlock()
	if ts := pt.tenants[id]; ts != nil {
		return ts.plan, true
	}
	return "", false
}

// Admitted implements admission.Observer.
func (r *Recorder) Admitted(p *tenancy.Placement, wait time.Duration) {
	if p.Tenant.IsZero() {
		return
	}
	r.plan(p.Limits.Plan).wait.Observe(wait.Seconds())
	r.tenant(p.Tenant, p.Limits.Plan, true).admitted.Add(1)
}

// Rejected implements admission.Observer.
func (r *Recorder) Rejected(p *tenancy.Placement, err error, _ time.Duration) {
	if p.Tenant.IsZero() {
		return
	}
	pm := r.plan(p.Limits.Plan)
	ts := r.tenant(p.Tenant, p.Limits.Plan, true)
	switch {
	case errors.Is(err, ratelimit.ErrThrottled):
		pm.throttled.Inc()
		ts.throttled.Add(1)
	case errors.Is(err, admission.ErrTenantBusy):
		pm.busy.Inc()
		ts.busy.Add(1)
	default:
		pm.cancelled.Inc()
		ts.cancelled.Add(1)
	}
}

// Released implements admission.Observer.
func (*Recorder) Released(*tenancy.Placement) {}

var _ admission.Observer = (*Recorder)(nil)

// statement records one statement or transaction of the tenant in ctx.
func (r *Recorder) statement(ctx context.Context, res tenancy.Resolver, start int64, err error) {
	id, ok := tenancy.FromContext(ctx)
	if !ok {
		return
	}
	if errors.Is(err, ratelimit.ErrThrottled) || errors.Is(err, admission.ErrTenantBusy) || errors.Is(err, admission.ErrWaitCancelled) {
		return // counted by the gate
	}
	d := float64(monotonic()-start) / 1e9
	plan, known := r.knownPlan(id)
	if !known && res != nil {
		if p, rerr := res.Resolve(ctx, id); rerr == nil {
			plan, known = p.Limits.Plan, true
		}
	}
	pm := r.plan(plan)
	ts := r.tenant(id, plan, known)
	pm.queries.Inc()
	ts.queries.Add(1)
	pm.duration.Observe(d)
	ts.lat.observe(r.opts.Buckets, d)
	if err != nil {
		pm.errs.Inc()
		ts.errs.Add(1)
	}
}

// hist is a fixed-bucket histogram of atomic counters.
type hist struct {
	counts  []atomic.Uint64 // per bucket (not cumulative), last one +Inf
	sumBits atomic.Uint64
	count   atomic.Uint64
}

func (h *hist) init(n int) { h.counts = make([]atomic.Uint64, n+1) }

func (h *hist) observe(buckets []float64, v float64) {
	h.counts[sort.SearchFloat64s(buckets, v)].Add(1)
	for {
		old := h.sumBits.Load()
		if h.sumBits.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			break
		}
	}
	h.count.Add(1)
}

// Describe implements prometheus.Collector.
func (r *Recorder) Describe(ch chan<- *prometheus.Desc) {
	r.queries.Describe(ch)
	r.errs.Describe(ch)
	r.duration.Describe(ch)
	r.wait.Describe(ch)
	r.rejected.Describe(ch)
	for _, d := range []*prometheus.Desc{r.shardCapacity, r.shardInFlight, r.shardQueued,
		r.topQueries, r.topErrors, r.topRejected, r.topDuration, r.topInFlight, r.topQueued} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (r *Recorder) Collect(ch chan<- prometheus.Metric) {
	r.collectMu.Lock()
	defer r.collectMu.Unlock()
	r.queries.Collect(ch)
	r.errs.Collect(ch)
	r.duration.Collect(ch)
	r.wait.Collect(ch)
	r.rejected.Collect(ch)

	// Gate state: per shard pool always, per tenant and shard (its pools
	// summed) for the top tenants only.
	perTenant := map[tenancy.ID][]slot{}
	r.gatesMu.Lock()
	gates := slices.Clone(r.gates)
	r.gatesMu.Unlock()
	// A gate keeps the state of a pool the router has since replaced (a
	// shard's DSN changed), and several gates may watch one shard: sum per
	// (shard, pool), so that each series is collected once.
	type poolKey struct{ shard, pool string }
	type poolSum struct{ capacity, inFlight, queued int }
	var pools []poolKey
	sums := map[poolKey]*poolSum{}
	for _, g := range gates {
		for _, s := range g.Stats() {
			k := poolKey{s.Shard, s.Pool}
			sum := sums[k]
			if sum == nil {
				sum = &poolSum{}
				sums[k] = sum
				pools = append(pools, k)
			}
			sum.capacity = max(sum.capacity, s.Capacity) // a replaced pool is closed: not added
			sum.inFlight += s.InFlight
			sum.queued += s.Queued
			for _, t := range s.Tenants {
				perTenant[t.Tenant] = addSlot(perTenant[t.Tenant], slot{s.Shard, t.InFlight, t.Queued})
			}
		}
	}
	for _, k := range pools {
		sum := sums[k]
		ch <- prometheus.MustNewConstMetric(r.shardCapacity, prometheus.GaugeValue, float64(sum.capacity), k.shard, k.pool)
		ch <- prometheus.MustNewConstMetric(r.shardInFlight, prometheus.GaugeValue, float64(sum.inFlight), k.shard, k.pool)
		ch <- prometheus.MustNewConstMetric(r.shardQueued, prometheus.GaugeValue, float64(sum.queued), k.shard, k.pool)
	}

	// Busiest tenants: activity decayed with the half-life, plus what they
	// have running and waiting now.
	type scored struct {
		ts    *tenantStats
		plan  string
		score float64
	}
	var all []scored
	now := monotonic()
	decay := 1.0
	if r.lastCollect != 0 {
		decay = math.Exp2(-float64(now-r.lastCollect) / float64(r.opts.HalfLife))
	}
	r.lastCollect = now
	idle := now - int64(r.opts.IdleAfter)
	for i := range r.parts {
		pt := &r.parts[i]
		pt.mu.Lock()
		for id, ts := range pt.tenants {
			total := ts.queries.Load() + ts.admitted.Load() + ts.throttled.Load() + ts.busy.Load() + ts.cancelled.Load()
			ts.score = ts.score*decay + float64(total-ts.lastTotal)
			ts.lastTotal = total
			score := ts.score
			for _, s := range perTenant[id] {
				score += float64(s.inFlight + s.queued)
			}
			if score < 0.5 {
				if ts.lastSeen.Load() < idle {
					delete(pt.tenants, id)
				}
				continue
			}
			all = append(all, scored{ts, ts.plan, score})
		}
		pt.mu.Unlock()
	}
	slices.SortFunc(all, func(a, b scored) int {
		if a.score != b.score {
			if a.score > b.score {
				return -1
			}
			return 1
		}
		return slices.Compare(a.ts.id[:], b.ts.id[:])
	})
	if len(all) > r.opts.TopN {
		all = all[:r.opts.TopN]
	}
	for _, s := range all {
		ts, plan := s.ts, planLabel(s.plan)
		ch <- prometheus.MustNewConstMetric(r.topQueries, prometheus.CounterValue, float64(ts.queries.Load()), ts.name, plan)
		ch <- prometheus.MustNewConstMetric(r.topErrors, prometheus.CounterValue, float64(ts.errs.Load()), ts.name, plan)
		ch <- prometheus.MustNewConstMetric(r.topRejected, prometheus.CounterValue, float64(ts.throttled.Load()), ts.name, plan, "throttled")
		ch <- prometheus.MustNewConstMetric(r.topRejected, prometheus.CounterValue, float64(ts.busy.Load()), ts.name, plan, "busy")
		ch <- prometheus.MustNewConstMetric(r.topRejected, prometheus.CounterValue, float64(ts.cancelled.Load()), ts.name, plan, "cancelled")
		buckets := make(map[float64]uint64, len(r.opts.Buckets))
		var cum uint64
		for i, ub := range r.opts.Buckets {
			cum += ts.lat.counts[i].Load()
			buckets[ub] = cum
		}
		count := cum + ts.lat.counts[len(r.opts.Buckets)].Load()
		ch <- prometheus.MustNewConstHistogram(r.topDuration, count, math.Float64frombits(ts.lat.sumBits.Load()), buckets, ts.name, plan)
		for _, sl := range perTenant[ts.id] {
			ch <- prometheus.MustNewConstMetric(r.topInFlight, prometheus.GaugeValue, float64(sl.inFlight), ts.name, plan, sl.shard)
			ch <- prometheus.MustNewConstMetric(r.topQueued, prometheus.GaugeValue, float64(sl.queued), ts.name, plan, sl.shard)
		}
	}
}

var _ prometheus.Collector = (*Recorder)(nil)

// slot is what a tenant has running and waiting on one shard.
type slot struct {
	shard            string
	inFlight, queued int
}

// addSlot adds s to a tenant's slots, summing the pools of one shard: a
// gauge per (tenant, shard) must be collected once.
func addSlot(slots []slot, s slot) []slot {
	for i := range slots {
		if slots[i].shard == s.shard {
			slots[i].inFlight += s.inFlight
			slots[i].queued += s.queued
			return slots
		}
	}
	return append(slots, s)
}
