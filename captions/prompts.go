package captions

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"unicode/utf8"
)

// ReadPrompts reads one UTF-8 caption per line (CRLF or LF, final newline optional); a blank line is an error naming its number.
func ReadPrompts(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("captions: prompt file: %w", err)
	}
	return splitLines(path, b, "caption")
}

// utf8BOM is what Windows editors put before the first caption; it is not part of it.
var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// splitLines splits a one-entry-per-line text file; what names an entry in errors.
func splitLines(path string, b []byte, what string) ([]string, error) {
	b = bytes.TrimPrefix(b, utf8BOM)
	if len(b) == 0 {
		return nil, fmt.Errorf("captions: %s: empty file, want one %s per line", path, what)
	}
	s := strings.TrimSuffix(string(b), "\n")
	lines := strings.Split(s, "\n")
	for i, line := range lines {
		line = strings.TrimSuffix(line, "\r")
		if !utf8.ValidString(line) {
			return nil, fmt.Errorf("captions: %s: line %d is not valid UTF-8", path, i+1)
		}
		if strings.TrimSpace(line) == "" {
			// Blank lines would shift every later caption against its features and seed.
			return nil, fmt.Errorf("captions: %s: line %d is blank, want one %s on every line", path, i+1, what)
		}
		lines[i] = line
	}
	return lines, nil
}
