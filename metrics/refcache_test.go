package metrics

import "testing"

func TestRefCache(t *testing.T) {
	c := RefCache{Dir: t.TempDir()}
	pix := []uint8{1, 2, 3, 4, 5, 6}
	k := RefKey{ImagesSHA256: ImageSetHash(pix, 2, 1, 1, 3), Resolution: "1x1", Resize: "bilinear-299", Extractor: "net@abc"}
	if rs, err := c.Get(k); rs != nil || err != nil {
		t.Fatalf("empty cache: %v %v", rs, err)
	}
	rs, err := synthFeatures(20, 4, 0, 9).Stats()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Put(k, rs); err != nil {
		t.Fatal(err)
	}
	got, err := c.Get(k)
	if err != nil || got == nil || got.Mu[2] != rs.Mu[2] || got.MuS == nil {
		t.Fatalf("round trip: %v %v", got, err)
	}
	k2 := k
	k2.Extractor = "net@def"
	if rs, _ := c.Get(k2); rs != nil || k2.ID() == k.ID() {
		t.Error("another extractor must be another entry")
	}
	if ImageSetHash(pix, 2, 1, 1, 3) == ImageSetHash(pix, 1, 2, 1, 3) {
		t.Error("image set hash ignores the dimensions")
	}
}
