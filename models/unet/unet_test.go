package unet_test

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gomlx/gomlx/pkg/core/tensors"

	"github.com/cachebench/cachebench/harness/engine"
	"github.com/cachebench/cachebench/internal/golden"
	"github.com/cachebench/cachebench/models/checkpoint"
	"github.com/cachebench/cachebench/models/unet"
)

// tol is testdata/sd-unet/README.md's tolerance for forward tensors: max|Δ|/max|golden|.
const tol = 2e-5

const (
	weightsFile = "sd-unet/weights.safetensors"
	forwardFile = "sd-unet/forward.safetensors"
	goldenHeads = 4 // meta.json unet_config.num_heads
)

func load(t testing.TB, f *checkpoint.File) *unet.Model {
	t.Helper()
	b, err := engine.New("")
	if err != nil {
		t.Fatal(err)
	}
	m, err := unet.New(b, f, goldenHeads)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// forwardGolden runs the golden inputs with every probe.
func forwardGolden(t testing.TB, m *unet.Model, g *checkpoint.File) ([]float32, map[string][]float32) {
	t.Helper()
	var ts []float64
	for _, v := range golden.I64(t, g, "t") {
		ts = append(ts, float64(v))
	}
	probes := map[string][]float32{}
	eps, err := m.Forward(golden.F32(t, g, "x"), ts, golden.F32(t, g, "context"), unet.Options{
		Probe: func(name string, v *tensors.Tensor) { probes[name] = tensors.MustCopyFlatData[float32](v) }})
	if err != nil {
		t.Fatal(err)
	}
	return eps, probes
}

// TestForwardGolden compares every intermediate of forward.safetensors.
func TestForwardGolden(t *testing.T) {
	m := load(t, golden.Open(t, weightsFile))
	const want = "UNet: model_channels 32, channel_mult [1 2], num_res_blocks 1, attention_resolutions [1 2], depth 1, context 32, 4 heads, in 4, out 4, time embedding 128"
	if got := m.Config.String(); got != want {
		t.Fatalf("inferred config %q, want %q", got, want)
	}
	if m.Layout != unet.LDM {
		t.Errorf("layout %v, want ldm", m.Layout)
	}
	g := golden.Open(t, forwardFile)
	t0 := time.Now()
	eps, probes := forwardGolden(t, m, g)
	t.Logf("forward with probes (batch 3, 16×16, first call: compiles): %v (compile %v)", time.Since(t0), m.CompileTime())
	if e := golden.RelToMax(eps, golden.F32(t, g, "eps")); e > tol {
		t.Errorf("eps (returned): rel error %.3g > %g", e, tol)
	}
	names := slices.Sorted(maps.Keys(probes))
	wantNames := []string{"eps", "input_block_0", "input_block_1", "input_block_1_attn1", "input_block_1_attn2", "input_block_2",
		"input_block_3", "input_block_3_attn1", "input_block_3_attn2", "middle_block", "middle_block_attn1", "middle_block_attn2",
		"output_block_0", "output_block_0_attn1", "output_block_0_attn2", "output_block_1", "output_block_1_attn1", "output_block_1_attn2",
		"output_block_2", "output_block_2_attn1", "output_block_2_attn2", "output_block_3", "output_block_3_attn1", "output_block_3_attn2",
		"t_emb", "t_freq"}
	if !slices.Equal(names, wantNames) {
		t.Errorf("probe names %v\nwant %v", names, wantNames)
	}
	var report []string
	for _, name := range g.Names() {
		if name == "x" || name == "t" || name == "context" {
			continue
		}
		got, ok := probes[name]
		if !ok {
			t.Errorf("%s: not probed", name)
			continue
		}
		e := golden.RelToMax(got, golden.F32(t, g, name))
		if e > tol {
			t.Errorf("%s: rel error %.3g > %g", name, e, tol)
		}
		report = append(report, fmt.Sprintf("%s %.2g", name, e))
	}
	t.Logf("max|Δ|/max|golden|: %s", strings.Join(report, ", "))

	// Without probes the same graphs (other families) give the same ε, and a second call reuses them.
	compiled := m.CompileTime()
	t0 = time.Now()
	var ts []float64
	for _, v := range golden.I64(t, g, "t") {
		ts = append(ts, float64(v))
	}
	plain, err := m.Forward(golden.F32(t, g, "x"), ts, golden.F32(t, g, "context"), unet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	first := time.Since(t0)
	t0 = time.Now()
	if _, err := m.Forward(golden.F32(t, g, "x"), ts, golden.F32(t, g, "context"), unet.Options{}); err != nil {
		t.Fatal(err)
	}
	t.Logf("forward without probes: first %v (compile %v), then %v", first, m.CompileTime()-compiled, time.Since(t0))
	if !slices.Equal(plain, eps) {
		t.Errorf("ε without probes differs from ε with probes (rel %.3g)", golden.RelToMax(plain, eps))
	}
}

// TestBlocks checks the block listing against the golden README's description.
func TestBlocks(t *testing.T) {
	m := load(t, golden.Open(t, weightsFile))
	var got []string
	for _, b := range m.Blocks() {
		got = append(got, fmt.Sprintf("%s %v l%d ×%d→×%d %d+%d→%d skip%d", b.Name, b.Layers, b.Level, b.Factor, b.OutFactor,
			b.InChannels, b.SkipChannels, b.OutChannels, b.Skip))
	}
	want := []string{
		"input_blocks.0 [conv] l0 ×1→×1 4+0→32 skip-1",
		"input_blocks.1 [res attn] l0 ×1→×1 32+0→32 skip-1",
		"input_blocks.2 [downsample] l0 ×1→×2 32+0→32 skip-1",
		"input_blocks.3 [res attn] l1 ×2→×2 32+0→64 skip-1",
		"middle_block [res attn res] l1 ×2→×2 64+0→64 skip-1",
		"output_blocks.0 [res attn] l1 ×2→×2 64+64→64 skip3",
		"output_blocks.1 [res attn upsample] l1 ×2→×1 64+32→64 skip2",
		"output_blocks.2 [res attn] l0 ×1→×1 64+32→32 skip1",
		"output_blocks.3 [res attn] l0 ×1→×1 32+32→32 skip0",
	}
	if !slices.Equal(got, want) {
		t.Errorf("blocks:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestBlockAPI runs the forward block by block through Embed, RunBlock and Head, as an
// executor would, and expects Forward's ε bit for bit.
func TestBlockAPI(t *testing.T) {
	m := load(t, golden.Open(t, weightsFile))
	g := golden.Open(t, forwardFile)
	var ts []float64
	for _, v := range golden.I64(t, g, "t") {
		ts = append(ts, float64(v))
	}
	x, ctx := golden.F32(t, g, "x"), golden.F32(t, g, "context")
	want, err := m.Forward(x, ts, ctx, unet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	B, C, S := 3, 4, 16
	nhwc := make([]float32, len(x))
	for b := range B {
		for c := range C {
			for p := range S * S {
				nhwc[(b*S*S+p)*C+c] = x[(b*C+c)*S*S+p]
			}
		}
	}
	emb, err := m.Embed(ts)
	if err != nil {
		t.Fatal(err)
	}
	context := tensors.FromFlatDataAndDimensions(ctx, B, 77, 32)
	h := tensors.FromFlatDataAndDimensions(nhwc, B, S, S, C)
	var outs []*tensors.Tensor
	for i, bk := range m.Blocks() {
		var skip *tensors.Tensor
		if bk.Skip >= 0 {
			skip = outs[bk.Skip]
		}
		if h, err = m.RunBlock(i, h, emb, context, skip); err != nil {
			t.Fatal(err)
		}
		outs = append(outs, h)
	}
	got, err := m.Head(h)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("block by block ε differs from Forward's (rel %.3g)", golden.RelToMax(got, want))
	}
	if _, err := m.RunBlock(5, outs[4], emb, context, nil); err == nil || !strings.Contains(err.Error(), "skip") {
		t.Errorf("output block without its skip: error %v", err)
	}
	if _, err := m.RunBlock(1, outs[0], nil, context, nil); err == nil {
		t.Error("ResBlock without emb: want an error")
	}
	if _, err := m.RunBlock(99, h, emb, context, nil); err == nil {
		t.Error("block 99: want an error")
	}
	if _, err := m.RunBlock(1, outs[3], emb, context, nil); err == nil { // 64 channels into a 32-channel block
		t.Error("a block fed the wrong channels: want an error")
	}
}

// ---- diffusers layout ---------------------------------------------------------------------

var (
	inRe  = regexp.MustCompile(`^input_blocks\.(\d+)\.(\d+)\.(.*)$`)
	outRe = regexp.MustCompile(`^output_blocks\.(\d+)\.(\d+)\.(.*)$`)
	midRe = regexp.MustCompile(`^middle_block\.(\d+)\.(.*)$`)
)

// toDiffusers renames the golden UNet's LDM keys (2 levels, 1 res block each) to
// UNet2DConditionModel names, written independently of unet.DiffusersKey: a table of the tiny
// model's blocks and regular expressions over whole keys.
func toDiffusers(t testing.TB, f *checkpoint.File) *checkpoint.File {
	t.Helper()
	resnet := strings.NewReplacer("in_layers.0.", "norm1.", "in_layers.2.", "conv1.", "emb_layers.1.", "time_emb_proj.",
		"out_layers.0.", "norm2.", "out_layers.3.", "conv2.", "skip_connection.", "conv_shortcut.")
	inputs := map[string]string{"1.0": "down_blocks.0.resnets.0", "1.1": "down_blocks.0.attentions.0",
		"2.0": "down_blocks.0.downsamplers.0", "3.0": "down_blocks.1.resnets.0", "3.1": "down_blocks.1.attentions.0"}
	outputs := map[string]string{"0.0": "up_blocks.0.resnets.0", "0.1": "up_blocks.0.attentions.0",
		"1.0": "up_blocks.0.resnets.1", "1.1": "up_blocks.0.attentions.1", "1.2": "up_blocks.0.upsamplers.0",
		"2.0": "up_blocks.1.resnets.0", "2.1": "up_blocks.1.attentions.0", "3.0": "up_blocks.1.resnets.1", "3.1": "up_blocks.1.attentions.1"}
	fixed := map[string]string{"time_embed.0.": "time_embedding.linear_1.", "time_embed.2.": "time_embedding.linear_2.",
		"input_blocks.0.0.": "conv_in.", "out.0.": "conv_norm_out.", "out.2.": "conv_out."}
	out := map[string]*checkpoint.Tensor{}
	for k, v := range f.Tensors {
		var name string
		for from, to := range fixed {
			if strings.HasPrefix(k, from) {
				name = to + strings.TrimPrefix(k, from)
			}
		}
		if m := inRe.FindStringSubmatch(k); m != nil && name == "" {
			base, ok := inputs[m[1]+"."+m[2]]
			if !ok {
				t.Fatalf("toDiffusers: no table entry for %q", k)
			}
			rest := strings.Replace(m[3], "op.", "conv.", 1)
			if strings.Contains(base, "resnets") {
				rest = resnet.Replace(rest)
			}
			name = base + "." + rest
		}
		if m := outRe.FindStringSubmatch(k); m != nil {
			base, ok := outputs[m[1]+"."+m[2]]
			if !ok {
				t.Fatalf("toDiffusers: no table entry for %q", k)
			}
			rest := m[3]
			if strings.Contains(base, "resnets") {
				rest = resnet.Replace(rest)
			}
			name = base + "." + rest
		}
		if m := midRe.FindStringSubmatch(k); m != nil {
			rest := m[2]
			switch m[1] {
			case "0":
				name = "mid_block.resnets.0." + resnet.Replace(rest)
			case "1":
				name = "mid_block.attentions.0." + rest
			case "2":
				name = "mid_block.resnets.1." + resnet.Replace(rest)
			}
		}
		if name == "" {
			t.Fatalf("toDiffusers: unmapped key %q", k)
		}
		out[name] = v
	}
	if len(out) != len(f.Tensors) {
		t.Fatalf("toDiffusers: %d keys became %d", len(f.Tensors), len(out))
	}
	return &checkpoint.File{Path: "diffusion_pytorch_model.safetensors", Tensors: out}
}

// TestLayouts loads the golden weights renamed to the diffusers layout and inside a whole SD
// checkpoint (with other models' tensors beside them): the same ε bit for bit.
func TestLayouts(t *testing.T) {
	ldm := golden.Open(t, weightsFile)
	g := golden.Open(t, forwardFile)
	want, _ := forwardGolden(t, load(t, ldm), g)
	whole := map[string]*checkpoint.Tensor{
		"first_stage_model.decoder.conv_in.weight": checkpoint.NewF32(make([]float32, 4), 4),
		"cond_stage_model.transformer.x.weight":    checkpoint.NewF32(make([]float32, 2), 2),
		"model_ema.decay":                          checkpoint.NewF32([]float32{0.999}),
	}
	for k, v := range ldm.Tensors {
		whole[unet.LDMPrefix+k] = v
	}
	for _, c := range []struct {
		name   string
		f      *checkpoint.File
		layout unet.Layout
	}{
		{"diffusers", toDiffusers(t, ldm), unet.Diffusers},
		{"sd-checkpoint", &checkpoint.File{Path: "sd.ckpt", Tensors: whole}, unet.LDM},
	} {
		m := load(t, c.f)
		if m.Layout != c.layout {
			t.Errorf("%s: layout %v, want %v", c.name, m.Layout, c.layout)
		}
		got, _ := forwardGolden(t, m, g)
		if !slices.Equal(got, want) {
			t.Errorf("%s: ε differs from the LDM layout's (rel %.3g)", c.name, golden.RelToMax(got, want))
		}
	}
}

// TestDiffusersKey checks the mapping on names of the real SD v1.5 UNet (4 levels, 2 res blocks).
func TestDiffusersKey(t *testing.T) {
	for ldm, want := range map[string]string{
		"time_embed.2.bias":       "time_embedding.linear_2.bias",
		"input_blocks.0.0.weight": "conv_in.weight",
		"input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight":     "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight",
		"input_blocks.2.0.in_layers.2.weight":                         "down_blocks.0.resnets.1.conv1.weight",
		"input_blocks.3.0.op.weight":                                  "down_blocks.0.downsamplers.0.conv.weight",
		"input_blocks.4.0.skip_connection.weight":                     "down_blocks.1.resnets.0.conv_shortcut.weight",
		"input_blocks.9.0.op.bias":                                    "down_blocks.2.downsamplers.0.conv.bias",
		"input_blocks.11.0.out_layers.3.bias":                         "down_blocks.3.resnets.1.conv2.bias",
		"middle_block.1.proj_in.weight":                               "mid_block.attentions.0.proj_in.weight",
		"middle_block.2.in_layers.0.weight":                           "mid_block.resnets.1.norm1.weight",
		"output_blocks.0.0.emb_layers.1.weight":                       "up_blocks.0.resnets.0.time_emb_proj.weight",
		"output_blocks.2.1.conv.weight":                               "up_blocks.0.upsamplers.0.conv.weight",
		"output_blocks.3.0.out_layers.0.bias":                         "up_blocks.1.resnets.0.norm2.bias",
		"output_blocks.5.2.conv.bias":                                 "up_blocks.1.upsamplers.0.conv.bias",
		"output_blocks.8.1.transformer_blocks.0.ff.net.0.proj.weight": "up_blocks.2.attentions.2.transformer_blocks.0.ff.net.0.proj.weight",
		"output_blocks.11.1.proj_out.weight":                          "up_blocks.3.attentions.2.proj_out.weight",
		"out.0.weight":                                                "conv_norm_out.weight",
		"out.2.bias":                                                  "conv_out.bias",
	} {
		got, err := unet.DiffusersKey(ldm, 4, 2)
		if got != want || err != nil {
			t.Errorf("DiffusersKey(%q) = %q, %v; want %q", ldm, got, err, want)
		}
	}
	for _, bad := range []string{"input_blocks.12.0.op.weight", "input_blocks.11.0.op.weight", "output_blocks.11.2.conv.weight",
		"output_blocks.12.0.in_layers.0.weight", "middle_block.0.foo.weight", "time_embed.1.weight", "out.1.weight",
		"input_blocks.1.0.in_layers.2.scale", "label_emb.0.0.weight", "input_blocks.x.0.op.weight"} {
		if got, err := unet.DiffusersKey(bad, 4, 2); err == nil {
			t.Errorf("DiffusersKey(%q) = %q, want an error", bad, got)
		}
	}
}

// TestSDv1Shapes checks the configuration of the real SD v1 UNet: its 686 tensors and
// 859,520,964 parameters, and its block listing (12 input blocks, 12 output blocks).
func TestSDv1Shapes(t *testing.T) {
	c := unet.SDv1
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	shapes := c.ExpectedShapes()
	params := 0
	for _, s := range shapes {
		n := 1
		for _, d := range s {
			n *= d
		}
		params += n
	}
	if len(shapes) != 686 || params != 859520964 {
		t.Errorf("SD v1: %d tensors, %d parameters; want 686, 859520964", len(shapes), params)
	}
	blocks := c.Blocks()
	if len(blocks) != 25 || blocks[12].Kind != unet.Middle || blocks[12].Factor != 8 || blocks[24].OutChannels != 320 {
		t.Errorf("SD v1 blocks: %d, middle %+v", len(blocks), blocks[min(12, len(blocks)-1)])
	}
	if s := fmt.Sprint(c.AttentionResolutions()); s != "[1 2 4]" {
		t.Errorf("attention resolutions %s, want [1 2 4]", s)
	}
	for ldm := range shapes {
		if _, err := unet.DiffusersKey(ldm, 4, 2); err != nil {
			t.Error(err)
		}
	}
}

// TestErrors: wrong head counts, missing and misshapen tensors, bad inputs.
func TestErrors(t *testing.T) {
	ldm := golden.Open(t, weightsFile)
	b, err := engine.New("")
	if err != nil {
		t.Fatal(err)
	}
	for _, heads := range []int{0, 3} {
		if _, err := unet.New(b, ldm, heads); err == nil {
			t.Errorf("%d heads: want an error", heads)
		}
	}
	edit := func(fn func(map[string]*checkpoint.Tensor)) *checkpoint.File {
		m := maps.Clone(ldm.Tensors)
		fn(m)
		return &checkpoint.File{Path: "edited.safetensors", Tensors: m}
	}
	for name, c := range map[string]struct {
		f    *checkpoint.File
		want string
	}{
		"missing": {edit(func(m map[string]*checkpoint.Tensor) { delete(m, "output_blocks.1.2.conv.bias") }),
			`missing tensor "output_blocks.1.2.conv.bias"`},
		"misshapen": {edit(func(m map[string]*checkpoint.Tensor) {
			m["middle_block.1.norm.weight"] = checkpoint.NewF32(make([]float32, 32), 32)
		}), `"middle_block.1.norm.weight" has shape [32], want [64]`},
		"unexpected": {edit(func(m map[string]*checkpoint.Tensor) { m["label_emb.0.weight"] = checkpoint.NewF32([]float32{1}, 1) }),
			`unexpected tensor "label_emb.0.weight"`},
		"not a unet": {&checkpoint.File{Path: "vae.safetensors", Tensors: map[string]*checkpoint.Tensor{"decoder.conv_in.weight": nil}},
			"not a UNet checkpoint"},
		"non-finite": {edit(func(m map[string]*checkpoint.Tensor) {
			v := make([]float32, 32)
			v[3] = float32(posInf())
			m["input_blocks.0.0.bias"] = checkpoint.NewF32(v, 32)
		}), `"input_blocks.0.0.bias" holds a non-finite value`},
	} {
		_, err := unet.New(b, c.f, goldenHeads)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", name, err, c.want)
		}
	}
	m := load(t, ldm)
	x, ctx := make([]float32, 2*4*16*16), make([]float32, 2*77*32)
	for name, c := range map[string]struct {
		x, ctx []float32
		t      []float64
	}{
		"no timesteps":  {x, ctx, nil},
		"odd side":      {make([]float32, 2*4*15*15), ctx, []float64{1, 2}},
		"short context": {x, ctx[:100], []float64{1, 2}},
		"nan timestep":  {x, ctx, []float64{1, nan()}},
	} {
		if _, err := m.Forward(c.x, c.t, c.ctx, unet.Options{}); err == nil {
			t.Errorf("%s: want an error", name)
		}
	}
}

func posInf() float64 { v, _ := strconv.ParseFloat("+Inf", 64); return v }
func nan() float64    { v, _ := strconv.ParseFloat("NaN", 64); return v }
