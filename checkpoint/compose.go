package checkpoint

import (
	"fmt"
	"os"
)

// Part is one tensor of a composed checkpoint: tensor Tensor of From,
// exposed under the name Name.
type Part struct {
	Name   string
	From   *Checkpoint
	Tensor string
}

// Compose returns a checkpoint made of tensors of other open checkpoints,
// renamed, in the order given: a merge that stacks layer ranges of several
// models reads it like any checkpoint. It shares the files of the
// checkpoints it draws from, which must stay open while it is used; its
// Close closes nothing. path names it in messages; dir is the folder its
// side files (config.json, tokenizer) are taken from; metadata is its
// __metadata__.
func Compose(path, dir string, metadata map[string]string, parts []Part) (*Checkpoint, error) {
	c := &Checkpoint{Path: path, Dir: dir, Metadata: metadata, index: make(map[string]int, len(parts)), borrowed: true}
	fileIdx := map[*os.File]int{}
	for _, p := range parts {
		t, ok := p.From.Tensor(p.Tensor)
		if !ok {
			return nil, fmt.Errorf("%s: no tensor %q", p.From.Path, p.Tensor)
		}
		if _, dup := c.index[p.Name]; dup {
			return nil, fmt.Errorf("%s: tensor %q composed twice", path, p.Name)
		}
		f := p.From.file(t)
		if f == nil {
			return nil, fmt.Errorf("%s: checkpoint is closed", p.From.Path)
		}
		i, ok := fileIdx[f]
		if !ok {
			i = len(c.files)
			fileIdx[f] = i
			c.files = append(c.files, f)
			c.sizes = append(c.sizes, 0)
		}
		c.sizes[i] += t.Bytes // the bytes read from that file
		t.Name = p.Name
		c.index[p.Name] = len(c.tensors)
		c.tensors = append(c.tensors, t)
	}
	return c, nil
}
