package clip

import (
	"errors"
	"io/fs"
)

// unwrapPathErr drops *fs.PathError's "open <path>:" because the caller already names the file.
func unwrapPathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
