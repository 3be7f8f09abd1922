// Package memoir will hold MEMOIR (Wang et al., 2025: lifelong model editing
// with a residual memory at one MLP down-projection, written through sparse,
// input-dependent masks) and the baselines it is compared with (GRACE,
// fine-tuning), editing the knowledge of LLaMA-family models.
//
// For now it holds the data side: [EditRequest], one edit as every method
// takes it (prompt, new target, rephrasings for generalization, unrelated
// prompts for locality), and the readers of EasyEdit's JSON datasets —
// ZsRE (src, alt, answers, rephrase, loc, loc_ans, subject) and the
// CounterFact-style format (prompt, target_new, ground_truth,
// rephrase_prompt, locality_prompt, locality_ground_truth, subject) — as a
// JSON array or JSON Lines, the format detected per file ([LoadEdits],
// [ParseEdits]). Malformed files give a [*DataError] naming the file, the
// record, its line and the field at fault.
//
// testdata/tinystories_edits.json is an edit set for the llama2.c
// stories260K model (TinyStories): 120 CounterFact-style requests about the
// characters and objects of its stories (favorite toys, pets, foods,
// friends, places, ...), each with one or two rephrasings and one unrelated
// locality prompt. Targets are one to three tokens of the model's 512-token
// vocabulary (the tests check it with its tokenizer). ground_truth is the
// first word of the model's own greedy continuation of the prompt (its
// pre-edit answer), and no target starts with the token the model predicts
// there, so every edit changes its output. Locality answers are plausible
// continuations written by hand, to be replaced by the model's prediction
// when evaluating.
package memoir
