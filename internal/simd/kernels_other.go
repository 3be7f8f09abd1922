//go:build !amd64

package simd

func archKernel(Level) (microKernel, bool) { return microKernel{}, false }

func erfArch(Level, []float32, []float32) bool { return false }

func expArch(Level, []float32, []float32) bool { return false }

func vv(Level, int, []float32, []float32, []float32) int { return 0 }

func vs(Level, int, []float32, []float32, float32) int { return 0 }

func sv(Level, int, []float32, float32, []float32) int { return 0 }
