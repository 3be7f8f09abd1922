package train

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/linearize"
	"github.com/editkit/editkit/models"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// WriteOptions configure WriteFinetuned.
type WriteOptions struct {
	// DType, when set (float32, bfloat16, float16, float64), is the dtype of
	// every float tensor of the output; by default each tensor keeps the
	// input's dtype.
	DType string
	// ShardSize is the largest shard of a folder output
	// (checkpoint.DefaultShardSize when 0).
	ShardSize int64
	// Force replaces an existing output.
	Force bool
	// Metadata is added to the input's __metadata__.
	Metadata map[string]string
	// SideFiles are added to a folder output (name → content), before the
	// input's own side files, which do not replace them.
	SideFiles map[string][]byte
	// Saturate and Saturated are checkpoint.WriteOptions': values beyond
	// the range of DType are saturated (and counted) instead of failing.
	Saturate  bool
	Saturated *atomic.Int64
}

// WriteFinetuned writes a copy of the checkpoint in with the trained
// tensors replaced: the same tensor names, shapes and (unless o.DType says
// otherwise) dtypes as in, in its order; every tensor not in trained (a CLIP
// text tower, logit_scale, a ViT's classifier and pooler, integer buffers)
// byte for byte as in the input. A trained tensor may differ from the
// stored shape by size-1 axes (as models.ReadWeights allows). out is a
// folder or a .safetensors file, and appears only once complete. A folder
// gets the side files of a folder input (config.json, tokenizer files, ...),
// or for a .safetensors input the config files beside it (config.json,
// open_clip_config.json, preprocessor_config.json); a .safetensors output
// carries none. So `editkit taskvector --base in --finetuned out` works as
// is.
func WriteFinetuned(in, out string, trained models.Weights, o WriteOptions) error {
	ck, err := checkpoint.Open(in)
	if err != nil {
		return err
	}
	defer ck.Close()
	var conv checkpoint.DType
	if o.DType != "" {
		if conv, err = checkpoint.ParseFloatDType(o.DType); err != nil {
			return err
		}
	}
	for name, t := range trained {
		info, ok := ck.Tensor(name)
		switch {
		case !ok:
			return fmt.Errorf("writing %s: trained tensor %q is not in %s", out, name, in)
		case !checkpoint.IsFloat(info.DType):
			return fmt.Errorf("writing %s: trained tensor %q is %s in %s, not a float type", out, name, info.DType, in)
		case int64(t.Shape().Size()) != info.NumElements():
			return fmt.Errorf("writing %s: trained tensor %q has shape %v, %s has %v", out, name, t.Shape().Dimensions, in, info.Shape)
		case t.DType() != dtypes.Float32:
			return fmt.Errorf("writing %s: trained tensor %q is %s, want float32", out, name, t.DType())
		}
	}
	infos := ck.Tensors()
	specs := make([]checkpoint.TensorSpec, len(infos))
	for i, t := range infos {
		specs[i] = checkpoint.TensorSpec{Name: t.Name, DType: t.DType, Shape: slices.Clone(t.Shape)}
		if o.DType != "" && checkpoint.IsFloat(t.DType) {
			specs[i].DType = conv
		}
	}
	meta := map[string]string{}
	for k, v := range ck.Metadata {
		// A fine-tune of a linearized checkpoint is linearized only when
		// o.Metadata says so (around which base, then).
		if k != "format" && !strings.HasPrefix(k, linearize.MetaLinearized) {
			meta[k] = v
		}
	}
	for k, v := range o.Metadata {
		meta[k] = v
	}
	w, err := checkpoint.Create(out, specs, checkpoint.WriteOptions{ShardSize: o.ShardSize, Metadata: meta, Force: o.Force, Inputs: []string{in},
		Saturate: o.Saturate, Saturated: o.Saturated})
	if err != nil {
		return err
	}
	defer w.Abort()
	var raw []byte
	var f32 []float32
	for i, info := range infos {
		if t, ok := trained[info.Name]; ok {
			err = w.WriteFloat32(info.Name, tensors.MustCopyFlatData[float32](t))
		} else if specs[i].DType != info.DType {
			f32, raw, err = ck.ReadFloat32(info.Name, raw, f32)
			if err == nil {
				err = w.WriteFloat32(info.Name, f32)
			}
		} else {
			raw, err = ck.ReadRaw(info.Name, raw)
			if err == nil {
				err = w.Write(info.Name, raw)
			}
		}
		if err != nil {
			return err
		}
	}
	for _, name := range slices.Sorted(maps.Keys(o.SideFiles)) {
		if err := w.AddFile(name, o.SideFiles[name]); err != nil {
			return err
		}
	}
	if err := w.CopySideFiles(ck); err != nil {
		return err
	}
	if err := copyConfigsBesideFile(w, ck, out); err != nil {
		return err
	}
	return w.Commit()
}

// configFiles are the files that describe a model stored as a lone
// .safetensors file (open_clip's layout: open_clip_model.safetensors with
// open_clip_config.json beside it).
var configFiles = []string{"config.json", "open_clip_config.json", "preprocessor_config.json"}

// copyConfigsBesideFile copies the configFiles beside an input that is a
// .safetensors file into a folder output (CopySideFiles copies the side
// files of folder inputs only).
func copyConfigsBesideFile(w *checkpoint.Writer, ck *checkpoint.Checkpoint, out string) error {
	if strings.HasSuffix(out, ".safetensors") {
		return nil
	}
	if st, err := os.Stat(ck.Path); err != nil || st.IsDir() {
		return nil
	}
	for _, name := range configFiles {
		data, err := os.ReadFile(filepath.Join(ck.Dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		if err := w.AddFile(name, data); err != nil {
			return err
		}
	}
	return nil
}
