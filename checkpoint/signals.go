package checkpoint

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"

	"golang.org/x/term"
)

// exitSignals are the signals that stop a run: its partial outputs are
// removed and the process exits with the shell's status for the signal,
// 128 + its number (130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP).
var exitSignals = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP}

// SignalExit is the state of the handler [ExitOnSignal] installs.
type SignalExit struct {
	caught atomic.Bool
}

// ExitOnSignal stops the process on the first of exitSignals: it removes
// every partial output ([RemoveTemporaries], which also makes the work in
// flight fail at its next file operation), says in one line on stderr,
// prefixed with prog, what it removed, and exits. Programs that write
// checkpoints (the CLI, the examples) install it first thing in main.
func ExitOnSignal(stderr io.Writer, prog string) *SignalExit {
	s := &SignalExit{}
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, exitSignals...)
	go func() {
		sig := <-ch
		s.caught.Store(true)
		removed := RemoveTemporaries()
		if f, ok := stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			fmt.Fprintln(stderr) // end a progress bar's line
		}
		fmt.Fprintln(stderr, interruptedLine(prog, sig, removed))
		status := 1
		if n, ok := sig.(syscall.Signal); ok {
			status = 128 + int(n)
		}
		os.Exit(status)
	}()
	return s
}

// Exit exits with status, unless a signal was caught: then the handler
// exits, with the signal's status, once its cleanup is done.
func (s *SignalExit) Exit(status int) {
	if s.caught.Load() {
		select {}
	}
	os.Exit(status)
}

// interruptedLine is the one line printed on a signal.
func interruptedLine(prog string, sig os.Signal, removed []Removed) string {
	name := signalName(sig)
	if len(removed) == 0 {
		return fmt.Sprintf("%s: interrupted by %s; no partial output to remove", prog, name)
	}
	parts := make([]string, len(removed))
	for i, r := range removed {
		parts[i] = r.String()
	}
	what := "the partial output"
	if len(removed) > 1 {
		what = fmt.Sprintf("%d partial outputs:", len(removed))
	}
	return fmt.Sprintf("%s: interrupted by %s; removed %s %s", prog, name, what, strings.Join(parts, ", "))
}

func signalName(sig os.Signal) string {
	switch sig {
	case syscall.SIGINT:
		return "SIGINT"
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGHUP:
		return "SIGHUP"
	}
	return sig.String()
}

// Caught reports whether a signal stopped the process, which is then
// removing its partial outputs and about to exit.
func (s *SignalExit) Caught() bool { return s.caught.Load() }
