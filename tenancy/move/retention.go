package move

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tenantry/tenantry/tenancy/backup"
)

// retiredReason starts the reason recorded in the comment of a source a
// move retired.
const retiredReason = "moved to shard "

// DropRetired drops, on every shard, the source copies that moves retired
// more than retention ago (retired schemas whose reason is a move; those of
// restores are left to tenancy/backup). It returns the dropped schemas as
// "shard/schema" and tries every shard, joining the errors.
func (m *Mover) DropRetired(ctx context.Context, retention time.Duration) ([]string, error) {
	shards, err := m.cfg.Store.Shards(ctx)
	if err != nil {
		return nil, err
	}
	var dropped []string
	var errs []error
	for _, sh := range shards {
		c, err := m.connect(ctx, sh.Name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		retired, err := backup.Retired(ctx, c.pool)
		if err == nil {
			for _, rs := range retired {
				if !strings.HasPrefix(rs.Reason, retiredReason) || rs.RetiredAt.IsZero() || time.Since(rs.RetiredAt) < retention {
					continue
				}
				if err := backup.DropRetired(ctx, c.pool, rs.Schema); err != nil {
					errs = append(errs, fmt.Errorf("shard %s: drop %s: %w", sh.Name, rs.Schema, err))
					continue
				}
				m.cfg.Logger.Info("move: dropped a retired source", "shard", sh.Name, "schema", rs.Schema, "tenant", rs.Tenant.String(), "retired_at", rs.RetiredAt)
				dropped = append(dropped, sh.Name+"/"+rs.Schema)
			}
		} else {
			errs = append(errs, fmt.Errorf("shard %s: %w", sh.Name, err))
		}
		c.close()
	}
	return dropped, errors.Join(errs...)
}
