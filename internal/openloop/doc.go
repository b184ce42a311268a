// Package openloop drives open-loop load and summarises latencies, for the
// benchmarks and load tests of this repository (internal/fleetbench,
// internal/loadtest).
//
// Open loop means requests start on a schedule fixed in advance, whatever
// the earlier ones are doing: a slow server makes requests pile up instead
// of making the load generator slow down. Latency then counts from each
// request's scheduled start, so time spent queueing anywhere, the load
// generator included, is in it (no coordinated omission).
//
// [Dispatch] starts each request in a goroutine of its own at its time. It
// sleeps with nanosleep on a locked OS thread with a 1 µs timer slack (on
// Linux): Go's timers wake up to a millisecond late on a mostly idle
// process (epoll's millisecond timeout), which would add up to 1 ms to
// every latency.
package openloop
