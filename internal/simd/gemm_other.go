//go:build !amd64

package simd

func archKernel(Level) (microKernel, bool) { return microKernel{}, false }
