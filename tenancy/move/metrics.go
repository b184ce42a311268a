package move

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the Prometheus metrics of moves. A nil *Metrics records
// nothing. Labels are bounded: phase (the fixed list) and result.
type Metrics struct {
	phaseSeconds *prometheus.HistogramVec
	cutoverHist  prometheus.Histogram
	copySeconds  prometheus.Histogram
	bytesCopied  prometheus.Counter
	rowsCopied   prometheus.Counter
	moves        *prometheus.CounterVec
}

// NewMetrics registers the metrics of moves with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		phaseSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tenantry_move_phase_duration_seconds", Help: "Duration of each phase of tenant moves.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 12),
		}, []string{"phase"}),
		cutoverHist: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "tenantry_move_cutover_window_seconds", Help: "Write-unavailability window of tenant moves: from the registry fence to the registry flip.",
			Buckets: []float64{.01, .025, .05, .075, .1, .15, .2, .3, .5, 1, 2, 5, 10},
		}),
		copySeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "tenantry_move_copy_duration_seconds", Help: "Duration of the snapshot copy of tenant moves.",
			Buckets: prometheus.ExponentialBuckets(0.01, 4, 12),
		}),
		bytesCopied: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tenantry_move_copied_bytes_total", Help: "Table bytes copied by the snapshot copy of tenant moves.",
		}),
		rowsCopied: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tenantry_move_copied_rows_total", Help: "Rows moved (counted at verification).",
		}),
		moves: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tenantry_moves_total", Help: "Tenant moves by result: done, failed, aborted.",
		}, []string{"result"}),
	}
	if reg != nil {
		reg.MustRegister(m.phaseSeconds, m.cutoverHist, m.copySeconds, m.bytesCopied, m.rowsCopied, m.moves)
	}
	return m
}

func (m *Metrics) phase(p Phase, d time.Duration) {
	if m != nil {
		m.phaseSeconds.WithLabelValues(string(p)).Observe(d.Seconds())
	}
}

func (m *Metrics) cutover(d time.Duration) {
	if m != nil {
		m.cutoverHist.Observe(d.Seconds())
	}
}

func (m *Metrics) copied(bytes int64, d time.Duration) {
	if m != nil {
		m.bytesCopied.Add(float64(bytes))
		m.copySeconds.Observe(d.Seconds())
	}
}

func (m *Metrics) rows(n int64) {
	if m != nil {
		m.rowsCopied.Add(float64(n))
	}
}

func (m *Metrics) finished(result string) {
	if m != nil {
		m.moves.WithLabelValues(result).Inc()
	}
}
