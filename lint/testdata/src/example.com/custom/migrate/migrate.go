// Package migrate is not allowed under the custom allow-list, which replaces
// the defaults.
package migrate

import (
	"context"

	"github.com/tenantry/tenantry/tenancy"
)

func Apply(ctx context.Context) context.Context { // want Apply:"reaches"
	return tenancy.Unscoped(ctx, "migrate") // want `tenancy.Unscoped used in package example.com/custom/migrate`
}
