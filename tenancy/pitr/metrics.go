package pitr

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the Prometheus metrics of base backups and point-in-time
// restores. Labels are results and phases, never tenants or shards'
// backups (unbounded): per-restore detail is in the logs and the Result.
//
//	tenantry_pitr_restores_total{result}               counter (ok, no_base_backup, future, not_archived, recovery, error)
//	tenantry_pitr_restore_duration_seconds             histogram, a whole RestoreAt
//	tenantry_pitr_restore_phase_duration_seconds{phase} histogram (extract, recover, export, cleanup, restore)
//	tenantry_pitr_scratch_clusters                     gauge, scratch clusters running now
//	tenantry_pitr_base_backups_total{result}           counter (ok, error)
//	tenantry_pitr_base_backup_bytes_total              counter
//	tenantry_pitr_base_backup_duration_seconds         histogram
//
// A nil *Metrics is valid and records nothing.
type Metrics struct {
	restores     *prometheus.CounterVec
	duration     prometheus.Histogram
	phases       *prometheus.HistogramVec
	scratch      prometheus.Gauge
	bases        *prometheus.CounterVec
	baseBytes    prometheus.Counter
	baseDuration prometheus.Histogram
}

// NewMetrics creates the metrics and registers them with reg (when not
// nil).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	buckets := prometheus.ExponentialBuckets(0.1, 2, 14) // 0.1 s … ~27 min
	m := &Metrics{
		restores: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tenantry_pitr_restores_total", Help: "Point-in-time restores of a tenant, by result.",
		}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "tenantry_pitr_restore_duration_seconds", Help: "Duration of a point-in-time restore, end to end.", Buckets: buckets,
		}),
		phases: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tenantry_pitr_restore_phase_duration_seconds", Help: "Duration of the phases of a point-in-time restore.", Buckets: buckets,
		}, []string{"phase"}),
		scratch: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tenantry_pitr_scratch_clusters", Help: "Scratch clusters of point-in-time restores running now.",
		}),
		bases: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tenantry_pitr_base_backups_total", Help: "Base backups of shards, by result.",
		}, []string{"result"}),
		baseBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tenantry_pitr_base_backup_bytes_total", Help: "Bytes written by base backups.",
		}),
		baseDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "tenantry_pitr_base_backup_duration_seconds", Help: "Duration of a base backup.", Buckets: buckets,
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.restores, m.duration, m.phases, m.scratch, m.bases, m.baseBytes, m.baseDuration} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

func (m *Metrics) restore(result string, d time.Duration) {
	if m == nil {
		return
	}
	m.restores.WithLabelValues(result).Inc()
	m.duration.Observe(d.Seconds())
}

func (m *Metrics) phase(phase string, d time.Duration) {
	if m != nil {
		m.phases.WithLabelValues(phase).Observe(d.Seconds())
	}
}

func (m *Metrics) scratchDelta(d float64) {
	if m != nil {
		m.scratch.Add(d)
	}
}

func (m *Metrics) baseBackup(info *BaseBackupInfo, err error, d time.Duration) {
	if m == nil {
		return
	}
	if err != nil {
		m.bases.WithLabelValues("error").Inc()
		return
	}
	m.bases.WithLabelValues("ok").Inc()
	m.baseBytes.Add(float64(info.Bytes))
	m.baseDuration.Observe(d.Seconds())
}
