package checkpoint

import (
	"encoding/binary"
	"math"
	"unsafe"
)

// littleEndianHost is true on the hosts editkit targets (amd64, arm64); the
// byte view of a float32 slice is then already in safetensors order.
var littleEndianHost = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// float32Bytes views a float32 slice as bytes without copying.
func float32Bytes(f []float32) []byte {
	if len(f) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&f[0])), 4*len(f))
}

// fixEndianF32 turns float32 values read as raw little-endian bytes into
// native ones; a no-op on little-endian hosts.
func fixEndianF32(f []float32) {
	if littleEndianHost {
		return
	}
	b := float32Bytes(f)
	for i := range f {
		f[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
}
