package linearize

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"slices"

	"github.com/editkit/editkit/checkpoint"
	"github.com/editkit/editkit/models"
)

// Metadata keys of a checkpoint fine-tuned in the tangent space (θ of
// f_lin): it is linearized, and around which base θ₀.
const (
	// MetaLinearized is "true" in a linearized fine-tune.
	MetaLinearized = "editkit.linearized"
	// MetaBase is the path of the base checkpoint, as given when training.
	MetaBase = "editkit.linearized.base"
	// MetaBaseDigest is Digest of the base's linearized tensors.
	MetaBaseDigest = "editkit.linearized.base_sha256"
)

// Digest is a content hash of weights: SHA-256 over the tensors that specs
// name, in name order, each as its name, its shape and its float32 values
// (little-endian). It identifies a linearization point θ₀ whatever the
// file's layout, sharding or storage dtype of the same values.
func Digest(specs []checkpoint.TensorSpec, w models.Weights) (string, error) {
	if err := w.Check(specs); err != nil {
		return "", err
	}
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.Name
	}
	slices.Sort(names)
	h := sha256.New()
	var buf []byte
	for _, name := range names {
		t := w[name]
		buf = append(buf[:0], name...)
		buf = append(buf, 0)
		for _, d := range t.Shape().Dimensions {
			buf = binary.LittleEndian.AppendUint64(buf, uint64(d))
		}
		h.Write(buf)
		vals := w.Float32(name)
		buf = slices.Grow(buf[:0], 4*len(vals))
		for _, v := range vals {
			buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(v))
		}
		h.Write(buf)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// BaseInfo is the base a linearized fine-tune records.
type BaseInfo struct {
	Path   string // as given when training
	Digest string // Digest of its linearized tensors
}

// Metadata returns the metadata that marks a checkpoint as θ of f_lin
// around the base at path whose weights are base.
func Metadata(path string, specs []checkpoint.TensorSpec, base models.Weights) (map[string]string, error) {
	d, err := Digest(specs, base)
	if err != nil {
		return nil, err
	}
	return BaseInfo{Path: path, Digest: d}.Metadata(), nil
}

// Metadata returns the metadata that marks a checkpoint as θ of f_lin
// around this base.
func (info BaseInfo) Metadata() map[string]string {
	return map[string]string{MetaLinearized: "true", MetaBase: info.Path, MetaBaseDigest: info.Digest}
}

// ReadMetadata returns the base recorded in a checkpoint's metadata; ok is
// false for a checkpoint that is not a linearized fine-tune. A checkpoint
// marked linearized without a base path and digest is an error.
func ReadMetadata(meta map[string]string) (info BaseInfo, ok bool, err error) {
	if meta[MetaLinearized] != "true" {
		return info, false, nil
	}
	info = BaseInfo{Path: meta[MetaBase], Digest: meta[MetaBaseDigest]}
	if info.Path == "" || info.Digest == "" {
		return info, true, fmt.Errorf("the checkpoint says it is linearized (%s) but does not record its base (%s, %s)", MetaLinearized, MetaBase, MetaBaseDigest)
	}
	return info, true, nil
}

// Verify checks that base, the weights of the base checkpoint at path, are
// the recorded base; the error says which base was expected.
func (info BaseInfo) Verify(path string, specs []checkpoint.TensorSpec, base models.Weights) error {
	d, err := Digest(specs, base)
	if err != nil {
		return err
	}
	if d != info.Digest {
		return fmt.Errorf("%s is not the base this checkpoint was fine-tuned around: expected %s (sha256 %s…), %s has sha256 %s…", path, info.Path, short(info.Digest), path, short(d))
	}
	return nil
}

func short(digest string) string { return digest[:min(12, len(digest))] }
