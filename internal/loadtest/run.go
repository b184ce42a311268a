package loadtest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tenantry/tenantry/internal/openloop"
	"github.com/tenantry/tenantry/tenancy"
)

// Config describes one load run.
type Config struct {
	// Victims are the tenants at the steady rate.
	Victims []tenancy.ID
	// Aggressor is the tenant at Factor times the victims' rate; zero: none.
	Aggressor tenancy.ID
	// Rate is each victim's requests per second (default 2).
	Rate float64
	// Factor is the aggressor's rate in victim rates (default 100).
	Factor float64
	// Writes is the share of requests that write (default 0.1; negative: none).
	Writes float64
	// Duration is the measured part of the run (default 10 s), after Warmup
	// (default 1 s; negative: none), whose requests are sent but not counted.
	Duration, Warmup time.Duration
	// Timeout bounds each request (default 5 s).
	Timeout time.Duration
	// MaxInFlight caps the aggressor's requests in flight; more are shed by
	// the generator and counted as such (default 512). Victims are never shed.
	MaxInFlight int
	// Seed makes the schedule reproducible; 0: a random one.
	Seed uint64
	// OnResult, when set, is called with every request's result, warm-up
	// included, from the request's goroutine. It must be safe for
	// concurrent use and quick.
	OnResult func(Result)
	// Progress, when set, gets a progress line every second.
	Progress io.Writer
}

func (c *Config) defaults() error {
	if len(c.Victims) == 0 {
		return errors.New("loadtest: no victim tenants")
	}
	if c.Rate <= 0 {
		c.Rate = 2
	}
	if c.Factor <= 0 {
		c.Factor = 100
	}
	if c.Writes == 0 {
		c.Writes = 0.1
	}
	if c.Duration <= 0 {
		c.Duration = 10 * time.Second
	}
	if c.Warmup == 0 {
		c.Warmup = time.Second
	}
	c.Warmup = max(c.Warmup, 0)
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Second
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 512
	}
	if c.Seed == 0 {
		c.Seed = rand.Uint64()
	}
	return nil
}

// Result is the outcome of one request.
type Result struct {
	Request
	Aggressor bool
	Scheduled time.Time     // when it was due to start
	Latency   time.Duration // from Scheduled to its end
	Err       error
	Kind      Kind
	Measured  bool // after the warm-up
	Shed      bool // not sent: the aggressor had MaxInFlight requests in flight
}

// Class sums up the measured requests of one class of tenants.
type Class struct {
	Tenants   int
	Offered   int64              // requests scheduled
	Shed      int64              // not sent (aggressor only)
	Kinds     [numKinds]int64    // outcomes by kind; Kinds[OK] succeeded
	Latencies openloop.Latencies // of successful requests, from their scheduled start, sorted
	// Service is the latency of successful requests from their actual
	// start, sorted: without the generator's own lag, which on a saturated
	// machine (the process waiting for a CPU) can dominate Latencies.
	Service  openloop.Latencies
	FirstErr map[Kind]error // the first error of each kind
}

// Errors returns how many requests failed.
func (c *Class) Errors() int64 {
	var n int64
	for k := OK + 1; k < numKinds; k++ {
		n += c.Kinds[k]
	}
	return n
}

// Count returns how many requests ended with kind k.
func (c *Class) Count(k Kind) int64 { return c.Kinds[k] }

// Quantile returns the q-quantile of successful requests' latency.
func (c *Class) Quantile(q float64) time.Duration { return c.Latencies.Quantile(q) }

// Report is what a run measured.
type Report struct {
	Config   Config
	Measured time.Duration
	Slices   int // runs merged into this report (Add), each after its warm-up
	Victims  Class
	Agg      Class
	// Lag is how late the generator started requests (p99, max): large
	// values mean the machine could not keep the schedule, and latencies
	// include that.
	LagP99, LagMax time.Duration
	// Pressure is the machine's CPU and I/O pressure during the run (Linux
	// PSI: the share of time some task waited), e.g. "cpu 12%, io 0%". On a
	// shared machine it tells a disturbed run from a quiet one.
	Pressure string
	// CPU is the CPU time this process (load generator and, for the Stack
	// target, the app's stack) used during the run.
	CPU time.Duration
}

// QPS returns a class's successful requests per second.
func (r *Report) QPS(c *Class) float64 { return float64(c.Kinds[OK]) / r.Measured.Seconds() }

type event struct {
	at  time.Duration
	who int // index into Victims, or -1 for the aggressor
}

// schedule returns the run's requests in time order.
func schedule(c *Config, rng *rand.Rand) []event {
	length := c.Warmup + c.Duration
	period := time.Duration(float64(time.Second) / c.Rate)
	ev := make([]event, 0, int(float64(len(c.Victims))*c.Rate*length.Seconds()*1.01)+16)
	for k := range c.Victims {
		for at := time.Duration(rng.Int64N(int64(period))); at < length; at += period {
			ev = append(ev, event{at, k})
		}
	}
	if !c.Aggressor.IsZero() {
		aperiod := time.Duration(float64(time.Second) / (c.Rate * c.Factor))
		for at := time.Duration(rng.Int64N(int64(aperiod))); at < length; at += aperiod {
			ev = append(ev, event{at, -1})
		}
	}
	slices.SortStableFunc(ev, func(a, b event) int { return cmp.Compare(a.at, b.at) })
	return ev
}

// Run offers the load of cfg to target and reports what it measured. It
// returns when every request has ended; ctx ending stops sending new
// requests (those still due are not counted).
func Run(ctx context.Context, target Target, cfg Config) (*Report, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x10ad))
	events := schedule(&cfg, rng)
	ops := make([]Op, len(events))
	for i := range ops {
		if rng.Float64() < cfg.Writes {
			ops[i] = Write
		}
	}
	rep := &Report{Config: cfg, Measured: cfg.Duration, Slices: 1}
	rep.Victims.Tenants = len(cfg.Victims)
	if !cfg.Aggressor.IsZero() {
		rep.Agg.Tenants = 1
	}
	var (
		mu       sync.Mutex
		wg       sync.WaitGroup
		inflight atomic.Int64
		done     atomic.Int64
		failed   atomic.Int64
		lags     = make(openloop.Latencies, 0, len(events))
	)
	start := time.Now().Add(20 * time.Millisecond)
	p0, c0 := openloop.ReadPressure(), selfCPU()
	stopProgress := make(chan struct{})
	if cfg.Progress != nil {
		go progress(cfg.Progress, start, cfg.Warmup+cfg.Duration, len(events), &done, &failed, stopProgress)
	}
	wg.Add(len(events))
	openloop.Dispatch(start, len(events), func(i int) time.Duration { return events[i].at }, func(i int) {
		defer wg.Done()
		defer done.Add(1)
		if ctx.Err() != nil {
			return
		}
		ev := events[i]
		at := start.Add(ev.at)
		began := time.Now()
		res := Result{Request: Request{Op: ops[i], Seq: uint64(i)}, Scheduled: at, Measured: ev.at >= cfg.Warmup}
		class := &rep.Victims
		if ev.who < 0 {
			res.Tenant, res.Aggressor, class = cfg.Aggressor, true, &rep.Agg
			if inflight.Add(1) > int64(cfg.MaxInFlight) {
				inflight.Add(-1)
				res.Shed = true
				res.Latency = time.Since(at)
				if cfg.OnResult != nil {
					cfg.OnResult(res)
				}
				if res.Measured {
					mu.Lock()
					class.Offered++
					class.Shed++
					mu.Unlock()
				}
				return
			}
			defer inflight.Add(-1)
		} else {
			res.Tenant = cfg.Victims[ev.who]
		}
		rctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
		res.Err = target.Do(rctx, res.Request)
		cancel()
		res.Latency = time.Since(at)
		res.Kind = Classify(res.Err)
		if res.Err != nil && ctx.Err() != nil {
			return // the run was cancelled, not the request's fault
		}
		if res.Kind != OK {
			failed.Add(1)
		}
		if cfg.OnResult != nil {
			cfg.OnResult(res)
		}
		if !res.Measured {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		lags = append(lags, began.Sub(at))
		class.Offered++
		class.Kinds[res.Kind]++
		if res.Kind == OK {
			class.Latencies = append(class.Latencies, res.Latency)
			class.Service = append(class.Service, res.Latency-began.Sub(at))
		} else {
			if class.FirstErr == nil {
				class.FirstErr = map[Kind]error{}
			}
			if class.FirstErr[res.Kind] == nil {
				class.FirstErr[res.Kind] = fmt.Errorf("tenant %s, %s at %s: %w", res.Tenant, res.Op, ev.at.Round(time.Millisecond), res.Err)
			}
		}
	})
	wg.Wait()
	rep.Pressure, rep.CPU = openloop.ReadPressure().Since(p0), selfCPU()-c0
	close(stopProgress)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("loadtest: run interrupted: %w", err)
	}
	for _, c := range []*Class{&rep.Victims, &rep.Agg} {
		c.Latencies.Sorted()
		c.Service.Sorted()
	}
	lags.Sorted()
	rep.LagP99, rep.LagMax = lags.Quantile(0.99), lags.Quantile(1)
	return rep, nil
}

func progress(w io.Writer, start time.Time, length time.Duration, total int, done, failed *atomic.Int64, stop chan struct{}) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-stop:
			fmt.Fprintf(w, "\r%-78s\r", "")
			return
		case <-t.C:
			el := time.Since(start).Truncate(time.Second)
			fmt.Fprintf(w, "\rload: %s of %s, %d of %d requests done, %d failed   ", el, length, done.Load(), total, failed.Load())
		}
	}
}

// selfCPU returns the user and system CPU time of this process.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Write prints the report as a table.
func (r *Report) Write(w io.Writer) {
	c := r.Config
	agg := "no aggressor"
	if r.Agg.Tenants > 0 {
		agg = fmt.Sprintf("aggressor at %gx (%g req/s offered)", c.Factor, c.Rate*c.Factor)
	}
	slices := ""
	if r.Slices > 1 {
		slices = fmt.Sprintf(" in %d slices, each", r.Slices)
	}
	fmt.Fprintf(w, "%d victims at %g req/s each, %s, %.0f%% writes; %s measured%s after %s warm-up\n",
		len(c.Victims), c.Rate, agg, 100*max(c.Writes, 0), r.Measured, slices, c.Warmup)
	fmt.Fprintf(w, "%-10s %8s %9s %9s %8s %8s %8s %9s %9s %6s %6s %6s %6s %6s %12s\n",
		"class", "tenants", "offered", "ok", "qps", "p50 ms", "p99 ms", "p99.9 ms", "throttled", "busy", "down", "t/o", "other", "shed", "svc p99 ms")
	for _, row := range []struct {
		name string
		c    *Class
	}{{"victims", &r.Victims}, {"aggressor", &r.Agg}} {
		if row.c.Tenants == 0 {
			continue
		}
		k := row.c.Kinds
		fmt.Fprintf(w, "%-10s %8d %9d %9d %8.1f %8.2f %8.2f %9.2f %9d %6d %6d %6d %6d %6d %12.2f\n",
			row.name, row.c.Tenants, row.c.Offered, k[OK], r.QPS(row.c),
			openloop.Ms(row.c.Quantile(0.5)), openloop.Ms(row.c.Quantile(0.99)), openloop.Ms(row.c.Quantile(0.999)),
			k[Throttled], k[Busy], k[ShardDown], k[Timeout], k[Other], row.c.Shed, openloop.Ms(row.c.Service.Quantile(0.99)))
	}
	total := r.Victims.Offered + r.Agg.Offered
	pressure := ""
	if r.Pressure != "" {
		pressure = "; machine pressure " + r.Pressure
	}
	fmt.Fprintf(w, "generator lag p99 %.2f ms, max %.2f ms (latencies count from the scheduled start); this process %.0f µs CPU/request%s\n",
		openloop.Ms(r.LagP99), openloop.Ms(r.LagMax), float64(r.CPU.Microseconds())/float64(max(total, 1))*c.Duration.Seconds()/(c.Warmup+c.Duration).Seconds(), pressure)
	for _, row := range []struct {
		name string
		c    *Class
	}{{"victims", &r.Victims}, {"aggressor", &r.Agg}} {
		for k := OK + 1; k < numKinds; k++ {
			if err := row.c.FirstErr[k]; err != nil && (row.name == "victims" || k == Other) {
				fmt.Fprintf(w, "first %s error of the %s: %v\n", k, row.name, err)
			}
		}
	}
}

// Add merges the measurements of o, a run of the same tenants, into r (for
// a phase measured in several interleaved slices). Pressure is dropped:
// read it over the whole phase instead.
func (r *Report) Add(o *Report) {
	r.Measured += o.Measured
	r.Slices += o.Slices
	r.CPU += o.CPU
	r.LagP99, r.LagMax = max(r.LagP99, o.LagP99), max(r.LagMax, o.LagMax)
	r.Pressure = ""
	for _, pair := range [][2]*Class{{&r.Victims, &o.Victims}, {&r.Agg, &o.Agg}} {
		c, oc := pair[0], pair[1]
		c.Tenants = max(c.Tenants, oc.Tenants)
		c.Offered += oc.Offered
		c.Shed += oc.Shed
		for k := range c.Kinds {
			c.Kinds[k] += oc.Kinds[k]
		}
		c.Latencies = append(c.Latencies, oc.Latencies...).Sorted()
		c.Service = append(c.Service, oc.Service...).Sorted()
		for k, err := range oc.FirstErr {
			if c.FirstErr == nil {
				c.FirstErr = map[Kind]error{}
			}
			if c.FirstErr[k] == nil {
				c.FirstErr[k] = err
			}
		}
	}
}
