package provision

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are a Provisioner's Prometheus metrics (Options.Registerer).
// Labels are the shard and the path or operation, never the tenant.
//
//	tenantry_provision_schemas_total{shard,path}         counter: spare, created, existing, shared, failed
//	tenantry_provision_duration_seconds{shard,path}      histogram of the schema step
//	tenantry_provision_spares{shard}                     gauge: spare schemas ready
//	tenantry_provision_refill_errors_total{shard}        counter
//	tenantry_offboard_operations_total{shard,op,result}  counter: op retire, unretire, purge; result ok, failed
//
// A nil *metrics records nothing.
type metrics struct {
	schemas  *prometheus.CounterVec
	duration *prometheus.HistogramVec
	spares   *prometheus.GaugeVec
	refills  *prometheus.CounterVec
	offboard *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	m := &metrics{
		schemas: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tenantry_provision_schemas_total", Help: "Tenant schemas provisioned, by path: spare (a spare renamed), created (cached plan), existing (brought up to date with Apply), shared (shared schema checked or created), failed.",
		}, []string{"shard", "path"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tenantry_provision_duration_seconds", Help: "Duration of a tenant's schema step, by path.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}, []string{"shard", "path"}),
		spares: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tenantry_provision_spares", Help: "Spare schemas ready on a shard.",
		}, []string{"shard"}),
		refills: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tenantry_provision_refill_errors_total", Help: "Background refills of spare schemas that failed.",
		}, []string{"shard"}),
		offboard: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tenantry_offboard_operations_total", Help: "Shard-side offboarding operations by result.",
		}, []string{"shard", "op", "result"}),
	}
	for _, c := range []prometheus.Collector{m.schemas, m.duration, m.spares, m.refills, m.offboard} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) provisioned(shard, path string, d time.Duration) {
	if m != nil {
		m.schemas.WithLabelValues(shard, path).Inc()
		m.duration.WithLabelValues(shard, path).Observe(d.Seconds())
	}
}

func (m *metrics) setSpares(shard string, n int) {
	if m != nil {
		m.spares.WithLabelValues(shard).Set(float64(n))
	}
}

func (m *metrics) refillFailed(shard string) {
	if m != nil {
		m.refills.WithLabelValues(shard).Inc()
	}
}

func (m *metrics) offboarded(shard, op string, err error) {
	if m != nil {
		result := "ok"
		if err != nil {
			result = "failed"
		}
		m.offboard.WithLabelValues(shard, op, result).Inc()
	}
}
