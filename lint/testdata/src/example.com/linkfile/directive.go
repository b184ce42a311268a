package linkfile

import _ "unsafe" // go:linkname

//go:linkname wide github.com/tenantry/tenantry/tenancy.Unscoped
