// Package inceptiontest regenerates the FID Inception golden weights (testdata/inception) for
// tests of packages that run the network; the 95 MB of weights are a formula, not a file.
package inceptiontest

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"sort"
	"strings"

	"github.com/cachebench/cachebench/internal/golden"
	"github.com/cachebench/cachebench/models/checkpoint"
)

// The golden README's formula weights: every value is a function of (key position p, flat index
// i) through SplitMix64, so the 95 MB of weights need not be stored.

// keyEntry is one line of weights_keys.json.
type keyEntry struct {
	P     int     `json:"p"`
	Key   string  `json:"key"`
	Shape []int   `json:"shape"`
	DType string  `json:"dtype"`
	Rule  string  `json:"rule"`
	FanIn int     `json:"fan_in"`
	Scale float64 `json:"scale"`
	Sum   float64 `json:"sum"`
	SumSq float64 `json:"sum_sq"`
}

// metaChecksums is the part of meta.json that pins the weights.
type metaChecksums struct {
	Weights struct {
		Formula struct {
			Seed uint64  `json:"seed"`
			Gain float64 `json:"gain"`
		} `json:"formula"`
		Checksums struct {
			Keys          int     `json:"keys"`
			FloatElements int     `json:"float_elements"`
			SHA256        string  `json:"sha256_le_bytes_in_p_order"`
			Sum           float64 `json:"sum"`
			SumSq         float64 `json:"sum_sq"`
			FirstValues   map[string]struct {
				Bits []string `json:"float32_bits"`
			} `json:"first_values"`
		} `json:"checksums"`
	} `json:"weights"`
}

// U is output number p·2³² + i + 1 of SplitMix64 from state s, mapped exactly to [−1, 1).
func U(s uint64, p, i int) float64 {
	x := uint64(p)<<32 | uint64(i)
	z := s + (x+1)*0x9E3779B97F4A7C15
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	z ^= z >> 31
	return float64(z>>11)*0x1p-52 - 1
}

// formulaValue applies a key's rule in float64 and rounds once; the explicit float64()
// conversions stop the compiler from fusing a product and a sum into one FMA.
func formulaValue(rule string, s uint64, p, i int, scale float64) (float32, error) {
	v := U(s, p, i)
	switch rule {
	case "weight":
		return float32(v * scale), nil
	case "bias":
		return float32(0.05 * v), nil
	case "bn_weight":
		return float32(1 + float64(0.1*v)), nil
	case "bn_bias", "bn_running_mean":
		return float32(0.1 * v), nil
	case "bn_running_var":
		return float32(1 + float64(float64(0.5*v)*v)), nil
	}
	return 0, fmt.Errorf("unknown rule %q", rule)
}

// WriteFormulaWeights regenerates the golden README's weights, checks them bit for bit against
// meta.json (sha256, sums, first values) and weights_keys.json (per-tensor sums), and writes them
// to path as safetensors with pytorch-fid's key names, shapes and dtypes.
func WriteFormulaWeights(path string) error {
	var keys struct {
		Seed uint64     `json:"seed"`
		Keys []keyEntry `json:"keys"`
	}
	var meta metaChecksums
	for name, dst := range map[string]any{"inception/weights_keys.json": &keys, "inception/meta.json": &meta} {
		b, err := os.ReadFile(golden.Path(name))
		if err != nil {
			return err
		}
		if err := json.Unmarshal(b, dst); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	cs := meta.Weights.Checksums
	if len(keys.Keys) != cs.Keys {
		return fmt.Errorf("weights_keys.json has %d keys, meta.json says %d", len(keys.Keys), cs.Keys)
	}
	names := make([]string, len(keys.Keys))
	for i, k := range keys.Keys {
		names[i] = k.Key
		if k.P != i {
			return fmt.Errorf("key %q has p = %d at position %d", k.Key, k.P, i)
		}
	}
	if !sort.StringsAreSorted(names) {
		return fmt.Errorf("weights_keys.json is not in byte-wise key order")
	}
	seed, gain := meta.Weights.Formula.Seed, meta.Weights.Formula.Gain
	h := sha256.New()
	tensors := map[string]*checkpoint.Tensor{}
	var sum, sumSq float64
	var floats int
	var buf []byte
	for i := range keys.Keys {
		k := &keys.Keys[i]
		if k.Rule == "zero_int64" {
			h.Write(make([]byte, 8))
			tensors[k.Key] = checkpoint.NewI64([]int64{0}, k.Shape...)
			continue
		}
		n := 1
		for _, d := range k.Shape {
			n *= d
		}
		var scale float64
		if k.Rule == "weight" {
			fanIn := n / k.Shape[0]
			scale = math.Sqrt(3.0/float64(fanIn)) * gain
			if fanIn != k.FanIn || scale != k.Scale {
				return fmt.Errorf("%s: fan_in %d scale %v, weights_keys.json says %d, %v", k.Key, fanIn, scale, k.FanIn, k.Scale)
			}
		}
		vals := make([]float32, n)
		var ts, tss float64
		for j := range vals {
			v, err := formulaValue(k.Rule, seed, k.P, j, scale)
			if err != nil {
				return fmt.Errorf("%s: %w", k.Key, err)
			}
			vals[j] = v
			ts += float64(v)
			tss += float64(v) * float64(v)
		}
		if !near(ts, k.Sum, 1e-9) || !near(tss, k.SumSq, 1e-9) {
			return fmt.Errorf("%s (p=%d, first tensor that differs): sum %v sum_sq %v, weights_keys.json says %v, %v", k.Key, k.P, ts, tss, k.Sum, k.SumSq)
		}
		sum += ts
		sumSq += tss
		floats += n
		buf = buf[:0]
		for _, v := range vals {
			buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(v))
		}
		h.Write(buf)
		tensors[k.Key] = checkpoint.NewF32(vals, k.Shape...)
	}
	if floats != cs.FloatElements || !near(sum, cs.Sum, 1e-9) || !near(sumSq, cs.SumSq, 1e-9) {
		return fmt.Errorf("formula weights: %d floats, sum %v, sum_sq %v; meta.json says %d, %v, %v", floats, sum, sumSq, cs.FloatElements, cs.Sum, cs.SumSq)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != cs.SHA256 {
		return fmt.Errorf("formula weights sha256 %s, meta.json says %s", got, cs.SHA256)
	}
	for key, fv := range cs.FirstValues {
		vals, _ := tensors[key].Float32()
		for j, bits := range fv.Bits {
			if got := fmt.Sprintf("0x%08x", math.Float32bits(vals[j])); got != strings.ToLower(bits) {
				return fmt.Errorf("%s[%d] bits %s, meta.json says %s", key, j, got, bits)
			}
		}
	}
	return checkpoint.WriteSafetensors(path, tensors, map[string]string{"source": "golden README formula, seed 0"})
}

func near(a, b, rel float64) bool {
	return math.Abs(a-b) <= rel*math.Max(math.Abs(b), 1e-300)
}
