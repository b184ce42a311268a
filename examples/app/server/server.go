package server

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tenantry/tenantry/examples/app/api"
	"github.com/tenantry/tenantry/examples/app/auth"
	"github.com/tenantry/tenantry/tenancy"
)

// Check is one readiness check: the registry, or a shard.
type Check struct {
	Name  string
	Check func(ctx context.Context) error
}

// Config configures a Server.
type Config struct {
	API  *api.API
	Auth *auth.Authenticator
	// Admin, when set, serves /admin/ (it authenticates its own requests).
	Admin http.Handler
	// Ready are the readiness checks of /readyz.
	Ready []Check
	// Metrics receives the server's collectors and is served on /metrics.
	// nil: a new registry.
	Metrics *prometheus.Registry
	// OpsToken guards what operators see: /metrics (tenant ids, plans and
	// activity) and the reasons of failing readiness checks (hosts, roles,
	// database names) are served only to requests that carry
	// "Authorization: Bearer <OpsToken>". Empty: /metrics answers 404 and
	// /readyz names its checks without reasons. Anyone may ask /healthz
	// and whether /readyz is ready.
	OpsToken string
	// Log receives the access log and errors (default slog.Default()).
	Log *slog.Logger
	// ShutdownTimeout bounds the drain of in-flight requests (default 20 s).
	ShutdownTimeout time.Duration
	// CheckTimeout bounds each readiness check (default 2 s).
	CheckTimeout time.Duration
	// Precheck, when set, runs after authentication and before the
	// handler: an error (e.g. the admission gate's standing refusal of a
	// throttled tenant) answers the request without building any query.
	// Wire it to admission.Gate.Check where the gate has it.
	Precheck func(tenant tenancy.ID) error
}

// Server is the app's HTTP server.
type Server struct {
	cfg      Config
	log      *slog.Logger
	api      *http.ServeMux
	handler  http.Handler
	draining atomic.Bool

	// The readiness checks' last results, reused for readyTTL: /readyz
	// answers anyone, and each run pings every shard.
	readyMu  sync.Mutex
	readyAt  time.Time
	readyRes []checkResult

	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	inFlight prometheus.Gauge
}

// New builds a server. It registers its collectors on cfg.Metrics.
func New(cfg Config) (*Server, error) {
	if cfg.API == nil || cfg.Auth == nil {
		return nil, errors.New("server: API and Auth are required")
	}
	if cfg.Metrics == nil {
		cfg.Metrics = prometheus.NewRegistry()
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 20 * time.Second
	}
	if cfg.CheckTimeout <= 0 {
		cfg.CheckTimeout = 2 * time.Second
	}
	if cfg.API.Log == nil {
		cfg.API.Log = cfg.Log
	}
	s := &Server{
		cfg: cfg,
		log: cfg.Log,
		api: cfg.API.Mux(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "app_http_requests_total", Help: "HTTP requests by route pattern, method and status code.",
		}, []string{"route", "method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "app_http_request_duration_seconds", Help: "HTTP request latency by route pattern.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"route"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "app_http_requests_in_flight", Help: "HTTP requests being served.",
		}),
	}
	for _, c := range []prometheus.Collector{s.requests, s.latency, s.inFlight} {
		if err := cfg.Metrics.Register(c); err != nil {
			return nil, fmt.Errorf("server: register metrics: %w", err)
		}
	}

	root := http.NewServeMux()
	root.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n"))
	})
	root.HandleFunc("GET /readyz", s.ready)
	metrics := promhttp.HandlerFor(cfg.Metrics, promhttp.HandlerOpts{Registry: cfg.Metrics})
	root.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		switch {
		case cfg.OpsToken == "":
			http.NotFound(w, r)
		case !s.operator(r):
			w.Header().Set("WWW-Authenticate", `Bearer realm="ops"`)
			http.Error(w, "/metrics needs the operators' token (Authorization: Bearer ...)", http.StatusUnauthorized)
		default:
			metrics.ServeHTTP(w, r)
		}
	})
	if cfg.Admin != nil {
		root.Handle("/admin/", cfg.Admin)
	}
	onAuthErr := func(w http.ResponseWriter, r *http.Request, err error) { api.WriteError(w, r, s.log, err) }
	var apiHandler http.Handler = s.api
	if cfg.Precheck != nil {
		apiHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if id, ok := tenancy.FromContext(r.Context()); ok {
				if err := cfg.Precheck(id); err != nil {
					api.WriteError(w, r, s.log, err)
					return
				}
			}
			s.api.ServeHTTP(w, r)
		})
	}
	root.Handle("/v1/", cfg.Auth.Middleware(onAuthErr)(apiHandler))
	s.handler = s.observe(root)
	return s, nil
}

// Handler returns the server's handler (for httptest).
func (s *Server) Handler() http.Handler { return s.handler }

// route returns the route label of r: its pattern, or "other" (bounded).
func (s *Server) route(r *http.Request) string {
	switch p := r.URL.Path; {
	case p == "/healthz" || p == "/readyz" || p == "/metrics":
		return p
	case len(p) >= 7 && p[:7] == "/admin/":
		return "/admin/"
	}
	if _, pattern := s.api.Handler(r); pattern != "" {
		return pattern
	}
	return "other"
}

type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (rec *recorder) WriteHeader(code int) {
	if rec.status == 0 {
		rec.status = code
	}
	rec.ResponseWriter.WriteHeader(code)
}

func (rec *recorder) Write(b []byte) (int, error) {
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	n, err := rec.ResponseWriter.Write(b)
	rec.bytes += int64(n)
	return n, err
}

func (rec *recorder) Unwrap() http.ResponseWriter { return rec.ResponseWriter }

// observe logs and measures every request and turns panics into 500s.
func (s *Server) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		route := s.route(r)
		rec := &recorder{ResponseWriter: w}
		ctx := auth.WithNote(r.Context())
		s.inFlight.Inc()
		defer func() {
			s.inFlight.Dec()
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.ErrorContext(ctx, "panic serving request", "route", route, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
				if rec.status == 0 {
					api.WriteError(rec, r, nil, errors.New("panic"))
				}
			}
			status := rec.status
			if status == 0 {
				status = http.StatusOK
			}
			d := time.Since(start)
			s.requests.WithLabelValues(route, r.Method, strconv.Itoa(status)).Inc()
			s.latency.WithLabelValues(route).Observe(d.Seconds())
			if route == "/healthz" || route == "/metrics" {
				return
			}
			attrs := []slog.Attr{
				slog.String("method", r.Method), slog.String("route", route), slog.Int("status", status),
				slog.Duration("latency", d), slog.Int64("bytes", rec.bytes),
			}
			if id, ok := auth.Noted(ctx); ok {
				attrs = append(attrs, slog.String("tenant", id.String()))
			}
			level := slog.LevelInfo
			if status >= 500 {
				level = slog.LevelWarn
			}
			s.log.LogAttrs(ctx, level, "http request", attrs...)
		}()
		next.ServeHTTP(rec, r.WithContext(ctx))
	})
}

// operator reports whether r carries the operators' token.
func (s *Server) operator(r *http.Request) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && s.cfg.OpsToken != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(s.cfg.OpsToken)) == 1
}

// ready answers /readyz: 503 while draining or when a check fails. The
// reasons of failing checks go to the log, and to operators (OpsToken).
func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	out := struct {
		Ready  bool          `json:"ready"`
		Checks []checkResult `json:"checks"`
	}{Ready: true, Checks: s.checks(r.Context())}
	if s.draining.Load() { // read after the checks, which may take a while
		out.Checks = append(out.Checks, checkResult{Name: "server", Error: "shutting down"})
	}
	operator := s.operator(r)
	for i, c := range out.Checks {
		if !c.OK {
			out.Ready = false
			s.log.Warn("not ready", "check", c.Name, "error", c.Error)
			if !operator && i < len(s.cfg.Ready) { // "shutting down" tells nothing
				out.Checks[i].Error = ""
			}
		}
	}
	status := http.StatusOK
	if !out.Ready {
		status = http.StatusServiceUnavailable
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(out)
}

// readyTTL is how long the readiness checks' results are reused.
const readyTTL = time.Second

type checkResult struct {
	Name  string `json:"name"`
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

// checks runs the readiness checks, at most once per readyTTL: callers
// meanwhile get a copy of the last results (and wait for a run under way).
func (s *Server) checks(ctx context.Context) []checkResult {
	s.readyMu.Lock()
	defer s.readyMu.Unlock()
	if s.readyRes == nil || time.Since(s.readyAt) >= readyTTL {
		// Not the request's context: its results serve other callers.
		ctx = context.WithoutCancel(ctx)
		res := make([]checkResult, len(s.cfg.Ready))
		var wg sync.WaitGroup
		for i, c := range s.cfg.Ready {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(ctx, s.cfg.CheckTimeout)
				defer cancel()
				res[i] = checkResult{Name: c.Name, OK: true}
				if err := c.Check(ctx); err != nil {
					res[i] = checkResult{Name: c.Name, Error: err.Error()}
				}
			})
		}
		wg.Wait()
		s.readyRes, s.readyAt = res, time.Now()
	}
	return slices.Clone(s.readyRes)
}

// Serve serves on ln until ctx is done, then shuts down gracefully: it
// stops accepting, reports not ready, and waits for in-flight requests up
// to ShutdownTimeout, after which it closes the remaining connections. It
// returns nil after a clean drain.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	// Requests must not see ctx's cancellation: they drain on their own.
	base, cancelBase := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelBase()
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		BaseContext:       func(net.Listener) context.Context { return base },
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("server: %w", err)
	case <-ctx.Done():
	}
	s.draining.Store(true)
	s.log.Info("shutting down: draining in-flight requests", "timeout", s.cfg.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if err != nil {
		cancelBase() // tell the remaining handlers to give up
		_ = srv.Close()
		return fmt.Errorf("server: drain did not finish within %s: closed the remaining connections: %w", s.cfg.ShutdownTimeout, err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("server: %w", err)
	}
	s.log.Info("shut down cleanly")
	return nil
}
