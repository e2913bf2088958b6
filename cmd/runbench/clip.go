package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/cachebench/cachebench/datasets"
	"github.com/cachebench/cachebench/harness/engine"
	"github.com/cachebench/cachebench/models/clip"
)

// clipScoreReport is what `runbench clipscore --json` prints; the model id, preprocessing and
// value range travel with the score because CLIP scores are only comparable when they agree.
type clipScoreReport struct {
	ModelID            string          `json:"model_id"`
	Weights            string          `json:"weights"`
	WeightsSHA256      string          `json:"weights_sha256"`
	Config             string          `json:"config"`
	ValueRange         string          `json:"value_range"`
	Preprocessing      string          `json:"preprocessing"`
	Convention         string          `json:"convention"`
	Pairs              int             `json:"pairs"`
	ClipScore          float64         `json:"clip_score"`
	MeanPerPairClamped float64         `json:"mean_per_pair_clamped"`
	PerPair            []clipScorePair `json:"per_pair"`
}

type clipScorePair struct {
	Image   string  `json:"image"`
	Caption string  `json:"caption"`
	Cosine  float64 `json:"cosine"`
	Score   float64 `json:"score"` // 100·cos, unclamped
}

func newClipScoreCmd() *cobra.Command {
	var weights, vocab, images, captions, preset, valueRange, dbPath string
	var visionHeads, textHeads, batch int
	var runIDs []int64
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "clipscore --weights W --vocab V (--images X --captions C.txt | --db RESULTS.db [--run ID ...]) [--preset ViT-L/14 | --vision-heads N --text-heads N] [--json]",
		Short: "CLIP score of image i with caption line i, or of a sweep's images with their prompts (torchmetrics convention)",
		Long: `Computes CLIP scores with an OpenAI ViT CLIP (--weights: safetensors or torch.save state dict,
OpenAI or Hugging Face names) as torchmetrics does: max(mean_i 100·cos_i, 0), printed with the mean
of per-pair clamped scores, the model id (file name and SHA-256) and the image value range. The
head counts cannot be read off the weights: give --preset or both head flags. --value-range uint8
(default) divides pixels by 255; unit-rescaled reproduces [0,1] images given to torchmetrics,
which rescales them by 1/255 again.

--images X --captions C.txt: every image of X (a folder or .npz, read with datasets.ReadImages)
against line i of C.txt. --json adds the cosine of every pair.

--db RESULTS.db [--run ID ...]: every finished run of the results database whose samples carry
prompts (text-to-image runs, e.g. PixArt-α on COCO-30k prompts), or only the runs given: each
stored image (samples.output_path, checked against its recorded sha256) against its own prompt
(samples.prompt), --batch images at a time. Runs without prompts are skipped with a message (a
run named with --run must have them). Runs sampled with outputs = "hash" kept no image files and
cannot be scored: rerun them with outputs = "keep". The scores are stored as metrics of each run,
clip_score and clip_score_pairs_clamped, with the extractor "CLIP <model>; <weights file>
sha256:<prefix>; <value range>" and the preprocessing in the resize column; rerunning with the
same model and value range replaces them. runbench report shows clip_score in a column named
after the model, e.g. "CLIP (ViT-L/14)".

Which CLIP matters: papers report CLIP scores of PixArt-α on COCO prompts on different scales, ≈16
in the ToCa line and ≈27 elsewhere; torchmetrics' CLIPScore with OpenAI's ViT-L/14
(openai/clip-vit-large-patch14) on uint8 images gives the latter scale. The architecture, the
weights and the preprocessing (value range, resize) each move the score by points, so a CLIP score
is only comparable with scores computed with the same model and the same preprocessing; every
score here is printed and stored with both.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case dbPath != "" && (images != "" || captions != ""):
				return fmt.Errorf("--db scores a database's images against their stored prompts; it excludes --images and --captions")
			case dbPath == "" && len(runIDs) > 0:
				return fmt.Errorf("--run selects runs of a results database: give --db")
			}
			for _, f := range []struct{ flag, v string }{{"--weights", weights}, {"--vocab", vocab}} {
				if f.v == "" {
					return fmt.Errorf("%s is required", f.flag)
				}
			}
			if dbPath == "" && (images == "" || captions == "") {
				return fmt.Errorf("--images and --captions are required (or --db to score the runs of a results database)")
			}
			vr, err := clip.ParseValueRange(valueRange)
			if err != nil {
				return fmt.Errorf("--value-range: %w", err)
			}
			heads, err := clipHeads(preset, visionHeads, textHeads)
			if err != nil {
				return err
			}
			load := func() (*clip.Model, *clip.Tokenizer, error) {
				tok, err := clip.LoadTokenizer(vocab)
				if err != nil {
					return nil, nil, err
				}
				backendCfg, _ := cmd.Flags().GetString("backend")
				b, err := engine.New(backendCfg)
				if err != nil {
					return nil, nil, err
				}
				m, err := clip.Load(b, weights, heads)
				if err != nil {
					return nil, nil, err
				}
				if batch > 0 {
					m.BatchSize = batch
				}
				return m, tok, nil
			}
			if dbPath != "" {
				return clipScoreDB(cmd, dbPath, runIDs, vr, weights, load, asJSON)
			}
			caps, err := readCaptions(captions)
			if err != nil {
				return err
			}
			imgs, err := datasets.ReadImages(images)
			if err != nil {
				return err
			}
			if imgs.N != len(caps) {
				return fmt.Errorf("%s has %d captions but %s has %d images; want one caption line per image", captions, len(caps), images, imgs.N)
			}
			m, tok, err := load()
			if err != nil {
				return err
			}
			imgFeats, err := m.EncodeImages(imgs.Pix, imgs.N, imgs.H, imgs.W, vr)
			if err != nil {
				return fmt.Errorf("%s: %w", images, err)
			}
			txtFeats, err := m.EncodeText(tok.Tokenize(caps))
			if err != nil {
				return fmt.Errorf("%s: %w", captions, err)
			}
			s, err := clip.Score(imgFeats, txtFeats, m.EmbedDim)
			if err != nil {
				return err
			}
			rep := clipScoreReport{ModelID: m.ID(), Weights: weights, WeightsSHA256: m.SHA256, Config: m.Config.String(),
				ValueRange: vr.String(), Preprocessing: clipPreprocessing(m, vr),
				Convention: clipConvention, Pairs: imgs.N,
				ClipScore: s.Mean, MeanPerPairClamped: s.MeanPerPairClamped}
			for i, c := range s.Cosine {
				name := fmt.Sprint(i)
				if i < len(imgs.Names) {
					name = imgs.Names[i]
				}
				rep.PerPair = append(rep.PerPair, clipScorePair{Image: name, Caption: caps[i], Cosine: c, Score: 100 * c})
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintf(tw, "CLIP score (torchmetrics)\t%.4f\n", rep.ClipScore)
			fmt.Fprintf(tw, "mean of per-pair max(100·cos, 0)\t%.4f\n", rep.MeanPerPairClamped)
			fmt.Fprintf(tw, "pairs\t%d\n", rep.Pairs)
			fmt.Fprintf(tw, "model\t%s\n", rep.ModelID)
			fmt.Fprintf(tw, "architecture\t%s\n", rep.Config)
			fmt.Fprintf(tw, "image value range\t%s (%s)\n", rep.ValueRange, vr.Describe())
			return tw.Flush()
		},
	}
	f := cmd.Flags()
	f.StringVar(&weights, "weights", "", "CLIP checkpoint: safetensors or torch.save state dict, OpenAI or Hugging Face CLIPModel names")
	f.StringVar(&vocab, "vocab", "", "CLIP BPE merges file (bpe_simple_vocab_16e6.txt.gz)")
	f.StringVar(&images, "images", "", "images: a folder or .npz (datasets.ReadImages)")
	f.StringVar(&captions, "captions", "", "text file with one caption per line, line i for image i")
	f.StringVar(&dbPath, "db", "", "results database: score its runs' stored images against their prompts and store the scores (excludes --images/--captions)")
	f.Int64SliceVar(&runIDs, "run", nil, "with --db: the runs to score (repeat or comma-separate; default: every finished run with prompts)")
	f.StringVar(&preset, "preset", "", "OpenAI architecture giving the head counts ("+strings.Join(clip.PresetNames(), ", ")+"); the weights must match it")
	f.IntVar(&visionHeads, "vision-heads", 0, "vision attention heads (OpenAI models: vision width / 64)")
	f.IntVar(&textHeads, "text-heads", 0, "text attention heads (OpenAI models: text width / 64)")
	f.StringVar(&valueRange, "value-range", clip.RangeUint8.String(), `how pixels reach CLIP's normalisation: "uint8" (/255) or "unit-rescaled" (/255², ToCa's torchmetrics call)`)
	f.IntVar(&batch, "batch", 0, fmt.Sprintf("images or texts per graph execution (default %d); with --db also the images read at a time", clip.DefaultBatchSize))
	f.BoolVar(&asJSON, "json", false, "print one JSON object (with --images: with the per-pair cosines; with --db: one entry per scored run)")
	return cmd
}

// clipConvention is the formula every printed and stored CLIP score follows.
const clipConvention = "torchmetrics CLIPScore: max(mean_i 100·cos_i, 0)"

// clipPreprocessing describes the image transform in front of the model; it is printed and stored
// with each score because it moves CLIP scores by points.
func clipPreprocessing(m *clip.Model, vr clip.ValueRange) string {
	return fmt.Sprintf("PIL-bicubic resize of the short side to %d, center crop, %s", m.ImageResolution, vr.Describe())
}

// clipArch names a loaded architecture for tables: the OpenAI preset it equals (ViT-L/14, …),
// else its patch size, resolution and vision transformer size, since custom weights have no name.
func clipArch(c clip.Config) string {
	for _, name := range clip.PresetNames() {
		if p, err := clip.Preset(name); err == nil && p == c {
			return name
		}
	}
	return fmt.Sprintf("custom ViT/%d %dpx %d×%d", c.PatchSize, c.ImageResolution, c.VisionWidth, c.VisionLayers)
}

// clipHeads turns --preset or the head flags into the configuration clip.Load checks the weights against.
func clipHeads(preset string, vision, text int) (clip.Config, error) {
	if preset != "" {
		c, err := clip.Preset(preset)
		if err != nil {
			return clip.Config{}, fmt.Errorf("--preset: %w", err)
		}
		if (vision != 0 && vision != c.VisionHeads) || (text != 0 && text != c.TextHeads) {
			return clip.Config{}, fmt.Errorf("--vision-heads %d / --text-heads %d contradict --preset %s (%d / %d heads)", vision, text, preset, c.VisionHeads, c.TextHeads)
		}
		return c, nil
	}
	if vision <= 0 || text <= 0 {
		return clip.Config{}, fmt.Errorf("--preset or both --vision-heads and --text-heads are required (the weights do not record head counts)")
	}
	return clip.Config{VisionHeads: vision, TextHeads: text}, nil
}

// readCaptions reads one caption per line (a final newline ends the last line, it does not add one).
func readCaptions(path string) ([]string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the message names the path already
		}
		return nil, fmt.Errorf("captions %s: %w", path, err)
	}
	text := strings.TrimSuffix(strings.ReplaceAll(string(raw), "\r\n", "\n"), "\n")
	if strings.TrimSpace(text) == "" {
		return nil, fmt.Errorf("captions %s: empty file, want one caption per line", path)
	}
	return strings.Split(text, "\n"), nil
}

func newTokenizeCmd() *cobra.Command {
	var vocab string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "tokenize --vocab V [--json] TEXT...",
		Short: "CLIP token ids of each text (77 per row, clip.tokenize with truncate=True)",
		Long: `Prints, for each TEXT, the 77 ids that clip.tokenize(text, truncate=True) gives: SOT 49406, the
BPE ids, EOT 49407, zero padding; a text over 75 BPE ids keeps the first 75. The text is cleaned as
CLIP's simple_tokenizer does (a Go subset of ftfy, HTML unescape, whitespace, lower case).`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, texts []string) error {
			if vocab == "" {
				return fmt.Errorf("--vocab is required (CLIP's bpe_simple_vocab_16e6.txt.gz)")
			}
			tok, err := clip.LoadTokenizer(vocab)
			if err != nil {
				return err
			}
			rows := tok.Tokenize(texts)
			out := cmd.OutOrStdout()
			if asJSON {
				type row struct {
					Text      string  `json:"text"`
					Tokens    []int32 `json:"tokens"`
					Length    int     `json:"length"`
					Truncated bool    `json:"truncated"`
				}
				res := make([]row, len(texts))
				for i, t := range texts {
					n := len(tok.Encode(t)) + 2
					res[i] = row{Text: t, Tokens: rows[i], Length: min(n, tok.ContextLength), Truncated: n > tok.ContextLength}
				}
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(res)
			}
			for _, r := range rows {
				s := make([]string, len(r))
				for j, id := range r {
					s[j] = fmt.Sprint(id)
				}
				fmt.Fprintln(out, strings.Join(s, " "))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&vocab, "vocab", "", "CLIP BPE merges file (bpe_simple_vocab_16e6.txt.gz)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array of {text, tokens, length, truncated}")
	return cmd
}
