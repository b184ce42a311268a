// Package api is the example SaaS app's HTTP JSON API: customers, orders
// with line items, and tags on orders, for the tenant of the request.
//
// Every handler runs the generated Ent client with the request's context,
// which the auth middleware scoped to the tenant of a verified credential;
// the client, the driver and row-level security keep each request to that
// tenant's rows. An id of another tenant is answered exactly like an id
// that does not exist (404, same body), for reads and for writes.
//
// Errors become responses in one place, Classify: 400 for malformed input
// ({"error", "code"}), 401 without a valid credential, 403 for a suspended
// or deleted tenant, 404, 409 for a unique clash, 429 with Retry-After when
// the tenant is throttled or busy, 503 with Retry-After while the tenant is
// fenced for a move (writes only) or its shard or the registry is down.
//
// Routes lists every endpoint; the HTTP leak test requires a row for each.
package api
