package merge

import (
	"encoding/json"
	"fmt"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/tasks"
)

// writeMasks saves each task's TALL mask and the consensus mask, bit-packed
// (most significant bit first, like numpy.packbits in the tall_masks
// reference) as U8 tensors "mask.<t>.<name>" and "consensus.<name>" in one
// safetensors file. It runs one ordered pass and holds the packed masks of
// one tensor at a time.
func (p *plan) writeMasks(so tasks.StreamOptions, force bool) error {
	floats := p.set.Floats()
	var specs []checkpoint.TensorSpec
	for _, t := range floats {
		shape := []int64{(t.NumElements() + 7) / 8}
		for i := range p.n {
			specs = append(specs, checkpoint.TensorSpec{Name: fmt.Sprintf("mask.%d.%s", i, t.Name), DType: checkpoint.U8, Shape: shape})
		}
		specs = append(specs, checkpoint.TensorSpec{Name: "consensus." + t.Name, DType: checkpoint.U8, Shape: shape})
	}
	tasksJSON, _ := json.Marshal(p.set.Inputs()[1:])
	lambdas, _ := json.Marshal(p.cfg.TallLambda)
	meta := map[string]string{
		tasks.KindKey:     "masks",
		"bit_order":       "big",
		"tasks":           string(tasksJSON),
		"tall_lambda":     string(lambdas),
		"k":               fmt.Sprint(*p.cfg.K),
		"consensus_base":  p.cfg.ConsensusBase,
		tasks.BaseKey:     p.set.Base.Path,
		tasks.BaseSizeKey: fmt.Sprint(p.set.Base.Size()),
	}
	w, err := checkpoint.Create(p.cfg.MasksOut, specs, checkpoint.WriteOptions{Metadata: meta, Force: force, Inputs: p.set.Inputs()})
	if err != nil {
		return fmt.Errorf("--save-masks: %w", err)
	}
	defer w.Abort()
	packed := make([][]byte, p.n+1)
	so.Workers = 1 // chunks must arrive in order
	so.Whole = p.whole
	err = p.set.Scan(so, func(worker int, c *tasks.Chunk) error {
		p.prepare(c)
		sc := p.scratchFor(worker, len(c.Base))
		if err := p.delta(worker, c, sc.delta); err != nil {
			return err
		}
		if c.Start == 0 {
			for i := range packed {
				packed[i] = packed[i][:0]
			}
		}
		// delta holds the consensus-masked τ_MTL; the masks were left in
		// scratch by consensus.
		masks := p.scratch[worker].masks
		for i, m := range masks {
			packed[i] = packBits(packed[i], m)
		}
		cons := sc.keep
		for k := range cons {
			count := 0
			for _, m := range masks {
				if m[k] {
					count++
				}
			}
			cons[k] = count >= *p.cfg.K
		}
		packed[p.n] = packBits(packed[p.n], cons)
		if c.Start+int64(len(c.Base)) < c.Tensor.NumElements() {
			return nil
		}
		for i := range p.n {
			if err := w.Write(fmt.Sprintf("mask.%d.%s", i, c.Tensor.Name), packed[i]); err != nil {
				return err
			}
		}
		return w.Write("consensus."+c.Tensor.Name, packed[p.n])
	})
	if err != nil {
		return err
	}
	return w.Commit()
}

// packBits appends bits packed eight to a byte, first bit in the most
// significant position; a final partial byte is padded with zeros. Chunks
// hold multiples of 8 elements except at a tensor's end, so appending chunk
// by chunk packs the whole tensor.
func packBits(dst []byte, bits []bool) []byte {
	for i := 0; i < len(bits); i += 8 {
		var b byte
		for j := 0; j < 8 && i+j < len(bits); j++ {
			if bits[i+j] {
				b |= 0x80 >> j
			}
		}
		dst = append(dst, b)
	}
	return dst
}
