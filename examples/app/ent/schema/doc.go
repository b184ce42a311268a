// Package schema is the example SaaS app's data model: customers, their
// orders with line items, and tags on orders. Every schema is tenant-scoped
// through tenancy.Mixin; the generated client is in the parent package.
package schema
