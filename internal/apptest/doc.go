// Package apptest sets up the example app on throwaway PostgreSQL shards for
// tests and benchmarks: roles, tenant schemas from the Ent graph (through
// migrate), pools for the app and admin roles, a static resolver and one
// tenancy-scoped Ent client serving every tenant.
//
// The fixed tenants cover the placement modes that share a server:
//
//	A, B  one shared schema ("shared_0") on shard 0
//	C     its own schema on shard 0
//	D     its own schema on shard 1
package apptest
