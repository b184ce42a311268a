// Command overriddenmain starts a program on the overridden fixture graph:
// its generated runtime package must refuse to start it.
package main

import (
	"fmt"

	overridden "github.com/tenantry/tenantry/gen/testdata/overridden"
	_ "github.com/tenantry/tenantry/gen/testdata/overridden/runtime"
)

func main() {
	fmt.Println("started:", overridden.NewClient() != nil)
}
