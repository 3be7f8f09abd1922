package checkpoint

import (
	"testing"
)

func TestCompose(t *testing.T) {
	dir := t.TempDir()
	a := mustOpen(t, writeBytes(t, dir, "a.safetensors", buildFile(nil,
		rawTensor{"layers.0.w", "F32", []int64{2}, f32le(1, 2)},
		rawTensor{"layers.1.w", "F32", []int64{2}, f32le(3, 4)})))
	defer a.Close()
	b := mustOpen(t, writeBytes(t, dir, "b.safetensors", buildFile(nil,
		rawTensor{"layers.0.w", "F32", []int64{2}, f32le(5, 6)},
		rawTensor{"head", "BF16", []int64{1}, le16(0x3f80)})))
	defer b.Close()
	c, err := Compose("stacked", dir, map[string]string{"k": "v"}, []Part{
		{Name: "layers.0.w", From: a, Tensor: "layers.1.w"},
		{Name: "layers.1.w", From: b, Tensor: "layers.0.w"},
		{Name: "layers.2.w", From: a, Tensor: "layers.0.w"},
		{Name: "head", From: b, Tensor: "head"},
	})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, ti := range c.Tensors() {
		names = append(names, ti.Name)
	}
	if want := []string{"layers.0.w", "layers.1.w", "layers.2.w", "head"}; len(names) != 4 || names[0] != want[0] || names[3] != want[3] {
		t.Fatalf("tensors %v, want %v", names, want)
	}
	for name, want := range map[string][]float32{"layers.0.w": {3, 4}, "layers.1.w": {5, 6}, "layers.2.w": {1, 2}, "head": {1}} {
		got, _, err := c.ReadFloat32(name, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !sameBits(got, want) {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if c.Size() != 4*2*3+2 || c.Dir != dir || c.Metadata["k"] != "v" {
		t.Errorf("size %d, dir %q, metadata %v", c.Size(), c.Dir, c.Metadata)
	}
	// Closing the composition leaves its sources open.
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.ReadFloat32("layers.0.w", nil, nil); err != nil {
		t.Errorf("source closed with the composition: %v", err)
	}
	_, err = Compose("bad", dir, nil, []Part{{Name: "x", From: a, Tensor: "nope"}})
	wantErr(t, err, "a.safetensors", `"nope"`)
	_, err = Compose("bad", dir, nil, []Part{{Name: "x", From: a, Tensor: "layers.0.w"}, {Name: "x", From: b, Tensor: "head"}})
	wantErr(t, err, "bad", `"x" composed twice`)
}
