package train

import (
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"

	"github.com/editkit/editkit/datasets"
	"github.com/editkit/editkit/models/encoder"
	"github.com/editkit/editkit/models/vit"
	"math/rand/v2"
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

func TestTmpTrainBench(t *testing.T) {
	c := vit.DefaultConfig()
	c.HiddenSize, c.NumHiddenLayers, c.NumAttentionHeads, c.IntermediateSize = 192, 6, 3, 768
	c.ImageSize, c.PatchSize = 64, 16
	m, _ := vit.NewRandom(c, 1)
	enc, _ := encoder.NewViT(c, m.Weights)
	n := 64 * 4
	r := rand.New(rand.NewPCG(1, 2))
	pix := make([]uint8, n*64*64*3)
	for i := range pix {
		pix[i] = uint8(r.IntN(256))
	}
	labels := make([]int, n)
	for i := range labels {
		labels[i] = i % 10
	}
	ds, _ := datasets.FromPixels("rand", []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}, 64, 64, 3, pix, labels)
	head := randomHead(10, 192, true, 1)
	for _, lin := range []bool{false, true, false, true} {
		if os.Getenv("ONLY") == "lin" && !lin {
			continue
		}
		o := Recipe()
		o.BatchSize, o.Steps, o.Linearized = 64, 4, lin
		runtime.GC()
		debug.FreeOSMemory()
		os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
		res, err := FinetuneIgnoringClassNames(enc, head, ds, o)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("lin=%v %.3f s/step peak %d MiB", lin, 1/res.StepsPerSec, hwm()>>20)
	}
}
