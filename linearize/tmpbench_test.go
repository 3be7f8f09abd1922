package linearize

import (
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/editkit/editkit/models"
	"github.com/editkit/editkit/models/encoder"
	"github.com/editkit/editkit/models/vit"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

func hwm() int64 {
	data, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func TestTmpBench(t *testing.T) {
	c := vit.DefaultConfig()
	c.HiddenSize, c.NumHiddenLayers, c.NumAttentionHeads, c.IntermediateSize = 192, 6, 3, 768
	c.ImageSize, c.PatchSize = 64, 16
	m, _ := vit.NewRandom(c, 1)
	enc, _ := encoder.NewViT(c, m.Weights)
	lin, _ := NewEncoder(enc)
	bs := 64
	r := rand.New(rand.NewPCG(1, 2))
	v := make([]float32, bs*64*64*3)
	for i := range v {
		v[i] = r.Float32()
	}
	px := tensors.FromFlatDataAndDimensions(v, bs, 64, 64, 3)
	theta := addScaled(enc.Weights, randomDirection(enc.Specs, enc.Weights, 0.1, 1), 1)
	run := func(name string, f func()) {
		f()
		runtime.GC(); debug.FreeOSMemory()
		os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
		before := hwm()
		st := time.Now()
		for range 3 {
			f()
		}
		t.Logf("%s: %.3fs/call, peak RSS %d MiB (start %d MiB)", name, time.Since(st).Seconds()/3, hwm()>>20, before>>20)
	}
	if os.Getenv("ONLY") != "lin" {
		run("plain", func() { enc.Encode(theta, px) })
	}
	run("lin", func() { lin.Encode(theta, px) })
	_ = models.Backend
}
