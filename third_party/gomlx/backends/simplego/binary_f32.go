package simplego

// cachebench patch: the hook for binary_f32_simd.go (nil where no SIMD kernel is built).

type f32BinaryOp int

const (
	f32Add f32BinaryOp = iota
	f32Sub
	f32Mul
	f32Div
)

// f32Binary computes output = lhs op rhs for float32 slices of equal length, or with a
// one-element rhs; it reports false (nothing done) for other element types.
var f32Binary func(op f32BinaryOp, lhs, rhs, output any) bool
