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
// The conventions follow the task-vectors reference code
// (mlfoundations/task_vectors, gortizji/tangent_task_arithmetic): normalized
// accuracy of task t is acc(model, t)/acc(fine-tuned_t, t); addition picks
// the coefficient with the best mean normalized validation accuracy;
// negation the lowest target accuracy that keeps the control task at 95% of
// the pre-trained model's; LiNeS's single-task search the best
// 2·target + control normalized accuracy.
package eval
