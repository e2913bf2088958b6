// Package gx holds the few helpers every GoMLX model of the project needs.
package gx

import "fmt"

// Catch runs fn and returns a GoMLX panic (graph construction or execution error) as an error:
// GoMLX reports errors by panicking on the calling goroutine.
func Catch(fn func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			if e, ok := r.(error); ok {
				err = e
			} else {
				err = fmt.Errorf("%v", r)
			}
		}
	}()
	fn()
	return nil
}
