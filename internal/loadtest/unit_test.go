package loadtest_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

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

func TestRunNeedsVictims(t *testing.T) {
	_, err := loadtest.Run(context.Background(), targetFunc(func(context.Context, loadtest.Request) error { return nil }), loadtest.Config{})
	if err == nil {
		t.Fatal("a run without victims should fail")
	}
}
