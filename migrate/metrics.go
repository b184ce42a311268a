package migrate

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the Prometheus metrics of fleet runs. Labels are the shard
// and the outcome, phase or reason, never the tenant (thousands of series
// per tenant would swamp Prometheus): per-tenant detail is in the ledger,
// the report and the logs.
//
//	tenantry_migrate_schemas_total{shard,outcome}            counter, outcome of the apply (verification may revise it: verify_repairs_total)
//	tenantry_migrate_schema_duration_seconds{shard,outcome}  histogram, one migration attempt
//	tenantry_migrate_retries_total{shard,reason}             counter (lock_timeout, deadlock, serialization)
//	tenantry_migrate_verify_repairs_total{shard,outcome}     counter, schemas verification had to repair
//	tenantry_migrate_phase_duration_seconds{shard,phase}     histogram (fingerprint, plan, verify)
//	tenantry_migrate_runs_total{result}                      counter (ok, failed, halted)
//	tenantry_migrate_last_run_timestamp_seconds              gauge
//
// A nil *Metrics is valid and records nothing.
type Metrics struct {
	schemas   *prometheus.CounterVec
	durations *prometheus.HistogramVec
	retries   *prometheus.CounterVec
	repairs   *prometheus.CounterVec
	phases    *prometheus.HistogramVec
	runs      *prometheus.CounterVec
	lastRun   prometheus.Gauge
}

// NewMetrics creates the metrics and registers them with reg (when not
// nil).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		schemas: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tenantry_migrate_schemas_total", Help: "Schemas by outcome of their apply in a fleet migration run (a later verification's verdict is in tenantry_migrate_verify_repairs_total).",
		}, []string{"shard", "outcome"}),
		durations: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tenantry_migrate_schema_duration_seconds", Help: "Duration of one schema's migration attempt.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
		}, []string{"shard", "outcome"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tenantry_migrate_retries_total", Help: "Schema migrations retried, by reason.",
		}, []string{"shard", "reason"}),
		repairs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tenantry_migrate_verify_repairs_total", Help: "Schemas that verification found off their expected fingerprint, by final outcome.",
		}, []string{"shard", "outcome"}),
		phases: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tenantry_migrate_phase_duration_seconds", Help: "Duration of a run's phases per shard.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2.5, 10),
		}, []string{"shard", "phase"}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tenantry_migrate_runs_total", Help: "Fleet migration runs by result.",
		}, []string{"result"}),
		lastRun: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tenantry_migrate_last_run_timestamp_seconds", Help: "When the last fleet migration run finished.",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.schemas, m.durations, m.retries, m.repairs, m.phases, m.runs, m.lastRun} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

func (m *Metrics) outcome(shard, outcome string) {
	if m != nil {
		m.schemas.WithLabelValues(shard, outcome).Inc()
	}
}

func (m *Metrics) duration(shard, outcome string, d time.Duration) {
	if m != nil {
		m.durations.WithLabelValues(shard, outcome).Observe(d.Seconds())
	}
}

func (m *Metrics) retry(shard, sqlstate string) {
	if m == nil {
		return
	}
	reason := map[string]string{"55P03": "lock_timeout", "40P01": "deadlock", "40001": "serialization"}[sqlstate]
	if reason == "" {
		reason = "other"
	}
	m.retries.WithLabelValues(shard, reason).Inc()
}

func (m *Metrics) repair(shard, outcome string) {
	if m != nil {
		m.repairs.WithLabelValues(shard, outcome).Inc()
	}
}

func (m *Metrics) observePhase(shard, phase string, d time.Duration) {
	if m != nil {
		m.phases.WithLabelValues(shard, phase).Observe(d.Seconds())
	}
}

func (m *Metrics) run(r *Report) {
	if m == nil {
		return
	}
	result := "ok"
	switch {
	case r.Halted != "":
		result = "halted"
	case len(r.Failed) > 0:
		result = "failed"
	}
	m.runs.WithLabelValues(result).Inc()
	m.lastRun.SetToCurrentTime()
}
