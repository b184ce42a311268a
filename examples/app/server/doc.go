// Package server assembles the example app's HTTP server: the API behind
// the auth middleware, /healthz (liveness), /readyz (the registry and every
// shard reachable), /metrics (Prometheus, on a registry the caller owns),
// the admin endpoints, request logging with log/slog (method, route,
// tenant, status, latency; never a credential) and graceful shutdown: on
// cancellation it stops accepting, reports not ready, and drains in-flight
// requests until a deadline.
package server
