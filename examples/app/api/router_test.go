package api_test

import "github.com/tenantry/tenantry/router"

func routerUnavailable() error { return router.ErrRegistryUnavailable }
