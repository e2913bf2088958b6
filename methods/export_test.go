package methods

import "github.com/cachebench/cachebench/harness/hook"

// Test access to unexported state for the external test package (methods_test), whose tests
// import harness — which imports methods, so they cannot live in package methods.

// SortedRows exposes sortedRows.
var SortedRows = sortedRows

// SetForce makes a ToCa policy plan the given token choice (teacher forcing); the rule's own
// choice is then only reported (hook.Options.Choices).
func SetForce(m Method, f func(call, layer int) [][]int32) { m.(*toca).force = f }

// SetPixArtForce makes a ToCa-PixArt policy plan the given token choices (teacher forcing).
func SetPixArtForce(m Method, f func(call, layer int, module hook.Module) [][]int32) {
	m.(*pixartTokens).force = f
}
