// Package metrics holds the mathematics of the image-quality metrics used by
// cachebench: streaming feature statistics, the Fréchet distance (FID/sFID),
// KID, the Inception Score, improved precision/recall, and the .npz reference
// statistics files of pytorch-fid and the ADM evaluator.
//
// All arithmetic is float64 (gonum). Each function names the reference
// implementation whose semantics it follows, and the tests in this package
// reproduce that implementation's golden values (testdata/fid).
package metrics
