package clip

import (
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"sync"
	"unicode/utf8"
)

// CLIP's special tokens and context, as clip.tokenize uses them with the shipped vocabulary.
const (
	ContextLength = 77    // tokens per text row, SOT and EOT included
	SOT           = 49406 // <|startoftext|>
	EOT           = 49407 // <|endoftext|>; the text encoder reads the feature at its first occurrence
	VocabSize     = 49408 // 256 bytes, 256 bytes+</w>, 48894 merges, 2 specials
)

// numMerges is how many merge lines after the header CLIP reads (49152 − 256 − 2); the file
// holds more, which CLIP ignores.
const numMerges = VocabSize - 2*256 - 2

// pieceSplit is CLIP's pre-tokenizer pattern. Go's RE2 accepts it as is (it needs no
// lookahead) and, like Python, takes the first alternative that matches. Python's \s is
// Unicode-wide where Go's is ASCII; the text is whitespace-normalised to single ASCII spaces
// before this runs, so the two agree.
var pieceSplit = regexp.MustCompile(`(?i)<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+`)

// Tokenizer is CLIP's byte-level BPE tokenizer (simple_tokenizer.py) over a merges file.
type Tokenizer struct {
	// ContextLength is the row length Tokenize pads or truncates to (77 for every OpenAI CLIP).
	ContextLength int

	encoder  map[string]int32 // BPE piece → id
	decoder  []string         // id → BPE piece
	ranks    map[string]int   // "first second" → merge rank
	byteRune [256]rune        // byte → printable stand-in
	runeByte map[rune]byte

	mu    sync.Mutex
	cache map[string][]int32
}

// maxCache bounds the per-word BPE cache so a long caption file cannot grow it without limit.
const maxCache = 1 << 16

// LoadTokenizer reads a CLIP merges file such as bpe_simple_vocab_16e6.txt.gz (gzip or plain text).
func LoadTokenizer(path string) (*Tokenizer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("clip vocab %s: %w", path, unwrapPathErr(err))
	}
	defer f.Close()
	var r io.Reader = bufio.NewReader(f)
	if magic, _ := r.(*bufio.Reader).Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		gz, err := gzip.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("clip vocab %s: gzip: %w", path, err)
		}
		defer gz.Close()
		r = gz
	}
	t, err := readMerges(r)
	if err != nil {
		return nil, fmt.Errorf("clip vocab %s: %w", path, err)
	}
	return t, nil
}

// readMerges builds the vocabulary exactly as simple_tokenizer.py does: the 256 byte symbols in
// bytes_to_unicode order, the same with </w>, one entry per merge, then the two specials.
func readMerges(r io.Reader) (*Tokenizer, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	if !sc.Scan() {
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("read: %w", err)
		}
		return nil, errors.New("empty file, want a version header line and 48894 merge lines")
	}
	t := &Tokenizer{ContextLength: ContextLength, ranks: make(map[string]int, numMerges), cache: map[string][]int32{}}
	order := bytesToUnicode(&t.byteRune)
	t.runeByte = make(map[rune]byte, 256)
	for b, r := range t.byteRune {
		t.runeByte[r] = byte(b)
	}
	vocab := make([]string, 0, VocabSize)
	for _, b := range order {
		vocab = append(vocab, string(t.byteRune[b]))
	}
	for _, b := range order {
		vocab = append(vocab, string(t.byteRune[b])+"</w>")
	}
	for line := 1; line <= numMerges; line++ {
		if !sc.Scan() {
			if err := sc.Err(); err != nil {
				return nil, fmt.Errorf("line %d: read: %w", line+1, err)
			}
			return nil, fmt.Errorf("has %d merge lines, want at least %d after the header (CLIP's bpe_simple_vocab_16e6.txt.gz)", line-1, numMerges)
		}
		text := sc.Text()
		if !utf8.ValidString(text) {
			return nil, fmt.Errorf("line %d: not valid UTF-8", line+1)
		}
		parts := strings.Fields(text)
		if len(parts) != 2 {
			return nil, fmt.Errorf("line %d: %q is not a merge (want two space-separated symbols)", line+1, text)
		}
		t.ranks[parts[0]+" "+parts[1]] = line - 1
		vocab = append(vocab, parts[0]+parts[1])
	}
	vocab = append(vocab, "<|startoftext|>", "<|endoftext|>")
	t.decoder = vocab
	t.encoder = make(map[string]int32, len(vocab))
	for i, v := range vocab {
		t.encoder[v] = int32(i) // a repeated piece keeps its last id, as Python's dict(zip(...)) does
	}
	return t, nil
}

// bytesToUnicode fills table with CLIP's byte → rune map (printable Latin-1 bytes map to
// themselves, the rest to 256+n) and returns the bytes in the dict's insertion order, which
// fixes the first 512 ids.
func bytesToUnicode(table *[256]rune) []byte {
	var order []byte
	seen := [256]bool{}
	for _, rg := range [][2]int{{'!', '~'}, {0xA1, 0xAC}, {0xAE, 0xFF}} {
		for b := rg[0]; b <= rg[1]; b++ {
			order = append(order, byte(b))
			table[b] = rune(b)
			seen[b] = true
		}
	}
	n := 0
	for b := range 256 {
		if !seen[b] {
			order = append(order, byte(b))
			table[b] = rune(256 + n)
			n++
		}
	}
	return order
}

// Encode returns the BPE ids of a text without SOT, EOT or truncation.
func (t *Tokenizer) Encode(text string) []int32 {
	var ids []int32
	for _, piece := range pieceSplit.FindAllString(cleanText(text), -1) {
		ids = append(ids, t.bpeIDs(piece)...)
	}
	return ids
}

// Tokenize is clip.tokenize(texts, truncate=True): one row of ContextLength ids per text,
// [SOT, ids…, EOT] padded with 0; a text too long keeps SOT and the first ContextLength−2 ids
// and ends in EOT.
func (t *Tokenizer) Tokenize(texts []string) [][]int32 { return t.TokenizePad(texts, 0) }

// TokenizePad is Tokenize with another padding id. Stable Diffusion v1 pads with EOT: LDM's
// FrozenCLIPEmbedder and diffusers call Hugging Face's CLIPTokenizer for
// openai/clip-vit-large-patch14 (pad token <|endoftext|>) with padding="max_length",
// max_length=77, truncation=True, which truncates exactly as Tokenize does (SOT, the first 75
// ids, EOT at position 76). The pooled feature ignores the padding (causal mask), but the last
// hidden state the UNet reads does not.
func (t *Tokenizer) TokenizePad(texts []string, pad int32) [][]int32 {
	ctx := max(t.ContextLength, 2)
	rows := make([][]int32, len(texts))
	for i, text := range texts {
		ids := t.Encode(text)
		row := make([]int32, ctx)
		row[0] = SOT
		n := copy(row[1:ctx-1], ids)
		row[1+n] = EOT
		for j := n + 2; j < ctx; j++ {
			row[j] = pad
		}
		rows[i] = row
	}
	return rows
}

// Decode maps ids back to text the way simple_tokenizer.decode does: </w> becomes a space and
// invalid UTF-8 becomes U+FFFD. Ids outside the vocabulary are skipped.
func (t *Tokenizer) Decode(ids []int32) string {
	var sb strings.Builder
	for _, id := range ids {
		if id >= 0 && int(id) < len(t.decoder) {
			sb.WriteString(t.decoder[id])
		}
	}
	var raw []byte
	for _, r := range sb.String() {
		if b, ok := t.runeByte[r]; ok {
			raw = append(raw, b)
		} else {
			raw = utf8.AppendRune(raw, r)
		}
	}
	return strings.ReplaceAll(strings.ToValidUTF8(string(raw), "\uFFFD"), "</w>", " ")
}

// bpeIDs encodes one pre-token: its UTF-8 bytes through the byte alphabet, then BPE.
func (t *Tokenizer) bpeIDs(piece string) []int32 {
	t.mu.Lock()
	ids, ok := t.cache[piece]
	t.mu.Unlock()
	if ok {
		return ids
	}
	for _, p := range t.bpe(piece) {
		ids = append(ids, t.encoder[p])
	}
	t.mu.Lock()
	if len(t.cache) >= maxCache {
		t.cache = map[string][]int32{}
	}
	t.cache[piece] = ids
	t.mu.Unlock()
	return ids
}

// bpe returns the merged pieces of one pre-token. The special-token strings pass through whole
// (simple_tokenizer seeds its cache with them), so they get ids 49406 and 49407.
func (t *Tokenizer) bpe(piece string) []string {
	if piece == "<|startoftext|>" || piece == "<|endoftext|>" {
		return []string{piece}
	}
	word := make([]string, 0, len(piece))
	for i := 0; i < len(piece); i++ {
		word = append(word, string(t.byteRune[piece[i]]))
	}
	if len(word) == 0 {
		return nil
	}
	word[len(word)-1] += "</w>"
	for len(word) > 1 {
		// The lowest-ranked adjacent pair; ties cannot happen as every pair has its own rank.
		best, bestRank := -1, int(^uint(0)>>1)
		for i := 0; i+1 < len(word); i++ {
			if r, ok := t.ranks[word[i]+" "+word[i+1]]; ok && r < bestRank {
				best, bestRank = i, r
			}
		}
		if best < 0 {
			break
		}
		first, second := word[best], word[best+1]
		merged := word[:0:0]
		for i := 0; i < len(word); {
			if i+1 < len(word) && word[i] == first && word[i+1] == second {
				merged = append(merged, first+second)
				i += 2
			} else {
				merged = append(merged, word[i])
				i++
			}
		}
		word = merged
	}
	return word
}
