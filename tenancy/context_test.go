package tenancy_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/tenantry/tenantry/tenancy"
)

func TestContextScope(t *testing.T) {
	id := tenancy.NewID()
	bg := context.Background()
	tests := []struct {
		name         string
		ctx          context.Context
		wantTenant   bool
		wantUnscoped bool
	}{
		{"background", bg, false, false},
		{"with tenant", tenancy.WithTenant(bg, id), true, false},
		{"zero tenant", tenancy.WithTenant(bg, tenancy.ID{}), false, false},
		{"unscoped", tenancy.Unscoped(bg, "test"), false, true},
		{"unscoped keeps tenant", tenancy.Unscoped(tenancy.WithTenant(bg, id), "test"), true, true},
		{"WithTenant ends unscoped", tenancy.WithTenant(tenancy.Unscoped(bg, "test"), id), true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := tenancy.FromContext(tt.ctx)
			if ok != tt.wantTenant || (ok && got != id) {
				t.Errorf("FromContext = %v, %v", got, ok)
			}
			reason, unscoped := tenancy.UnscopedReason(tt.ctx)
			if unscoped != tt.wantUnscoped || (unscoped && reason != "test") {
				t.Errorf("UnscopedReason = %q, %v", reason, unscoped)
			}
		})
	}
}

func TestUnscopedNeedsReason(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("Unscoped with an empty reason did not panic")
		}
	}()
	tenancy.Unscoped(context.Background(), "")
}

func TestUnscopedIsLogged(t *testing.T) {
	var buf bytes.Buffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, nil)))
	defer slog.SetDefault(prev)
	tenancy.Unscoped(context.Background(), "nightly invoice export")
	tenancy.Unscoped(context.Background(), "second use")
	out := buf.String()
	for _, want := range []string{`reason="nightly invoice export"`, `reason="second use"`, "context_test.go"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}
