//go:build !amd64

package simd

func archKernel(Level) (microKernel, bool) { return microKernel{}, false }

func erfArch(Level, []float32, []float32) bool { return false }

func expArch(Level, []float32, []float32) bool { return false }
