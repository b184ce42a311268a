package tenantry

// Every Ent graph in the repository is generated here, with the tenantry
// extension, so that `go generate ./...` regenerates them all.

//go:generate go run ./gen/cmd/tenantrygen ./examples/app/ent/schema
//go:generate go run ./gen/cmd/tenantrygen ./ent/schema
//go:generate go run ./gen/cmd/tenantrygen ./gen/testdata/overridden/schema
