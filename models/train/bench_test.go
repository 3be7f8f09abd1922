package train

import (
	"testing"

	"github.com/editkit/editkit/models"
	"github.com/editkit/editkit/models/encoder"
	"github.com/editkit/editkit/models/vit"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// BenchmarkFinetuneStep times one fine-tuning step (forward, backward,
// clipping, AdamW) of small ViTs on random batches, on models.Backend()
// (GOMLX_BACKEND selects it). It reports steps/s and images/s.
func BenchmarkFinetuneStep(b *testing.B) {
	for _, s := range []struct {
		name                                       string
		hidden, layers, heads, mlp, img, patch, bs int
	}{
		{"vit-w128-L4-32px-p4-b32", 128, 4, 4, 512, 32, 4, 32},
		{"vit-w64-L4-32px-p8-b128", 64, 4, 2, 256, 32, 8, 128},
	} {
		b.Run(s.name, func(b *testing.B) {
			c := vit.DefaultConfig()
			c.HiddenSize, c.NumHiddenLayers, c.NumAttentionHeads, c.IntermediateSize = s.hidden, s.layers, s.heads, s.mlp
			c.ImageSize, c.PatchSize = s.img, s.patch
			m, err := vit.NewRandom(c, 1)
			if err != nil {
				b.Fatal(err)
			}
			enc, err := encoder.NewViT(c, m.Weights)
			if err != nil {
				b.Fatal(err)
			}
			head := randomHead(10, enc.Dim, true, 1)
			params := make([]param, len(enc.Specs))
			for i, sp := range enc.Specs {
				params[i] = param{TensorSpec: sp, decay: true}
			}
			loss := func(p models.Params, in []*graph.Node) (*graph.Node, *graph.Node) {
				logits := applyHead(head, enc.Forward(p, in[0]))
				return crossEntropy(logits, in[1]), accuracy(logits, in[1])
			}
			e, err := newEngine(params, enc.Weights, loss, adamW{beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1, clipNorm: 1}, dtypes.Float32)
			if err != nil {
				b.Fatal(err)
			}
			defer e.Close()
			px := randomPixels(s.bs, s.img, 1)
			labels := make([]int32, s.bs)
			for i := range labels {
				labels[i] = int32(i % 10)
			}
			lt := tensors.FromFlatDataAndDimensions(labels, s.bs)
			if _, err := e.Step(1e-5, px, lt); err != nil { // compile
				b.Fatal(err)
			}
			b.ResetTimer()
			for range b.N {
				if _, err := e.Step(1e-5, px, lt); err != nil {
					b.Fatal(err)
				}
			}
			sec := b.Elapsed().Seconds() / float64(b.N)
			b.ReportMetric(1/sec, "steps/s")
			b.ReportMetric(float64(s.bs)/sec, "images/s")
		})
	}
}
