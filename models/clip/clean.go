package clip

// Text cleaning before BPE, as simple_tokenizer.py does it:
//
//	whitespace_clean(basic_clean(text)).lower()
//	basic_clean     = ftfy.fix_text → html.unescape twice → strip
//	whitespace_clean = collapse \s+ to " " → strip
//
// ftfy (6.3) is a Python library with no Go port, so fixText re-implements the parts of its
// default fix_text that matter for captions, and differs from it as follows:
//   - character maps done exactly: HTML entities (only when the line has no "<"), C1 controls
//     read as Windows-1252, Latin ligatures (ﬁ → fi, ...), full-width and half-width forms and
//     U+3000 (NFKC of U+FF01–U+FFEF), curly quotes (U+02BC, U+2018–U+201B → ', U+201C–U+201F → "),
//     ANSI terminal escapes and ftfy's list of control characters removed, NFC;
//   - mojibake: ftfy decides with a "badness" heuristic and tries several legacy encodings
//     (Windows-1250/1251, MacRoman, cp437, ...). Here only UTF-8 read as Windows-1252/Latin-1 is
//     repaired: the whole line when all of it encodes to Windows-1252 bytes that form valid UTF-8
//     with at least one multi-byte sequence, else each run that is a well-formed UTF-8 sequence
//     (lead byte then continuation bytes) in that encoding. ftfy's heuristic may keep some of
//     these (a deliberate "Ã©"), and it fixes mojibake of other encodings that this leaves alone;
//   - html.unescape is Go's html.UnescapeString, which uses the same HTML5 entity table; Python
//     also deletes numeric references to some control and non-character code points, and ftfy
//     also unescapes upper-case entity names (&EACUTE;);
//   - str.lower is unicode.ToLower per rune plus Python's two special cases (İ → i̇ and the final
//     sigma rule); the Unicode versions of Go and Python may differ for new characters.
//
// Every golden caption of testdata/clip (including ligatures, full-width text, mojibake, curly
// quotes and entities) gives the reference ids.

import (
	"html"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// cleanText is simple_tokenizer's whitespace_clean(basic_clean(text)).lower().
func cleanText(text string) string {
	text = strings.ToValidUTF8(text, "\uFFFD")
	text = fixText(text)
	text = html.UnescapeString(html.UnescapeString(text))
	text = pyStrip(text)
	text = collapseSpace(text)
	return pyLower(text)
}

// fixText applies the ftfy subset line by line (ftfy decides HTML unescaping per line).
func fixText(text string) string {
	lines := strings.SplitAfter(text, "\n")
	for i, l := range lines {
		lines[i] = fixLine(l)
	}
	return strings.Join(lines, "")
}

// fixLine repeats the fixes until nothing changes, as ftfy's fix_and_explain does (double
// mojibake or double-escaped entities take two rounds).
func fixLine(s string) string {
	unescape := !strings.Contains(s, "<")
	for range 16 {
		orig := s
		if unescape {
			s = htmlEntity.ReplaceAllStringFunc(s, html.UnescapeString)
		}
		s = fixMojibake(s)
		s = mapRunes(s, fixChar)
		s = terminalEscape.ReplaceAllString(s, "")
		s = mapRunes(s, removeControl)
		s = norm.NFC.String(s)
		if s == orig {
			break
		}
	}
	return s
}

// htmlEntity is ftfy's HTML_ENTITY_RE: only terminated entities are unescaped at this stage.
var htmlEntity = regexp.MustCompile(`&#?[0-9A-Za-z]{1,24};`)

// terminalEscape is ftfy's ANSI escape pattern.
var terminalEscape = regexp.MustCompile("\x1b\\[((?:\\d|;)*)([a-zA-Z])")

// fixChar is ftfy's per-character maps: C1 controls, ligatures, character width and quotes. It
// returns the replacement text.
func fixChar(r rune) (string, bool) {
	switch {
	case r >= 0x80 && r <= 0x9F:
		if c := cp1252High[r-0x80]; c != 0 {
			return string(c), true
		}
		return "", false
	case r == 0x3000:
		return " ", true
	case r >= 0xFF01 && r <= 0xFFEF:
		if s := norm.NFKC.String(string(r)); s != string(r) {
			return s, true
		}
	case r == 0x02BC || (r >= 0x2018 && r <= 0x201B):
		return "'", true
	case r >= 0x201C && r <= 0x201F:
		return "\"", true
	}
	if s, ok := ligatures[r]; ok {
		return s, true
	}
	return "", false
}

// removeControl deletes ftfy's control characters (after terminal escapes, which start with one).
func removeControl(r rune) (string, bool) {
	return "", r <= 0x08 || r == 0x0B || (r >= 0x0E && r <= 0x1F) || r == 0x7F ||
		(r >= 0x206A && r <= 0x206F) || r == 0xFEFF || (r >= 0xFFF9 && r <= 0xFFFC)
}

// ligatures is ftfy's fix_latin_ligatures table.
var ligatures = map[rune]string{
	'Ĳ': "IJ", 'ĳ': "ij", 'ŉ': "ʼn", 'Ǳ': "DZ", 'ǲ': "Dz", 'ǳ': "dz", 'Ǆ': "DŽ", 'ǅ': "Dž", 'ǆ': "dž",
	'Ǉ': "LJ", 'ǈ': "Lj", 'ǉ': "lj", 'Ǌ': "NJ", 'ǋ': "Nj", 'ǌ': "nj",
	'ﬀ': "ff", 'ﬁ': "fi", 'ﬂ': "fl", 'ﬃ': "ffi", 'ﬄ': "ffl", 'ﬅ': "ſt", 'ﬆ': "st",
}

// mapRunes replaces each rune for which f reports a replacement.
func mapRunes(s string, f func(rune) (string, bool)) string {
	var sb strings.Builder
	changed := false
	for i, r := range s {
		rep, ok := f(r)
		if !ok {
			if changed {
				sb.WriteRune(r)
			}
			continue
		}
		if !changed {
			sb.WriteString(s[:i])
			changed = true
		}
		sb.WriteString(rep)
	}
	if !changed {
		return s
	}
	return sb.String()
}

// cp1252High maps Windows-1252 bytes 0x80–0x9F to runes; 0 marks the five undefined bytes, which
// ftfy's "sloppy" codec maps to the same code point (Latin-1).
var cp1252High = [32]rune{
	0x20AC, 0, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0, 0x017D, 0,
	0, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0, 0x017E, 0x0178,
}

// sloppyByte is the byte a rune has in "sloppy" Windows-1252 (Latin-1 for the undefined slots).
func sloppyByte(r rune) (byte, bool) {
	if r < 0x80 || (r >= 0xA0 && r <= 0xFF) {
		return byte(r), true
	}
	for i, c := range cp1252High {
		if c == r || (c == 0 && r == rune(0x80+i)) {
			return byte(0x80 + i), true
		}
	}
	return 0, false
}

// fixMojibake undoes UTF-8 that was decoded as Windows-1252 (see the package notes above).
func fixMojibake(s string) string {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			ascii = false
			break
		}
	}
	if ascii {
		return s
	}
	// Whole line.
	raw := make([]byte, 0, len(s))
	whole := true
	for _, r := range s {
		b, ok := sloppyByte(r)
		if !ok {
			whole = false
			break
		}
		raw = append(raw, b)
	}
	if whole && utf8.Valid(raw) && string(raw) != s {
		return string(raw)
	}
	// Runs: a lead byte and its continuation bytes, each a rune of the 1252 alphabet.
	runes := []rune(s)
	var sb strings.Builder
	changed := false
	for i := 0; i < len(runes); {
		if n := mojibakeRun(runes[i:]); n > 0 {
			seq := make([]byte, n)
			for k := range n {
				seq[k], _ = sloppyByte(runes[i+k])
			}
			if r, size := utf8.DecodeRune(seq); r != utf8.RuneError && size == n {
				sb.WriteRune(r)
				i += n
				changed = true
				continue
			}
		}
		sb.WriteRune(runes[i])
		i++
	}
	if !changed {
		return s
	}
	return sb.String()
}

// mojibakeRun is the length of the UTF-8 sequence that rs starts with when read as
// Windows-1252 bytes, or 0.
func mojibakeRun(rs []rune) int {
	lead, ok := sloppyByte(rs[0])
	if !ok {
		return 0
	}
	var n int
	switch {
	case lead >= 0xC2 && lead <= 0xDF:
		n = 2
	case lead >= 0xE0 && lead <= 0xEF:
		n = 3
	case lead >= 0xF0 && lead <= 0xF4:
		n = 4
	default:
		return 0
	}
	if len(rs) < n {
		return 0
	}
	for _, r := range rs[1:n] {
		if b, ok := sloppyByte(r); !ok || b < 0x80 || b > 0xBF {
			return 0
		}
	}
	return n
}

// pyIsSpace is Python's str.isspace: Unicode White_Space plus the separators U+001C–U+001F.
func pyIsSpace(r rune) bool {
	return unicode.IsSpace(r) || (r >= 0x1C && r <= 0x1F)
}

// pyStrip is Python's str.strip() with no arguments.
func pyStrip(s string) string { return strings.TrimFunc(s, pyIsSpace) }

// collapseSpace is re.sub(r'\s+', ' ', s).strip() with Python's Unicode \s.
func collapseSpace(s string) string {
	var sb strings.Builder
	inSpace := false
	for _, r := range s {
		if pyIsSpace(r) {
			inSpace = true
			continue
		}
		if inSpace && sb.Len() > 0 {
			sb.WriteByte(' ')
		}
		inSpace = false
		sb.WriteRune(r)
	}
	return sb.String()
}

// pyLower is Python's str.lower: the simple lowercase map plus İ → "i̇" and the final sigma.
func pyLower(s string) string {
	rs := []rune(s)
	var sb strings.Builder
	for i, r := range rs {
		switch r {
		case 'İ':
			sb.WriteString("i\u0307")
		case 'Σ':
			if finalSigma(rs, i) {
				sb.WriteRune('ς')
			} else {
				sb.WriteRune('σ')
			}
		default:
			sb.WriteRune(unicode.ToLower(r))
		}
	}
	return sb.String()
}

// finalSigma is Python's Final_Sigma test: a cased letter before (skipping case-ignorables) and
// none after.
func finalSigma(rs []rune, i int) bool {
	j := i - 1
	for j >= 0 && caseIgnorable(rs[j]) {
		j--
	}
	if j < 0 || !cased(rs[j]) {
		return false
	}
	j = i + 1
	for j < len(rs) && caseIgnorable(rs[j]) {
		j++
	}
	return j == len(rs) || !cased(rs[j])
}

func cased(r rune) bool {
	return unicode.IsUpper(r) || unicode.IsLower(r) || unicode.IsTitle(r) ||
		unicode.Is(unicode.Other_Lowercase, r) || unicode.Is(unicode.Other_Uppercase, r)
}

// caseIgnorable approximates Unicode Case_Ignorable: marks, format characters, modifiers and the
// word-internal punctuation of Word_Break MidLetter/MidNumLet/Single_Quote.
func caseIgnorable(r rune) bool {
	switch r {
	case '\'', '.', ':', '^', '`', 0xB7, 0x2018, 0x2019, 0x2024, 0x2027, 0xFE13, 0xFE52, 0xFE55, 0xFF07, 0xFF0E, 0xFF1A, 0x05F4:
		return true
	}
	return unicode.In(r, unicode.Mn, unicode.Me, unicode.Cf, unicode.Lm, unicode.Sk)
}
