// Package eval measures image classifiers and chooses merge coefficients:
// top-1 accuracy per task, accuracy normalized by each task's fine-tuned
// model, averages, searches of a coefficient over the published grids on
// validation data, and renderings of one result as a markdown table, JSON
// and a PNG plot.
//
// A model enters as a Classifier, a function from a batch of preprocessed
// images to class scores, so eval knows nothing of how the scores are made
// (a zero-shot CLIP head, a linear probe, a merged checkpoint).
//
// # Coefficient searches
//
// SearchCoefficient evaluates a model at each coefficient c of a grid
// (Steps) and keeps the point an Objective prefers; SearchDirection does so
// along a merge direction, θ(c) = θ_0 + s(ℓ, c)·Δ (merge.Direction), formed
// in memory at each point and measured by a ModelEval, the evaluator given
// by the caller (an encoder with heads on validation data, a linearized
// model, an attack-success-rate measurement). The objectives:
//
//   - Addition: maximize (1/T) Σ_t acc_t(c) / ft_t, ft_t the fine-tuned
//     model's validation accuracy on task t;
//   - Negation: minimize acc_target(c) subject to acc_control(c) ≥ floor
//     (0.95 × the pre-trained model's), the first such c on ties;
//   - Tradeoff: maximize w·acc_target(c)/ft_target + (1/|C|) Σ_{c'∈C}
//     acc_c'(c)/pre_c' (LiNeS's single-task search, w = 2);
//   - LowestSubjectTo(a, b, floor): minimize metric a subject to metric
//     b ≥ floor, ties to the higher b (backdoor removal: a = attack success
//     rate, b = clean accuracy).
//
// Choose is the one coefficient search every caller runs (merge --search,
// the examples, backdoor removal, linearized evaluation): given a Goal
// (GoalAddition, GoalNegation, GoalTradeoff, GoalLowest), it measures what
// the goal is relative to (each task's fine-tuned accuracy, θ₀'s accuracy
// on the constrained or control metrics), builds the objective above and
// searches the direction. SearchMerge wraps it for a merge recipe: TALL
// masks first for consensus, the direction from one unit merge, the
// choice, then the merge written at the chosen value through the caller's
// writer and measured again, all recorded in a Record. The evaluator is
// the caller's, so a linearized model is searched the same way.
//
// A grid may extend past its last value by a step while its last point is
// still feasible (Steps.Step, Steps.Max), so a constrained search walks on
// until its floor is crossed. Record is the account of a search written
// beside the merge it chose: JSON, markdown (Record.Markdown) and a PNG
// plot (PlotSearch).
//
// # Intervals
//
// Differences of a few hundred test images are noise. Bootstrap computes
// 95% percentile-bootstrap intervals over the examples of each task
// (DefaultReplicates resamples, seeded, so the same outcomes give the same
// intervals): of a model's accuracy, and of the paired difference of two
// models' accuracies, resampling the same examples for both, which is far
// tighter than comparing two separate intervals. The mean over tasks
// resamples each task independently and averages, as the tables' average
// column does. A model trained with several seeds enters with one outcome
// vector per seed and is scored by the per-example mean over seeds, so its
// interval covers the test sampling at the seed-averaged model; the spread
// over seeds (Row.Spread) is reported beside it. Table.AddRuns and
// Table.Intervals put both into any table (merge --search records,
// eval --md, the examples); Table.MarkdownIntervals renders them.
//
// The conventions follow the task-vectors reference code
// (mlfoundations/task_vectors, gortizji/tangent_task_arithmetic): normalized
// accuracy of task t is acc(model, t)/acc(fine-tuned_t, t); addition picks
// the coefficient with the best mean normalized validation accuracy;
// negation the lowest target accuracy that keeps the control task at 95% of
// the pre-trained model's; LiNeS's single-task search the best
// 2·target + control normalized accuracy.
package eval
