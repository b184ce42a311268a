package tenancy_test

import (
	"context"
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
