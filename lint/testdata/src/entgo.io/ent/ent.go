// Package ent is a stub of entgo.io/ent for the analyzer tests.
package ent

type Value any

type Mutator interface{ Mutate(Value) (Value, error) }

type Hook func(Mutator) Mutator
