//go:build cgo && !noxla && ((linux && amd64) || darwin)

package models

// The XLA backend (PJRT plugins, CPU or GPU) is compiled in where cgo is
// available; it runs only when GOMLX_BACKEND selects it. Build with the tag
// noxla to leave it out.
import _ "github.com/gomlx/gomlx/backends/xla"
