// Package auth resolves the tenant of an HTTP request of the example app
// from a credential the server can verify: an HS256 JSON Web Token with a
// tenant claim, or an API key that maps to a tenant. It never takes the
// tenant from an unsigned header or a query parameter.
//
// Tokens: HS256 only (the parser refuses "none", RS256 and every other
// algorithm, so a token signed with anything but the shared secret fails),
// exp required, the tenant claim parsed with tenancy.ParseID. API keys have
// the form "tk_<key id>_<secret>"; the server stores only an HMAC-SHA256 of
// the secret under a server-side pepper, and compares it in constant time.
//
// Middleware puts the tenant into the request context with
// tenancy.WithTenant; every failure is an *Error wrapping
// ErrUnauthenticated, which the API answers with 401 and a
// WWW-Authenticate header. Errors never contain the credential.
package auth
