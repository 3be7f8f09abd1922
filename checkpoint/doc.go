// Package checkpoint reads and writes safetensors checkpoints lazily, one
// tensor at a time.
//
// A checkpoint is a single .safetensors file, a folder holding
// model.safetensors, or a sharded folder with model.safetensors.index.json.
// All three open through [Open] and look the same afterwards: a list of
// tensors (name, dtype, shape) whose data is read on demand with ReadAt.
//
// Tensors are read with ReadAt rather than through a memory map: mapped pages
// stay resident and count against the process's memory as a merge walks
// through a model, while ReadAt into a reused buffer keeps memory bounded by
// the few tensors in flight. The dtype table is the one of
// github.com/nlpodyssey/safetensors; the header parser is our own because
// validation has to name the file and tensor at fault, catch duplicate names
// (lost by decoding into a map) and never allocate more than the file holds.
//
// [Create] writes a checkpoint tensor by tensor, sharded by bytes, into a
// temporary folder beside the target that is renamed into place on Commit,
// so a failed run leaves nothing behind. [CreateFile] and [WriteFile] do
// the same for single files (tables, records, plots, profiles).
//
// [Outputs] is the one guard of everything a run writes: checked before the
// work, it refuses an output that is an input, lies inside one or holds one,
// two outputs that nest, and an existing output without Force, naming the
// output by the flag that gave it. Create, CreateFile and WriteFile repeat
// the input and existence checks when they start.
//
// Every temporary is registered for the life of the process and holds an
// exclusive flock: [RemoveTemporaries] (what editkit's CLI calls on SIGINT,
// SIGTERM and SIGHUP) removes them all and makes later writes fail, and
// [RemoveStale] removes those of a killed run (unlocked) while leaving those
// of a run still writing. The registry is package state on purpose: signals
// are per process, and one handler must reach every writer.
//
// [Layout] maps tensor names to residual-block depth for the architecture
// families editkit knows (HF ViT and CLIP, OpenAI/open_clip CLIP, LLaMA-style
// and GPT-2), which LiNeS and inspection use.
package checkpoint
