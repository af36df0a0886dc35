// Package fuzz holds usysv's fuzz targets. Each feeds arbitrary bytes to a
// validator of shared memory or of the wire protocol, or drives a structure
// against a simple model, and fails only on a panic, a hang or a broken
// invariant: hostile input must come back as an error.
//
// Seed corpora live in testdata/fuzz/<Target>/, so `go test ./fuzz` replays
// them; `make fuzz` runs every target in turn (FUZZTIME, default 30s).
package fuzz
