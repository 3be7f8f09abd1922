package models

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/gomlx/gomlx/backends"
	_ "github.com/gomlx/gomlx/backends/simplego" // the pure-Go backend, always compiled in
)

// BackendEnv is the environment variable that selects the backend, as GoMLX
// reads it: "<name>[:<config>]", e.g. "xla:cuda", "xla:/abs/path/pjrt_c_api_cpu_plugin.so"
// or "go:parallelism=2".
const BackendEnv = backends.ConfigEnvVar

// DefaultBackend is the backend used when BackendEnv is unset: GoMLX's pure-Go
// backend with its ops run one after the other. simplego's worker pool can
// deadlock when ops run in parallel (all workers blocked in
// workersPool.WaitToStart from execDotGeneralSmall); each op still uses the
// pool for its own work.
const DefaultBackend = "go:ops_sequential"

var (
	backendOnce sync.Once
	backend     backends.Backend
	backendErr  error
)

// Backend returns the process-wide backend, created on first use: the one
// BackendEnv names, else DefaultBackend. When the named backend cannot start
// (no PJRT plugin for "xla", a plugin that fails to load, an unknown name) it
// says so on stderr and falls back to DefaultBackend. It panics only when
// even the pure-Go backend cannot start.
func Backend() backends.Backend {
	backendOnce.Do(func() {
		config, _ := os.LookupEnv(BackendEnv)
		backend, backendErr = NewBackend(config, os.Stderr)
	})
	if backendErr != nil {
		panic(backendErr)
	}
	return backend
}

// NewBackend creates a backend from config ("" means DefaultBackend). When
// config names a backend that cannot start, it writes why to warn and returns
// DefaultBackend instead.
func NewBackend(config string, warn io.Writer) (backends.Backend, error) {
	config = strings.TrimSpace(config)
	if config == "" {
		config = DefaultBackend
	}
	exactFloat32(config)
	b, err := tryBackend(config)
	if err == nil {
		return b, nil
	}
	if config == DefaultBackend {
		return nil, fmt.Errorf("starting the GoMLX backend %q: %w", config, err)
	}
	if warn != nil {
		fmt.Fprintf(warn, "editkit: the GoMLX backend %q could not start: %v\n"+
			"editkit: falling back to the pure-Go backend %q (slower; for XLA set %s=xla:<plugin name or absolute path of a PJRT plugin .so>)\n",
			config, firstLine(err.Error()), DefaultBackend, BackendEnv)
	}
	b, err2 := tryBackend(DefaultBackend)
	if err2 != nil {
		return nil, fmt.Errorf("starting the GoMLX backend %q: %w; the fallback %q failed too: %w", config, err, DefaultBackend, err2)
	}
	return b, nil
}

// tryBackend creates a backend, turning GoMLX's panics (an unknown backend
// name panics rather than returning an error) into errors.
func tryBackend(config string) (b backends.Backend, err error) {
	defer func() {
		if r := recover(); r != nil {
			b = nil
			if e, ok := r.(error); ok {
				err = e
			} else {
				err = fmt.Errorf("%v", r)
			}
		}
	}()
	return backends.NewWithConfig(config)
}

// exactFloat32 makes XLA compute float32 matrix products in float32 on
// NVIDIA GPUs, as PyTorch does by default, unless the config asks for TF32
// (GoMLX's "tf32" plugin option, e.g. "xla:cuda,tf32"). By default XLA's GPU
// backend runs them through TF32 (10-bit mantissas): measured on an H200,
// the reference cases then differ from PyTorch by up to 7e-3 instead of
// 5e-6. It sets, when not set already, NVIDIA_TF32_OVERRIDE=0 (cuBLAS) and
// --xla_gpu_enable_triton_gemm=false in XLA_FLAGS (XLA's own Triton GEMMs
// ignore the former). Both are read when the plugin starts.
func exactFloat32(config string) {
	name, opts, _ := strings.Cut(config, ":")
	switch name {
	case "xla", "stablehlo", "hlo", "shlo":
	default:
		return
	}
	if slices.Contains(strings.Split(opts, ","), "tf32") {
		return
	}
	if _, ok := os.LookupEnv("NVIDIA_TF32_OVERRIDE"); !ok {
		os.Setenv("NVIDIA_TF32_OVERRIDE", "0")
	}
	if flags := os.Getenv("XLA_FLAGS"); !strings.Contains(flags, "xla_gpu_enable_triton_gemm") {
		os.Setenv("XLA_FLAGS", strings.TrimSpace(flags+" --xla_gpu_enable_triton_gemm=false"))
	}
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}
