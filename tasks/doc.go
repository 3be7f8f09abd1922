// Package tasks builds task vectors and streams them through computations.
//
// A task vector is τ = θ_ft − θ_base over the floating-point tensors of a
// checkpoint (Ilharco et al., "Editing Models with Task Arithmetic", ICLR
// 2023; integer and bool tensors are not entries, as in the reference code,
// and pass through from the base). It is saved as a safetensors checkpoint
// whose metadata marks it as a task vector and records its base.
//
// A [Set] is a base checkpoint with N members, each a fine-tuned checkpoint
// (τ computed on the fly) or a stored task vector. Its streaming engine
// ([Set.Scan], [Set.WriteModel], [Set.WriteVector]) walks the base's tensors
// in chunks of at most a few million elements, so memory stays bounded by
// (N+2) chunks per worker whatever the model's size. Every method in merge is
// written as a function over these chunks. Reductions over chunks are handed
// back per chunk sequence number so that sums are taken in a fixed order and
// results are byte-identical from run to run, whatever the scheduling.
package tasks
