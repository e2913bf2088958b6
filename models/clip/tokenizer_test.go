package clip

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/cachebench/cachebench/internal/golden"
)

type goldenCaption struct {
	Index        int      `json:"index"`
	Text         string   `json:"text"`
	CleanedLower string   `json:"cleaned_lower"`
	FtfyChanges  bool     `json:"ftfy_changes_text"`
	BPETokens    []string `json:"bpe_tokens"`
	IDs          []int32  `json:"ids"`
	Untruncated  int      `json:"untruncated_length"`
	Truncated    bool     `json:"truncated"`
	Decoded      string   `json:"decoded"`
}

func goldenCaptions(t testing.TB) []goldenCaption {
	t.Helper()
	raw, err := os.ReadFile(golden.Path("clip/tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		SOT, EOT, Pad int
		Context       int `json:"context_length"`
		Captions      []goldenCaption
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.SOT != SOT || doc.EOT != EOT || doc.Pad != 0 || doc.Context != ContextLength || len(doc.Captions) != 20 {
		t.Fatalf("tokenizer.json header: sot %d eot %d pad %d ctx %d, %d captions", doc.SOT, doc.EOT, doc.Pad, doc.Context, len(doc.Captions))
	}
	return doc.Captions
}

var (
	tokOnce *Tokenizer
)

func goldenTokenizer(t testing.TB) *Tokenizer {
	t.Helper()
	if tokOnce == nil {
		tok, err := LoadTokenizer(golden.Path("clip/bpe_simple_vocab_16e6.txt.gz"))
		if err != nil {
			t.Fatal(err)
		}
		tokOnce = tok
	}
	return tokOnce
}

// Every stage of every golden caption: cleaning, BPE pieces, ids, decoding and the padded rows.
func TestTokenizerGolden(t *testing.T) {
	tok := goldenTokenizer(t)
	caps := goldenCaptions(t)
	g := golden.Open(t, "clip/tokenizer.safetensors")
	rows := golden.I64(t, g, "tokens")
	lengths := golden.I64(t, g, "lengths")
	texts := make([]string, len(caps))
	for i, c := range caps {
		texts[i] = c.Text
	}
	got := tok.Tokenize(texts)
	exact := 0
	for i, c := range caps {
		if cl := cleanText(c.Text); cl != c.CleanedLower {
			t.Errorf("#%d cleaned %q, want %q", i, cl, c.CleanedLower)
		}
		var pieces []string
		for _, p := range pieceSplit.FindAllString(c.CleanedLower, -1) {
			pieces = append(pieces, tok.bpe(p)...)
		}
		if !slices.Equal(pieces, c.BPETokens) {
			t.Errorf("#%d BPE pieces %q, want %q", i, pieces, c.BPETokens)
		}
		ids := tok.Encode(c.Text)
		if len(ids)+2 != c.Untruncated {
			t.Errorf("#%d: %d ids, want %d", i, len(ids), c.Untruncated-2)
		}
		if !c.Truncated && !slices.Equal(ids, c.IDs[1:len(c.IDs)-1]) {
			t.Errorf("#%d ids %v, want %v", i, ids, c.IDs)
		}
		if d := tok.Decode(ids); d != c.Decoded {
			t.Errorf("#%d decoded %q, want %q", i, d, c.Decoded)
		}
		want := make([]int32, ContextLength)
		for j := range want {
			want[j] = int32(rows[i*ContextLength+j])
		}
		n := 0
		for _, v := range got[i] {
			if v != 0 {
				n++
			}
		}
		if slices.Equal(got[i], want) && int64(n) == lengths[i] {
			exact++
		} else {
			t.Errorf("#%d row\n got %v\nwant %v", i, got[i], want)
		}
	}
	t.Logf("%d of %d golden rows exact", exact, len(caps))
}

func TestPieceSplit(t *testing.T) {
	for in, want := range map[string]string{
		"it's 2024!!":            "it|'s|2|0|2|4|!!",
		"<|endoftext|>x":         "<|endoftext|>|x",
		"don't'll 'd":            "don|'t|'ll|'d",
		"a½²٣b":                  "a|½|²|٣|b",
		"tab\tand  spaces":       "tab|and|spaces",
		"hello-world_foo.bar/ba": "hello|-|world|_|foo|.|bar|/|ba",
	} {
		if got := strings.Join(pieceSplit.FindAllString(in, -1), "|"); got != want {
			t.Errorf("split %q = %q, want %q", in, got, want)
		}
	}
}

func TestCleanTextCases(t *testing.T) {
	for in, want := range map[string]string{
		"ΟΔΟΣ ΣΑΣ":           "οδος σας",
		"İstanbul":           "i\u0307stanbul",
		"a\u00a0\u3000b":     "a b",
		"&amp;amp;amp;":      "&",
		"x &lt;b&gt; <y>":    "x <b> <y>",
		"Ã©tÃ© naïve":        "été naïve",
		"\x1b[31mred\x1b[0m": "red",
		"ﬃ ＡＢＣ":              "ffi abc",
	} {
		if got := cleanText(in); got != want {
			t.Errorf("clean %q = %q, want %q", in, got, want)
		}
	}
}

func TestTokenizerBadVocab(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"empty.txt":  "",
		"short.txt":  "#version: 0.2\ni n\nt h\n",
		"broken.txt": "#version: 0.2\ni n x\n",
	} {
		p := dir + "/" + name
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := LoadTokenizer(p)
		if err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: error %v, want one naming the file", name, err)
		}
	}
	if _, err := LoadTokenizer(dir + "/missing.txt.gz"); err == nil || !strings.Contains(err.Error(), "missing.txt.gz") {
		t.Errorf("missing file: %v", err)
	}
}
