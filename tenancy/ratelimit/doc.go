// Package ratelimit limits how many statements and transactions per second
// each tenant may start, by the RatePerSec and Burst of its plan
// ([tenancy.Limits]).
//
// [Local] is a token bucket per tenant in this process. [Redis] shares one
// budget per tenant across every app replica, with the generic cell rate
// algorithm (GCRA) in one Lua script, so the check and the update are atomic
// on the Redis server and use its clock. When Redis cannot be reached,
// [Redis] decides with a [Local] limiter instead (optionally with a share of
// the rate per replica) and tries Redis again after a cool-down: no request
// fails because Redis is down.
//
// A throttled tenant gets an error wrapping [ErrThrottled]; errors.As gives
// the *ThrottledError with its RetryAfter. Other tenants are not affected.
//
// Both limiters serve as admission.RateLimiter (checked before a tenant
// queues for a connection) or on their own as a tenancy.Gate:
//
//	gate := admission.New(admission.Config{RateLimiter: ratelimit.NewRedis(rdb, ratelimit.RedisOptions{})})
//	drv := tenancy.NewDriver(resolver, tenancy.WithGate(gate))
//
// A plan without RatePerSec is not rate limited.
package ratelimit
