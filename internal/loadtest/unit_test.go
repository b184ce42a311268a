package loadtest_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tenantry/tenantry/internal/loadtest"
	"github.com/tenantry/tenantry/tenancy"
	"github.com/tenantry/tenantry/tenancy/admission"
	"github.com/tenantry/tenantry/tenancy/ratelimit"
)

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want loadtest.Kind
	}{
		{nil, loadtest.OK},
		{fmt.Errorf("x: %w", &ratelimit.ThrottledError{}), loadtest.Throttled},
		{&admission.BusyError{}, loadtest.Busy},
		{&tenancy.ShardUnavailableError{Shard: "s", Err: errors.New("conn closed")}, loadtest.ShardDown},
		{fmt.Errorf("query: %w", context.DeadlineExceeded), loadtest.Timeout},
		{&pgconn.PgError{Code: "23505"}, loadtest.Other},
		{tenancy.ErrNoTenant, loadtest.Other},
	} {
		if got := loadtest.Classify(tc.err); got != tc.want {
			t.Errorf("Classify(%v) = %s, want %s", tc.err, got, tc.want)
		}
	}
}

// TestHTTPErrorKinds: the HTTP target's answers classify as the errors the
// app mapped to them (examples/app/api.Classify, the other way round).
func TestHTTPErrorKinds(t *testing.T) {
	for _, tc := range []struct {
		status int
		code   string
		want   loadtest.Kind
	}{
		{429, "throttled", loadtest.Throttled},
		{429, "tenant_busy", loadtest.Busy},
		{503, "unavailable", loadtest.ShardDown},
		{503, "timeout", loadtest.Timeout},
		{503, "tenant_read_only", loadtest.Other},
		{500, "internal", loadtest.Other},
		{404, "not_found", loadtest.Other},
	} {
		err := &loadtest.HTTPError{Status: tc.status, Code: tc.code, RetryAfter: "2", Err: loadtest.StatusErr(tc.status, tc.code)}
		if got := loadtest.Classify(err); got != tc.want {
			t.Errorf("HTTP %d %s: %s, want %s (%v)", tc.status, tc.code, got, tc.want, err)
		}
		if err.RetryAfterDuration() != 2*time.Second {
			t.Errorf("Retry-After 2 read as %s", err.RetryAfterDuration())
		}
	}
	if !errors.Is(&loadtest.HTTPError{Err: loadtest.StatusErr(503, "tenant_read_only")}, tenancy.ErrTenantReadOnly) {
		t.Error("503 tenant_read_only does not unwrap to tenancy.ErrTenantReadOnly")
	}
	if d := (&loadtest.HTTPError{RetryAfter: "soon"}).RetryAfterDuration(); d != 0 {
		t.Errorf("a malformed Retry-After read as %s", d)
	}
}

func TestRunNeedsVictims(t *testing.T) {
	_, err := loadtest.Run(context.Background(), targetFunc(func(context.Context, loadtest.Request) error { return nil }), loadtest.Config{})
	if err == nil {
		t.Fatal("a run without victims should fail")
	}
}
