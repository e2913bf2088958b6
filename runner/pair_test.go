package runner

import "testing"

// A threshold cache's calibration, like its parameters, is a method setting: a run that reads one
// pairs with the none run of the same sampling for PSNR/SSIM; another seed does not.
func TestPairKeysIgnoreMethodSettings(t *testing.T) {
	none := `{"model":"m","weights_sha256":"w","method":"none","sampler":"ddim","steps":"50","cfg_scale":2,"guide_channels":-1,"seed":0,"num_samples":500,"backend":"b"}`
	tea := `{"model":"m","weights_sha256":"w","method":"teacache","params":{"thresh":0.01},"calibration":"cal@1234","sampler":"ddim","steps":"50","cfg_scale":2,"guide_channels":-1,"seed":0,"num_samples":500,"backend":"b"}`
	other := `{"model":"m","weights_sha256":"w","method":"fora","sampler":"ddim","steps":"50","cfg_scale":2,"guide_channels":-1,"seed":1,"num_samples":500,"backend":"b"}`
	a, err := pairKeysOf(none)
	if err != nil {
		t.Fatal(err)
	}
	b, err := pairKeysOf(tea)
	if err != nil {
		t.Fatal(err)
	}
	c, err := pairKeysOf(other)
	if err != nil {
		t.Fatal(err)
	}
	if a.withSteps != b.withSteps || b.method != "teacache" {
		t.Errorf("a calibrated run does not pair with none:\n%s\n%s", a.withSteps, b.withSteps)
	}
	if a.withSteps == c.withSteps || a.noSteps == c.noSteps {
		t.Error("runs of different seeds pair")
	}
}
