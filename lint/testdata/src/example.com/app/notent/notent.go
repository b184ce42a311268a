// Package notent has builder-like names but is no generated Ent client (no
// Client and Tx types, no Ent import): its methods are not checked.
package notent

import "context"

type OrderQuery struct{}

func (*OrderQuery) All(ctx context.Context) ([]string, error) { return nil, nil }
