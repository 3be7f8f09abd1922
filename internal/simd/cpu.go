package simd

import (
	"os"
	"runtime"

	"golang.org/x/sys/cpu"
)

// Level is an instruction set the kernels are written for.
type Level int

// The levels, from none to the widest.
const (
	// Generic is plain Go: every kernel has this version.
	Generic Level = iota
	// AVX2 is AVX2 with FMA and F16C (x86-64-v3).
	AVX2
	// AVX512 is AVX-512 F, BW, DQ and VL on top of AVX2.
	AVX512
)

func (l Level) String() string {
	switch l {
	case Generic:
		return "generic Go"
	case AVX2:
		return "AVX2+FMA"
	case AVX512:
		return "AVX-512"
	}
	return "unknown"
}

// NoSIMDEnv is the environment variable that, set to 1, makes every kernel
// run its pure-Go version (for debugging, and to test the fallbacks).
const NoSIMDEnv = "EDITKIT_NOSIMD"

// level is the level the exported functions use: fixed at start-up from
// the CPU's features and NoSIMDEnv, never changed afterwards.
var level = active(detected(), os.Getenv(NoSIMDEnv))

// Detected returns the widest level the CPU and operating system support,
// whatever NoSIMDEnv says.
func Detected() Level { return detected() }

// Active returns the level the kernels use: Detected, or Generic when
// NoSIMDEnv is 1.
func Active() Level { return level }

func detected() Level {
	if runtime.GOARCH != "amd64" {
		return Generic
	}
	x := cpu.X86
	if !x.HasAVX2 || !x.HasFMA || !x.HasF16C || !x.HasOSXSAVE {
		return Generic
	}
	if x.HasAVX512F && x.HasAVX512BW && x.HasAVX512DQ && x.HasAVX512VL {
		return AVX512
	}
	return AVX2
}

func active(d Level, env string) Level {
	if env == "1" {
		return Generic
	}
	return d
}
