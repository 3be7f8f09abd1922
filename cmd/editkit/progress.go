package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progress shows the streaming engine's progress on stderr. On a terminal
// it is a single self-redrawing, throttled bar; elsewhere (logs, CI) it
// prints a plain line when a pass crosses a quarter, at most every
// logEvery, so logs stay readable.
// A merge may stream over its inputs several times: when the byte count
// starts again from zero a new pass begins.
type progress struct {
	w     io.Writer
	desc  string
	tty   bool
	bar   *progressbar.ProgressBar
	last  int64
	pass  int
	step  int64     // quarters printed in this pass (non-terminal)
	shown time.Time // when the last line was printed (non-terminal)
}

// logEvery spaces the lines printed when stderr is not a terminal: quick
// runs print none, long ones one per quarter of a pass at most.
const logEvery = 5 * time.Second

// newProgress returns the progress display for desc, or nil with --quiet.
func (a *app) newProgress(desc string) *progress {
	if a.quiet {
		return nil
	}
	tty := false
	if f, ok := a.stderr.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	return &progress{w: a.stderr, desc: desc, tty: tty, pass: 1, shown: time.Now()}
}

// callback is the tasks.StreamOptions.Progress function (nil when quiet).
func (p *progress) callback() func(done, total int64) {
	if p == nil {
		return nil
	}
	return p.update
}

func (p *progress) label() string {
	if p.pass > 1 {
		return fmt.Sprintf("%s (pass %d)", p.desc, p.pass)
	}
	return p.desc
}

func (p *progress) update(done, total int64) {
	if done < p.last {
		p.pass++
		p.step = 0
		if p.bar != nil {
			p.bar.Finish()
			p.bar = nil
		}
	}
	p.last = done
	if !p.tty {
		if total <= 0 {
			return
		}
		if q := done * 4 / total; q > p.step && time.Since(p.shown) >= logEvery {
			p.step, p.shown = q, time.Now()
			fmt.Fprintf(p.w, "editkit: %s: %d%% of %s\n", p.label(), q*25, humanBytes(total))
		}
		return
	}
	if p.bar == nil {
		p.bar = progressbar.NewOptions64(total,
			progressbar.OptionSetWriter(p.w),
			progressbar.OptionSetDescription(p.label()),
			progressbar.OptionShowBytes(true),
			progressbar.OptionSetWidth(30),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionClearOnFinish(),
		)
	}
	p.bar.Set64(done)
}

// done clears the bar.
func (p *progress) done() {
	if p != nil && p.bar != nil {
		p.bar.Finish()
		p.bar = nil
	}
}
