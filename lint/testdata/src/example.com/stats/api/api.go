// Package api reads the admin package's number: nothing to report.
package api

import "example.com/stats/internal/admin"

func OrdersCount() int { return admin.Orders }
