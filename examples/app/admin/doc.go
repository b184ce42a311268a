// Package admin holds the example app's operator reports: the only code of
// the app that reads across tenants. Fleet.Counts reports per tenant across
// every shard (one query per schema and table); Handler serves it on
// /admin/v1/tenants/counts behind an admin token of its own. It does so through the logged escape
// hatch, tenancy.Unscoped, which runs on the shard's admin role (bypassing
// row-level security) and turns the generated client's tenant filter off.
//
// tenantlint reports the hatch, and every function that reaches it, in any
// package outside its allow-list. This package is on that list in the
// repository's CI (-tenantlint.allow in .ci/run); an app would keep such code
// under internal/admin, which the default allow-list covers. Callers of
// these reports in other packages are reported too (they reach the hatch),
// so wire them up from allowed code, such as an operator command.
package admin
