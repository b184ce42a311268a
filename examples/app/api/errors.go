package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tenantry/tenantry/examples/app/auth"
	"github.com/tenantry/tenantry/examples/app/ent"
	"github.com/tenantry/tenantry/router"
	"github.com/tenantry/tenantry/tenancy"
	"github.com/tenantry/tenantry/tenancy/admission"
	"github.com/tenantry/tenantry/tenancy/ratelimit"
)

// ErrNotFound is returned by handlers for an id the tenant does not have.
// An id of another tenant is not found in exactly the same way: the body is
// the same, so a response never says whether the id exists elsewhere.
var ErrNotFound = errors.New("api: not found")

// InputError is a malformed request: bad JSON, a missing field, a bad
// query parameter. It answers 400 with its Code and Message.
type InputError struct {
	Code    string
	Message string
}

func (e *InputError) Error() string { return "api: bad request: " + e.Message }

func badInput(code, format string, args ...any) error {
	msg := format
	if len(args) > 0 {
		msg = fmt.Sprintf(format, args...)
	}
	return &InputError{Code: code, Message: msg}
}

// Problem is how an error is answered: the status, the JSON body and, for
// retryable errors, Retry-After. Classify builds it; it is the one place
// where errors become statuses.
type Problem struct {
	Status     int           `json:"-"`
	Code       string        `json:"code"`
	Message    string        `json:"error"`
	RetryAfter time.Duration `json:"-"`
}

// Retry-After values for errors that carry none.
const (
	retryReadOnly    = 5 * time.Second // moves are fenced for seconds
	retryUnavailable = 2 * time.Second
)

// Classify maps an error of a handler, of authentication or of the tenancy
// stack to the response. Messages of 5xx answers are generic (the detail
// goes to the log), and a 404 never says more than "not found".
func Classify(err error) Problem {
	var (
		in        *InputError
		throttled *ratelimit.ThrottledError
		busy      *admission.BusyError
		tooBig    *http.MaxBytesError
		pgErr     *pgconn.PgError
	)
	switch {
	case errors.As(err, &in):
		return Problem{Status: http.StatusBadRequest, Code: in.Code, Message: in.Message}
	case errors.As(err, &tooBig):
		return Problem{Status: http.StatusRequestEntityTooLarge, Code: "body_too_large", Message: "request body too large (limit " + strconv.FormatInt(tooBig.Limit, 10) + " bytes)"}
	case errors.Is(err, auth.ErrUnauthenticated):
		return Problem{Status: http.StatusUnauthorized, Code: "unauthenticated", Message: "missing or invalid credential: send Authorization: Bearer <token> or X-API-Key: <key>"}
	case errors.Is(err, ErrNotFound), ent.IsNotFound(err):
		return Problem{Status: http.StatusNotFound, Code: "not_found", Message: "not found"}
	case errors.As(err, &throttled):
		return Problem{Status: http.StatusTooManyRequests, Code: "throttled", Message: "rate limit of your plan exceeded: retry later", RetryAfter: orSecond(throttled.RetryAfter())}
	case errors.Is(err, ratelimit.ErrThrottled):
		return Problem{Status: http.StatusTooManyRequests, Code: "throttled", Message: "rate limit of your plan exceeded: retry later", RetryAfter: time.Second}
	case errors.As(err, &busy):
		return Problem{Status: http.StatusTooManyRequests, Code: "tenant_busy", Message: "too many concurrent requests for your account: retry later", RetryAfter: orSecond(busy.RetryAfter())}
	case errors.Is(err, admission.ErrTenantBusy):
		return Problem{Status: http.StatusTooManyRequests, Code: "tenant_busy", Message: "too many concurrent requests for your account: retry later", RetryAfter: time.Second}
	case errors.Is(err, tenancy.ErrTenantReadOnly):
		return Problem{Status: http.StatusServiceUnavailable, Code: "tenant_read_only", Message: "your account is read-only for maintenance: the change was not applied; retry later", RetryAfter: retryReadOnly}
	case errors.Is(err, tenancy.ErrTenantSuspended):
		return Problem{Status: http.StatusForbidden, Code: "tenant_suspended", Message: "your account is suspended"}
	case errors.Is(err, tenancy.ErrTenantDeleted):
		return Problem{Status: http.StatusForbidden, Code: "tenant_deleted", Message: "your account was deleted"}
	case errors.Is(err, tenancy.ErrUnknownTenant):
		return Problem{Status: http.StatusForbidden, Code: "tenant_unknown", Message: "your account is not provisioned"}
	case errors.Is(err, tenancy.ErrShardUnavailable):
		// The driver's typed error (*tenancy.ShardUnavailableError), whatever
		// broke underneath: a closed connection is not always a net.Error.
		var ra interface{ RetryAfter() time.Duration }
		retry := retryUnavailable
		if errors.As(err, &ra) && ra.RetryAfter() > 0 {
			retry = ra.RetryAfter()
		}
		return Problem{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "your account's database is unavailable: retry later", RetryAfter: retry}
	case errors.Is(err, router.ErrRegistryUnavailable), shardUnavailable(err):
		return Problem{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "your account's database is unavailable: retry later", RetryAfter: retryUnavailable}
	case ent.IsValidationError(err):
		return Problem{Status: http.StatusBadRequest, Code: "invalid", Message: validationMessage(err)}
	case errors.As(err, &pgErr) && pgErr.Code == "23505":
		return Problem{Status: http.StatusConflict, Code: "conflict", Message: "a record with the same unique value exists"}
	case errors.As(err, &pgErr) && pgErr.Code == "23503":
		return Problem{Status: http.StatusConflict, Code: "conflict", Message: "the record is referenced by or references a record that does not exist"}
	case errors.As(err, &pgErr) && (pgErr.Code == "23514" || pgErr.Code == "22001" || pgErr.Code == "22003"):
		return Problem{Status: http.StatusBadRequest, Code: "invalid", Message: "a value is out of range"}
	case errors.As(err, &pgErr) && pgErr.Code == "57014":
		return Problem{Status: http.StatusServiceUnavailable, Code: "timeout", Message: "the request took longer than your plan allows", RetryAfter: time.Second}
	case errors.Is(err, context.Canceled):
		return Problem{Status: 499, Code: "cancelled", Message: "request cancelled"}
	case errors.Is(err, context.DeadlineExceeded):
		return Problem{Status: http.StatusServiceUnavailable, Code: "timeout", Message: "the request timed out: retry later", RetryAfter: time.Second}
	default:
		return Problem{Status: http.StatusInternalServerError, Code: "internal", Message: "internal error"}
	}
}

// validationMessage names the field of an ent validation error (its message
// names the field and the rule, never another tenant's data).
func validationMessage(err error) string {
	var ve *ent.ValidationError
	if errors.As(err, &ve) {
		return "invalid value for field " + strconv.Quote(ve.Name)
	}
	return "invalid value"
}

// shardUnavailable reports whether err says the shard cannot be reached or
// is shutting down: a refused or broken connection, or a server that does
// not accept connections now.
func shardUnavailable(err error) bool {
	var (
		ce    *pgconn.ConnectError
		pgErr *pgconn.PgError
		ne    net.Error
	)
	switch {
	case errors.As(err, &ce):
		return true
	case errors.As(err, &pgErr):
		switch pgErr.Code {
		case "57P01", "57P02", "57P03", "53300", "08000", "08003", "08006", "08001", "08004":
			return true
		}
		return false
	case errors.As(err, &ne):
		return !errors.Is(err, context.DeadlineExceeded)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return true
	}
	return false
}

// orSecond is d, or a second when the error carried no delay.
func orSecond(d time.Duration) time.Duration {
	if d <= 0 {
		return time.Second
	}
	return d
}

// retryAfterSeconds rounds d up to whole seconds, at least 1.
func retryAfterSeconds(d time.Duration) string {
	s := int64(math.Ceil(d.Seconds()))
	return strconv.FormatInt(max(s, 1), 10)
}

// WriteError answers r with the classification of err and logs 5xx causes.
func WriteError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	p := Classify(err)
	if p.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", auth.Challenge)
	}
	if p.RetryAfter > 0 {
		w.Header().Set("Retry-After", retryAfterSeconds(p.RetryAfter))
	}
	if log != nil && (p.Status >= 500 || p.Status == http.StatusUnauthorized) {
		// The cause may carry SQL or shard names; it goes to the log only.
		// Auth errors never contain the credential.
		log.LogAttrs(r.Context(), levelOf(p.Status), "request failed", slog.String("code", p.Code), slog.String("cause", err.Error()))
	}
	writeJSON(w, p.Status, p)
}

func levelOf(status int) slog.Level {
	if status >= 500 {
		return slog.LevelError
	}
	return slog.LevelInfo
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	if status == http.StatusNoContent || v == nil {
		return
	}
	enc := json.NewEncoder(w)
	_ = enc.Encode(v)
}
