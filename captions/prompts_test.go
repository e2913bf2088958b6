package captions

import (
	"path/filepath"
	"slices"
	"testing"
)

func TestReadPrompts(t *testing.T) {
	want := []string{"a photo of a cat", "ünïcödé  caption ", "last"}
	for name, text := range map[string]string{
		"lf":         "a photo of a cat\nünïcödé  caption \nlast\n",
		"no newline": "a photo of a cat\nünïcödé  caption \nlast",
		"crlf":       "a photo of a cat\r\nünïcödé  caption \r\nlast\r\n",
		"bom":        "\ufeffa photo of a cat\nünïcödé  caption \nlast",
	} {
		path := filepath.Join(t.TempDir(), "prompts.txt")
		writeBytes(t, path, []byte(text))
		got, err := ReadPrompts(path)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("%s: got %q, want %q", name, got, want)
		}
	}
}

func TestReadPromptsErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		text string
		want []string
	}{
		"blank line":      {"a\n\nb\n", []string{"line 2 is blank"}},
		"spaces only":     {"a\nb\n \t\n", []string{"line 3 is blank"}},
		"trailing blank":  {"a\n\n", []string{"line 2 is blank"}},
		"blank crlf":      {"a\r\n\r\nb", []string{"line 2 is blank"}},
		"empty":           {"", []string{"empty file"}},
		"bad utf-8":       {"a\nb\xff\n", []string{"line 2 is not valid UTF-8"}},
		"leading newline": {"\na", []string{"line 1 is blank"}},
	} {
		path := filepath.Join(t.TempDir(), "prompts.txt")
		writeBytes(t, path, []byte(tc.text))
		_, err := ReadPrompts(path)
		t.Run(name, func(t *testing.T) { wantErr(t, err, append([]string{path}, tc.want...)...) })
	}
	_, err := ReadPrompts(filepath.Join(t.TempDir(), "missing.txt"))
	wantErr(t, err, "missing.txt", "no such file")
}
