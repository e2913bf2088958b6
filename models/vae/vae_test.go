package vae_test

import (
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/cachebench/cachebench/harness/engine"
	"github.com/cachebench/cachebench/internal/golden"
	"github.com/cachebench/cachebench/models/checkpoint"
	"github.com/cachebench/cachebench/models/vae"
)

// tol is testdata/sd-vae/README.md's tolerance: max|Δ|/max|golden| per tensor.
const tol = 1e-5

const (
	weightsFile = "sd-vae/weights.safetensors"
	decodeFile  = "sd-vae/decode.safetensors"
)

func load(t testing.TB, f *checkpoint.File) *vae.Decoder {
	t.Helper()
	b, err := engine.New("")
	if err != nil {
		t.Fatal(err)
	}
	d, err := vae.New(b, f)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// decodeGolden decodes the golden latent with every probe and returns image and probes.
func decodeGolden(t testing.TB, d *vae.Decoder, g *checkpoint.File) ([]float32, map[string][]float32) {
	t.Helper()
	x, err := g.Get("latent")
	if err != nil {
		t.Fatal(err)
	}
	probes := map[string][]float32{}
	image, err := d.DecodeShape(golden.F32(t, g, "latent"), x.Shape, vae.Options{
		Probe: func(name string, v *tensors.Tensor) { probes[name] = tensors.MustCopyFlatData[float32](v) }})
	if err != nil {
		t.Fatal(err)
	}
	return image, probes
}

// TestDecodeGolden compares every intermediate of the golden file, the image and image_01.
func TestDecodeGolden(t *testing.T) {
	d := load(t, golden.Open(t, weightsFile))
	const want = "AutoencoderKL decoder: ch 32, ch_mult [1 2], num_res_blocks 1, z 4, embed 4, out 3, mid attention"
	if got := d.Config.String(); got != want {
		t.Fatalf("inferred config %q, want %q", got, want)
	}
	if d.Layout != vae.LDM || d.Upscale() != 2 {
		t.Errorf("layout %v, upscale %d; want ldm, 2", d.Layout, d.Upscale())
	}
	g := golden.Open(t, decodeFile)
	image, probes := decodeGolden(t, d, g)
	names := d.ProbeNames()
	if fmt.Sprint(names) != "[z post_quant_conv conv_in mid_block_1 mid_attn_1 mid up_1 up_0 image]" {
		t.Errorf("probe names %v", names)
	}
	for _, name := range names {
		got, ok := probes[name]
		if !ok {
			t.Errorf("%s: not probed", name)
			continue
		}
		e := golden.RelToMax(got, golden.F32(t, g, name))
		if name == "z" && e != 0 { // latent / float32(0.18215), as the reference
			t.Errorf("z: rel error %.3g, want 0", e)
		}
		t.Logf("%-16s max|Δ|/max|golden| = %.3g", name, e)
		if e > tol {
			t.Errorf("%s: rel error %.3g > %g", name, e, tol)
		}
	}
	if e := golden.RelToMax(image, golden.F32(t, g, "image")); e > tol {
		t.Errorf("image: rel error %.3g > %g", e, tol)
	}
	e01 := golden.RelToMax(vae.Image01(image), golden.F32(t, g, "image_01"))
	t.Logf("%-16s max|Δ|/max|golden| = %.3g", "image_01", e01)
	if e01 > tol {
		t.Errorf("image_01: rel error %.3g > %g", e01, tol)
	}
	// image_01 of the golden image itself is exact: the helper does what txt2img does.
	if e := golden.MaxAbs(vae.Image01(golden.F32(t, g, "image")), golden.F32(t, g, "image_01")); e != 0 {
		t.Errorf("Image01(golden image) differs from golden image_01 by %.3g", e)
	}
	// Decode (square latents, batch given) is DecodeShape; batch by batch gives the same images.
	img2, err := d.Decode(golden.F32(t, g, "latent"), 2)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(img2, image) {
		t.Errorf("Decode differs from DecodeShape")
	}
	var upTwo []float32
	two, err := d.DecodeShape(golden.F32(t, g, "latent"), []int{2, 4, 8, 8}, vae.Options{BatchSize: 2,
		Probe: func(name string, v *tensors.Tensor) {
			if name == "up_1" {
				upTwo = tensors.MustCopyFlatData[float32](v)
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	if e := golden.RelToMax(two, image); e > 1e-6 {
		t.Errorf("batch size 2 vs 1: rel difference %.3g", e)
	}
	if e := golden.RelToMax(upTwo, probes["up_1"]); e > 1e-6 {
		t.Errorf("probe up_1, batch size 2 vs 1: rel difference %.3g", e)
	}
}

// toDiffusers renames LDM decoder keys to diffusers AutoencoderKL names, written independently
// of vae.DiffusersKey (regular expressions over the whole key), and turns the attention's 1×1
// conv weights into Linear weights.
func toDiffusers(t testing.TB, f *checkpoint.File, levels int, legacy bool) map[string]*checkpoint.Tensor {
	t.Helper()
	attn := map[string]string{"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}
	if legacy {
		attn = map[string]string{"norm": "group_norm", "q": "query", "k": "key", "v": "value", "proj_out": "proj_attn"}
	}
	upRe := regexp.MustCompile(`^decoder\.up\.(\d+)\.(block|attn|upsample)\.(.*)$`)
	attnRe := regexp.MustCompile(`^(.*attentions\.\d+)\.(norm|q|k|v|proj_out)\.(weight|bias)$`)
	out := map[string]*checkpoint.Tensor{}
	for k, v := range f.Tensors {
		n := k
		if m := upRe.FindStringSubmatch(n); m != nil {
			i, _ := strconv.Atoi(m[1])
			kind := map[string]string{"block": "resnets", "attn": "attentions", "upsample": "upsamplers"}[m[2]]
			rest := m[3]
			if m[2] == "upsample" {
				rest = "0." + rest
			}
			n = fmt.Sprintf("decoder.up_blocks.%d.%s.%s", levels-1-i, kind, rest)
		}
		n = strings.Replace(n, "decoder.mid.block_1.", "decoder.mid_block.resnets.0.", 1)
		n = strings.Replace(n, "decoder.mid.block_2.", "decoder.mid_block.resnets.1.", 1)
		n = strings.Replace(n, "decoder.mid.attn_1.", "decoder.mid_block.attentions.0.", 1)
		n = strings.Replace(n, "decoder.norm_out.", "decoder.conv_norm_out.", 1)
		n = strings.Replace(n, ".nin_shortcut.", ".conv_shortcut.", 1)
		if m := attnRe.FindStringSubmatch(n); m != nil {
			n = m[1] + "." + attn[m[2]] + "." + m[3]
			if len(v.Shape) == 4 {
				v = &checkpoint.Tensor{DType: v.DType, Shape: v.Shape[:2], Data: v.Data}
			}
		}
		if _, dup := out[n]; dup {
			t.Fatalf("two keys map to %q", n)
		}
		out[n] = v
	}
	return out
}

// TestDiffusersLayout loads the golden weights renamed to the diffusers layout (current and
// legacy attention names, with encoder keys that must be ignored) and as a whole SD checkpoint
// (first_stage_model.*, with UNet keys): the images are bit-identical to the LDM file's.
func TestDiffusersLayout(t *testing.T) {
	ldm := golden.Open(t, weightsFile)
	g := golden.Open(t, decodeFile)
	ref, refProbes := decodeGolden(t, load(t, ldm), g)
	dir := t.TempDir()
	junk := checkpoint.NewF32([]float32{1, 2, 3}, 3)
	for _, c := range []struct {
		name   string
		layout vae.Layout
		ts     map[string]*checkpoint.Tensor
	}{
		{"diffusers", vae.Diffusers, toDiffusers(t, ldm, 2, false)},
		{"diffusers-legacy", vae.Diffusers, toDiffusers(t, ldm, 2, true)},
		{"sd-checkpoint", vae.LDM, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			ts := c.ts
			if ts == nil {
				ts = map[string]*checkpoint.Tensor{}
				for k, v := range ldm.Tensors {
					ts[vae.LDMPrefix+k] = v
				}
				ts["model.diffusion_model.input_blocks.0.0.weight"] = junk
				ts["cond_stage_model.transformer.text_model.embeddings.position_ids"] = junk
				ts[vae.LDMPrefix+"encoder.conv_in.weight"] = junk
				ts[vae.LDMPrefix+"quant_conv.weight"] = junk
			} else {
				ts["encoder.conv_in.weight"] = junk
				ts["encoder.mid_block.attentions.0.to_q.weight"] = junk
				ts["quant_conv.bias"] = junk
			}
			path := filepath.Join(dir, c.name+".safetensors")
			if err := checkpoint.WriteSafetensors(path, ts, nil); err != nil {
				t.Fatal(err)
			}
			b, err := engine.New("")
			if err != nil {
				t.Fatal(err)
			}
			d, err := vae.Load(b, path)
			if err != nil {
				t.Fatal(err)
			}
			if d.Layout != c.layout {
				t.Errorf("layout %v, want %v", d.Layout, c.layout)
			}
			got, probes := decodeGolden(t, d, g)
			if !slices.Equal(got, ref) {
				t.Errorf("image differs from the LDM file's (rel %.3g)", golden.RelToMax(got, ref))
			}
			for name, p := range refProbes {
				if !slices.Equal(probes[name], p) {
					t.Errorf("%s differs from the LDM file's", name)
				}
			}
		})
	}
}

// TestDiffusersKey checks the mapping on names of the real sd-vae-ft-ema file and that it is
// one-to-one at SD size.
func TestDiffusersKey(t *testing.T) {
	for ldm, want := range map[string]string{
		"post_quant_conv.weight":                   "post_quant_conv.weight",
		"decoder.conv_in.bias":                     "decoder.conv_in.bias",
		"decoder.norm_out.weight":                  "decoder.conv_norm_out.weight",
		"decoder.conv_out.weight":                  "decoder.conv_out.weight",
		"decoder.mid.block_1.conv1.weight":         "decoder.mid_block.resnets.0.conv1.weight",
		"decoder.mid.block_2.norm2.bias":           "decoder.mid_block.resnets.1.norm2.bias",
		"decoder.mid.attn_1.norm.weight":           "decoder.mid_block.attentions.0.group_norm.weight",
		"decoder.mid.attn_1.q.weight":              "decoder.mid_block.attentions.0.to_q.weight",
		"decoder.mid.attn_1.proj_out.bias":         "decoder.mid_block.attentions.0.to_out.0.bias",
		"decoder.up.3.block.0.conv1.weight":        "decoder.up_blocks.0.resnets.0.conv1.weight",
		"decoder.up.3.upsample.conv.weight":        "decoder.up_blocks.0.upsamplers.0.conv.weight",
		"decoder.up.1.block.0.nin_shortcut.weight": "decoder.up_blocks.2.resnets.0.conv_shortcut.weight",
		"decoder.up.0.block.2.norm1.bias":          "decoder.up_blocks.3.resnets.2.norm1.bias",
	} {
		got, _, err := vae.DiffusersKey(ldm, 4, false)
		if err != nil || got != want {
			t.Errorf("DiffusersKey(%q) = %q, %v; want %q", ldm, got, err, want)
		}
	}
	if got, lin, _ := vae.DiffusersKey("decoder.mid.attn_1.k.weight", 4, true); got != "decoder.mid_block.attentions.0.key.weight" || !lin {
		t.Errorf("legacy k.weight → %q (linear %t)", got, lin)
	}
	for _, bad := range []string{"decoder.up.4.block.0.conv1.weight", "decoder.mid.block_3.conv1.weight", "encoder.conv_in.weight", "decoder.up.0.block.0.conv3.weight"} {
		if got, _, err := vae.DiffusersKey(bad, 4, false); err == nil {
			t.Errorf("DiffusersKey(%q) = %q, want an error", bad, got)
		}
	}
	seen := map[string]string{}
	for ldm := range sdConfig().ExpectedShapes() {
		n, _, err := vae.DiffusersKey(ldm, 4, false)
		if err != nil {
			t.Fatal(err)
		}
		if prev, dup := seen[n]; dup {
			t.Errorf("%q and %q both map to %q", prev, ldm, n)
		}
		seen[n] = ldm
	}
}

// sdConfig is the real SD v1 VAE decoder.
func sdConfig() vae.Config {
	return vae.Config{EmbedDim: 4, ZChannels: 4, Channels: []int{128, 256, 512, 512}, NumResBlocks: 2, OutChannels: 3,
		LevelAttn: make([]bool, 4), MidAttn: true}
}

// TestInferSDSize reads the real SD VAE's configuration off shape-only state dicts in both layouts.
func TestInferSDSize(t *testing.T) {
	c := sdConfig()
	ldm := &checkpoint.File{Path: "sd.ckpt", Tensors: map[string]*checkpoint.Tensor{}}
	for k, s := range c.ExpectedShapes() {
		ldm.Tensors[vae.LDMPrefix+k] = &checkpoint.Tensor{DType: checkpoint.F32, Shape: s}
	}
	ldm.Tensors["model.diffusion_model.out.2.weight"] = &checkpoint.Tensor{DType: checkpoint.F32, Shape: []int{4, 320, 3, 3}}
	diff := &checkpoint.File{Path: "diffusion_pytorch_model.safetensors", Tensors: toDiffusers(t, &checkpoint.File{Tensors: stripPrefix(ldm.Tensors)}, 4, false)}
	for _, f := range []*checkpoint.File{ldm, diff} {
		got, layout, err := vae.InferConfig(f)
		if err != nil {
			t.Fatal(err)
		}
		const want = "AutoencoderKL decoder: ch 128, ch_mult [1 2 4 4], num_res_blocks 2, z 4, embed 4, out 3, mid attention"
		if got.String() != want || got.Upscale() != 8 {
			t.Errorf("%s (%v): %q (upscale %d), want %q", f.Path, layout, got, got.Upscale(), want)
		}
	}
	if n := len(c.ExpectedShapes()); n != 140 { // 138 decoder.* and post_quant_conv's 2
		t.Errorf("SD decoder + post_quant_conv has %d tensors, want 140", n)
	}
}

func stripPrefix(m map[string]*checkpoint.Tensor) map[string]*checkpoint.Tensor {
	out := map[string]*checkpoint.Tensor{}
	for k, v := range m {
		if r, ok := strings.CutPrefix(k, vae.LDMPrefix); ok {
			out[r] = v
		}
	}
	return out
}

// TestBadWeights: a missing or misshapen tensor is one error naming the file, the key and the
// expected shape, in the file's own layout; a file that is no VAE says so.
func TestBadWeights(t *testing.T) {
	ldm := golden.Open(t, weightsFile)
	b, err := engine.New("")
	if err != nil {
		t.Fatal(err)
	}
	edit := func(ts map[string]*checkpoint.Tensor, fn func(map[string]*checkpoint.Tensor)) *checkpoint.File {
		c := maps.Clone(ts)
		fn(c)
		return &checkpoint.File{Path: "/x/vae.safetensors", Tensors: c}
	}
	diff := toDiffusers(t, ldm, 2, false)
	for _, c := range []struct {
		name string
		f    *checkpoint.File
		want []string
	}{
		{"missing", edit(ldm.Tensors, func(m map[string]*checkpoint.Tensor) { delete(m, "decoder.mid.attn_1.v.bias") }),
			[]string{"/x/vae.safetensors", `missing tensor "decoder.mid.attn_1.v.bias" (want shape [64])`}},
		{"misshapen", edit(ldm.Tensors, func(m map[string]*checkpoint.Tensor) {
			m["decoder.up.0.block.1.conv2.weight"] = checkpoint.NewF32(make([]float32, 32*32*9), 32, 32, 9)
		}), []string{"/x/vae.safetensors", `tensor "decoder.up.0.block.1.conv2.weight" has shape [32, 32, 9], want [32, 32, 3, 3]`}},
		{"missing-post-quant", edit(ldm.Tensors, func(m map[string]*checkpoint.Tensor) { delete(m, "post_quant_conv.weight") }),
			[]string{`missing tensor "post_quant_conv.weight" (want shape [4, 4, 1, 1])`}},
		{"extra-block", edit(ldm.Tensors, func(m map[string]*checkpoint.Tensor) {
			m["decoder.up.1.block.2.conv1.weight"] = checkpoint.NewF32(make([]float32, 64*64*9), 64, 64, 3, 3)
		}), []string{`unexpected tensor "decoder.up.1.block.2.conv1.weight"`}},
		{"diffusers-missing", edit(diff, func(m map[string]*checkpoint.Tensor) { delete(m, "decoder.up_blocks.1.resnets.0.conv_shortcut.bias") }),
			[]string{`missing tensor "decoder.up_blocks.1.resnets.0.conv_shortcut.bias" (want shape [32])`}},
		{"diffusers-attn-shape", edit(diff, func(m map[string]*checkpoint.Tensor) {
			m["decoder.mid_block.attentions.0.to_k.weight"] = checkpoint.NewF32(make([]float32, 64*64), 64, 64, 1, 1)
		}), []string{`"decoder.mid_block.attentions.0.to_k.weight" has shape [64, 64, 1, 1], want [64, 64]`}},
		{"conv-rank", edit(ldm.Tensors, func(m map[string]*checkpoint.Tensor) {
			m["decoder.conv_in.weight"] = checkpoint.NewF32(make([]float32, 4), 4)
		}),
			[]string{`"decoder.conv_in.weight" has shape [4], want a conv weight`}},
		{"not-a-vae", golden.Open(t, "dit/weights.safetensors"), []string{"not an AutoencoderKL checkpoint"}},
		{"no-levels", edit(diff, func(m map[string]*checkpoint.Tensor) {
			for k := range m {
				if strings.HasPrefix(k, "decoder.up_blocks.") {
					delete(m, k)
				}
			}
		}), []string{`missing tensor "decoder.up_blocks.0.resnets.0.conv1.weight": no decoder level found`}},
		{"nan", edit(ldm.Tensors, func(m map[string]*checkpoint.Tensor) {
			m["decoder.conv_out.bias"] = checkpoint.NewF32([]float32{0, float32(math.NaN()), 0}, 3)
		}), []string{`"decoder.conv_out.bias" holds a non-finite value`}},
	} {
		_, err := vae.New(b, c.f)
		if err == nil {
			t.Errorf("%s: no error", c.name)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not contain %q", c.name, err, w)
			}
		}
	}
	if _, err := vae.Load(b, filepath.Join(t.TempDir(), "none.safetensors")); err == nil || !strings.Contains(err.Error(), "none.safetensors") {
		t.Errorf("missing file: %v", err)
	}
}

// TestBadLatent: wrong channels, sizes or non-finite values are errors, never panics.
func TestBadLatent(t *testing.T) {
	d := load(t, golden.Open(t, weightsFile))
	x := make([]float32, 2*4*8*8)
	nan := slices.Clone(x)
	nan[77] = float32(math.Inf(-1))
	for _, c := range []struct {
		name string
		err  func() error
		want string
	}{
		{"channels", func() error {
			_, err := d.DecodeShape(make([]float32, 2*3*8*8), []int{2, 3, 8, 8}, vae.Options{})
			return err
		}, "latent has 3 channels"},
		{"values", func() error { _, err := d.DecodeShape(x[:100], []int{2, 4, 8, 8}, vae.Options{}); return err }, "latent has 100 values"},
		{"rank", func() error { _, err := d.DecodeShape(x, []int{2, 4, 64}, vae.Options{}); return err }, "want [B, 4, h, w]"},
		{"zero", func() error { _, err := d.DecodeShape(nil, []int{0, 4, 8, 8}, vae.Options{}); return err }, "positive sizes"},
		{"batchsize", func() error { _, err := d.DecodeShape(x, []int{2, 4, 8, 8}, vae.Options{BatchSize: -1}); return err }, "batch size -1"},
		{"non-finite", func() error { _, err := d.Decode(nan, 2); return err }, "non-finite value (-Inf) at flat index 77"},
		{"decode-channels", func() error { _, err := d.Decode(make([]float32, 2*3*8*8), 2); return err }, "4 latent channels"},
		{"decode-batch", func() error { _, err := d.Decode(x, 0); return err }, "batch 0"},
	} {
		err := c.err()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
	}
	// Non-square latents are fine.
	img, err := d.DecodeShape(make([]float32, 4*8*4), []int{1, 4, 8, 4}, vae.Options{})
	if err != nil || len(img) != 3*16*8 {
		t.Errorf("8×4 latent: %d values, %v; want 384", len(img), err)
	}
}

// TestOtherArchitecture: three levels, one ResBlock per level, attention at level 1 and none in
// the mid block, 3 latent channels: read off the weights in both layouts, same images.
func TestOtherArchitecture(t *testing.T) {
	c := vae.Config{EmbedDim: 3, ZChannels: 4, Channels: []int{32, 32, 64}, NumResBlocks: 0, OutChannels: 3,
		LevelAttn: []bool{false, true, false}}
	ldm := vae.RandomWeights(c, 7)
	latent := make([]float32, 2*3*4*5)
	r := rand.New(rand.NewPCG(8, 1))
	for i := range latent {
		latent[i] = float32(r.NormFloat64() * 0.18215)
	}
	var ref []float32
	for i, f := range []*checkpoint.File{ldm, {Path: "random-diffusers", Tensors: toDiffusers(t, ldm, 3, false)}} {
		d := load(t, f)
		const want = "AutoencoderKL decoder: ch 32, ch_mult [1 1 2], num_res_blocks 0, z 4, embed 3, out 3, no mid attention, attention at levels 1"
		if d.Config.String() != want {
			t.Fatalf("%s: config %q, want %q", f.Path, d.Config, want)
		}
		if got := fmt.Sprint(d.ProbeNames()); got != "[z post_quant_conv conv_in mid_block_1 mid up_2 up_1 up_0 image]" {
			t.Errorf("probe names %s", got)
		}
		img, err := d.DecodeShape(latent, []int{2, 3, 4, 5}, vae.Options{BatchSize: 1})
		if err != nil {
			t.Fatal(err)
		}
		if len(img) != 2*3*16*20 {
			t.Fatalf("image has %d values, want 2×3×16×20", len(img))
		}
		for j, v := range img {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				t.Fatalf("image[%d] = %v", j, v)
			}
		}
		if i == 0 {
			ref = img
		} else if !slices.Equal(img, ref) {
			t.Errorf("diffusers layout gives other images than the LDM layout (rel %.3g)", golden.RelToMax(img, ref))
		}
	}
}
