package datasets

import "image"

// RGB returns an image's pixels as uint8 H×W×3 (RGB, row-major), converted exactly as
// ReadImages converts the files of a folder, so that images read one file at a time score the
// same as the folder read at once.
func RGB(img image.Image) []uint8 {
	b := img.Bounds()
	dst := make([]uint8, b.Dx()*b.Dy()*3)
	toRGB(dst, img)
	return dst
}
