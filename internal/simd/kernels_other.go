//go:build !amd64

package simd

// Without amd64 assembly, level is always Generic and these are never
// called; they let the dispatching code compile everywhere.

const noAssembly = "simd: no assembly on this architecture"

func gemm12x32AVX512(int, *float32, *float32, *float32, int, bool) { panic(noAssembly) }

func gemm6x16AVX2(int, *float32, *float32, *float32, int, bool) { panic(noAssembly) }

func packRows8AVX2(*float32, *float32, int, int, int) { panic(noAssembly) }

func erfAVX512(*float32, *float32, int) { panic(noAssembly) }

func erfAVX2(*float32, *float32, int) { panic(noAssembly) }

func expAVX512(*float32, *float32, int) { panic(noAssembly) }

func expAVX2(*float32, *float32, int) { panic(noAssembly) }

func addVV512(*float32, *float32, *float32, int) { panic(noAssembly) }

func subVV512(*float32, *float32, *float32, int) { panic(noAssembly) }

func mulVV512(*float32, *float32, *float32, int) { panic(noAssembly) }

func divVV512(*float32, *float32, *float32, int) { panic(noAssembly) }

func addVS512(*float32, *float32, float32, int) { panic(noAssembly) }

func subVS512(*float32, *float32, float32, int) { panic(noAssembly) }

func mulVS512(*float32, *float32, float32, int) { panic(noAssembly) }

func divVS512(*float32, *float32, float32, int) { panic(noAssembly) }

func subSV512(*float32, *float32, float32, int) { panic(noAssembly) }

func divSV512(*float32, *float32, float32, int) { panic(noAssembly) }

func addVV256(*float32, *float32, *float32, int) { panic(noAssembly) }

func subVV256(*float32, *float32, *float32, int) { panic(noAssembly) }

func mulVV256(*float32, *float32, *float32, int) { panic(noAssembly) }

func divVV256(*float32, *float32, *float32, int) { panic(noAssembly) }

func addVS256(*float32, *float32, float32, int) { panic(noAssembly) }

func subVS256(*float32, *float32, float32, int) { panic(noAssembly) }

func mulVS256(*float32, *float32, float32, int) { panic(noAssembly) }

func divVS256(*float32, *float32, float32, int) { panic(noAssembly) }

func subSV256(*float32, *float32, float32, int) { panic(noAssembly) }

func divSV256(*float32, *float32, float32, int) { panic(noAssembly) }

func decodeBF16AVX2(*float32, *uint16, int) bool { panic(noAssembly) }

func decodeBF16SubAVX2(*float32, *uint16, *float32, int) bool { panic(noAssembly) }

func encodeBF16AVX2(*uint16, *float32, int) { panic(noAssembly) }

func decodeF16AVX2(*float32, *uint16, int) bool { panic(noAssembly) }

func encodeF16AVX2(*uint16, *float32, int) { panic(noAssembly) }

func scaleAddAVX2(*float32, *float32, float32, int) { panic(noAssembly) }

func absAtLeastAVX2(*float32, int, uint32) int { panic(noAssembly) }

func trimBelowAVX2(*float32, uint32, int) { panic(noAssembly) }

func signCountAVX2(*float32, int) int64 { panic(noAssembly) }

func disjointMergeAVX2(*float32, *[]float32, int, int, int32, bool) { panic(noAssembly) }

func windowCountAVX2(*[]float32, int, int, *uint32, *uint32, *int32, *uint8) int64 { panic(noAssembly) }

func dropRandomAVX2(*float32, int, uint64, uint64, uint64, float32) { panic(noAssembly) }

func tallMaskAVX2(*bool, *float32, *float32, float32, int) { panic(noAssembly) }

func maxAVX2(*float32, int) (float32, bool) { panic(noAssembly) }

func weightedSumAVX2(*float32, *[]float32, int, *float32, int) { panic(noAssembly) }
