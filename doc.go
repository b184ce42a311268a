// Package tenantry is a framework for multi-tenant SaaS applications on
// PostgreSQL with Ent: tenant-scoped generated clients (packages tenancy and
// gen), per-tenant migrations across shards (migrate), a vet tool that
// forbids unscoped access (lint) and the operator CLI (cmd/tenantctl).
//
// This package holds no code; it anchors `go generate ./...`.
package tenantry
