// Package pgddl lets a bulk load fill a schema's tables bare: it reads the
// statements that drop the tables' indexes and constraints, primary keys
// included, and those that recreate them afterwards, in the order they
// must run. Building an index over loaded rows is several times cheaper
// than maintaining it row by row, above all on random uuid keys.
//
// Primary keys and unique constraints of plain tables are recreated as an
// index (CREATE UNIQUE INDEX, which may run beside the other builds) that
// the constraint then takes over (ADD CONSTRAINT … USING INDEX).
package pgddl
