package methods

// Test access to unexported state for the external test package (methods_test), whose tests
// import harness — which imports methods, so they cannot live in package methods.

// SortedRows exposes sortedRows.
var SortedRows = sortedRows

// SetForce makes a ToCa policy use the given token choice (teacher forcing).
func SetForce(m Method, f func(call, layer int) [][]int32) { m.(*toca).force = f }

// SetOnScore lets a test see every ToCa score vector before the grid bonus.
func SetOnScore(m Method, f func(layer, call int, scoreIn [][]float32)) { m.(*toca).engine.onScore = f }

// DuCaHasBase reports whether a DuCa policy observed a base score for a layer.
func DuCaHasBase(m Method, layer int) bool { return m.(*duca).engine.base[layer] != nil }

// TaylorFactorsLeft counts the Taylor factors a TaylorSeer policy still holds.
func TaylorFactorsLeft(m Method) int {
	n := 0
	for _, fs := range m.(*taylorSeer).factors {
		for _, f := range fs {
			n += len(f)
		}
	}
	return n
}
