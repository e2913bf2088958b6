package diag

// plotColor is an opaque RGB colour for line plots.
type plotColor struct{ R, G, B uint8 }

// RGBA implements color.Color.
func (c plotColor) RGBA() (r, g, b, a uint32) {
	return uint32(c.R) * 0x101, uint32(c.G) * 0x101, uint32(c.B) * 0x101, 0xffff
}
