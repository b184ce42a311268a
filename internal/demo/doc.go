// Package demo is `tenantctl demo`: on a machine with nothing configured it
// starts two throwaway PostgreSQL shards, provisions tenants in a shared
// schema and in schemas of their own, and shows step by step, with timings,
// that the generated client, the driver and row-level security keep every
// tenant to its own rows. It removes everything it started when it ends.
package demo
