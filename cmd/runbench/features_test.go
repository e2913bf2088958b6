package main

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"fmt"
	"image"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cachebench/cachebench/internal/golden"
	"github.com/cachebench/cachebench/models/inception/inceptiontest"
)

// runFeaturesCmd runs `runbench features` in-process (the command on its own, so the test does
// not depend on its registration in the root).
func runFeaturesCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newFeaturesCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

// TestFeaturesCLI extracts the Inception golden images from a PNG folder and from an .npz, and
// checks the written features against pytorch-fid's.
func TestFeaturesCLI(t *testing.T) {
	dir := t.TempDir()
	weights := filepath.Join(dir, "inception.safetensors")
	if err := inceptiontest.WriteFormulaWeights(weights); err != nil {
		t.Fatal(err)
	}
	in := golden.Open(t, "inception/inputs.safetensors")
	x, err := in.Get("images_64")
	if err != nil {
		t.Fatal(err)
	}
	pix := x.Data.([]uint8)
	n, h, w := x.Shape[0], x.Shape[1], x.Shape[2]
	per := h * w * 3
	folder := filepath.Join(dir, "images")
	os.Mkdir(folder, 0o755)
	for i := n - 1; i >= 0; i-- { // written in reverse: rows must follow file names
		img := image.NewNRGBA(image.Rect(0, 0, w, h))
		for p := range h * w {
			copy(img.Pix[4*p:], pix[i*per+3*p:i*per+3*p+3])
			img.Pix[4*p+3] = 255
		}
		var b bytes.Buffer
		if err := png.Encode(&b, img); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(folder, fmt.Sprintf("sample_%d.png", i)), b.Bytes(), 0o644)
	}
	npz := filepath.Join(dir, "first.npz")
	writeTestNPZ(t, npz, pix[:per], 1, h, w)

	want := golden.Open(t, "inception/forward_64.safetensors")
	outFolder := filepath.Join(dir, "folder.safetensors")
	msg, err := runFeaturesCmd(t, "--extractor", "inception", "--weights", weights, "--images", folder, "--out", outFolder, "--batch", "3")
	if err != nil {
		t.Fatalf("features: %v\n%s", err, msg)
	}
	if !strings.Contains(msg, "4 images 64x64") {
		t.Errorf("summary does not name the images: %q", msg)
	}
	got := golden.Open(t, outFolder)
	for name, ref := range map[string]string{"pool3": "pool3", "spatial": "spatial_features", "logits": "logits", "logits_unbiased": "logits_unbiased"} {
		if e := golden.RelToMax(golden.F32(t, got, name), golden.F32(t, want, ref)); e > 1e-5 {
			t.Errorf("%s: rel-to-max error %.3g > 1e-5 against %s", name, e, ref)
		}
	}
	if s := got.Tensors["spatial"].Shape; fmt.Sprint(s) != "[4 2023]" {
		t.Errorf("spatial shape %v, want [4 2023]", s)
	}
	if names := got.Metadata["names"]; !strings.Contains(names, `"sample_0.png","sample_1.png"`) {
		t.Errorf("names metadata %q", names)
	}

	outNPZ := filepath.Join(dir, "npz.safetensors")
	if msg, err := runFeaturesCmd(t, "--weights", weights, "--images", npz, "--out", outNPZ, "--batch", "1"); err != nil {
		t.Fatalf("features on .npz: %v\n%s", err, msg)
	}
	one := golden.Open(t, outNPZ)
	a := golden.F32(t, one, "pool3")
	b := golden.F32(t, got, "pool3")[:len(a)]
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			t.Fatalf("pool3[%d] of the .npz run (batch 1) %v differs from the folder run (batch 3) %v", i, a[i], b[i])
		}
	}
}

func TestFeaturesCLIErrors(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--extractor", "clip", "--weights", "w", "--images", dir, "--out", "o"}, `--extractor "clip"`},
		{[]string{"--weights", "", "--images", dir, "--out", "o"}, "--weights is required"},
		{[]string{"--weights", "w", "--out", "o"}, "--images and --out are required"},
		{[]string{"--weights", "w", "--images", dir, "--out", "o", "--batch", "0"}, "--batch 0"},
		{[]string{"--weights", "w", "--images", dir, "--out", "/nonexistent/dir/f.safetensors"}, "folder /nonexistent/dir does not exist"},
		{[]string{"--weights", "w", "--images", dir, "--out", filepath.Join(dir, "f.safetensors")}, "no .png, .jpg or .jpeg files"},
		{[]string{"--weights", "w", "--images", dir, "--out", "o", "extra"}, "unknown command"},
	} {
		_, err := runFeaturesCmd(t, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("features %s: error %v, want %q", strings.Join(c.args, " "), err, c.want)
		}
	}
}

// writeTestNPZ writes pix as arr_0 uint8 [n, h, w, 3], as np.savez does.
func writeTestNPZ(t *testing.T, path string, pix []uint8, n, h, w int) {
	t.Helper()
	dict := fmt.Sprintf("{'descr': '|u1', 'fortran_order': False, 'shape': (%d, %d, %d, 3), }", n, h, w)
	for (10+len(dict)+1)%64 != 0 {
		dict += " "
	}
	dict += "\n"
	var npy bytes.Buffer
	npy.WriteString("\x93NUMPY\x01\x00")
	binary.Write(&npy, binary.LittleEndian, uint16(len(dict)))
	npy.WriteString(dict)
	npy.Write(pix)
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	fw, err := zw.Create("arr_0.npy")
	if err != nil {
		t.Fatal(err)
	}
	fw.Write(npy.Bytes())
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}
