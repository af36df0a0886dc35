package bench

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"github.com/usysv/usysv/kernel"
	"github.com/usysv/usysv/shm"
)

// Command is `usysv bench`: it parses args, runs the suite with a progress
// line on stderr, and prints the table (or, with -json, the report) on
// stdout. spawn starts helper processes (the usysv binary's hidden helper
// verb). It returns the exit status: 0, 1 if any case failed on any
// implementation, 2 for bad usage, 130 when interrupted.
func Command(args []string, stdout, stderr io.Writer, spawn Spawner) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		quick    = fs.Bool("quick", false, "a ~20-second run instead of a few minutes")
		asJSON   = fs.Bool("json", false, "write the report as JSON (schema: -schema) instead of the table")
		schema   = fs.Bool("schema", false, "print the JSON Schema of the -json report and exit")
		cases    = fs.String("case", "", "comma-separated cases or groups to run (sem, msg/stream, ...); default all")
		implList = fs.String("impl", "", "comma-separated implementations (usysv,kernel,unix,pipe); default all")
		budget   = fs.Duration("budget", 0, "timed duration per case and implementation (default 2.5s, 300ms with -quick)")
		rounds   = fs.Int("rounds", 0, "timed runs per case and implementation (default 3, 2 with -quick)")
		socket   = fs.String("socket", "", "usysv registry socket to use (default: a private registry embedded in this process)")
		list     = fs.Bool("list", false, "list the cases and exit")
	)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: usysv bench [flags]\n\n"+
			"Measures usysv against the kernel's own SysV IPC (and, for messages, a unix\n"+
			"socket and a pipe) in one run and prints case, usysv, kernel, speed-up.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "usysv bench: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if *schema {
		_, _ = stdout.Write(Schema)
		return 0
	}
	o := Options{Quick: *quick, Budget: *budget, Rounds: *rounds, Spawn: spawn,
		Cases: splitList(*cases), Impls: splitList(*implList)}
	if err := o.Check(); err != nil {
		fmt.Fprintln(stderr, "usysv bench:", err)
		return 2
	}
	if *list {
		for _, c := range o.Selected() {
			fmt.Fprintf(stdout, "%-22s %-10s %-34s %s\n", c.Name, c.Kind, c.Title, strings.Join(c.Impls, ","))
		}
		return 0
	}
	if len(o.Selected()) == 0 {
		fmt.Fprintf(stderr, "usysv bench: no case matches -case %q -impl %q (cases: -list; built: %s)\n",
			*cases, *implList, strings.Join(Available(), ","))
		return 2
	}

	// USYSV_SOCKET is set back on return, for callers that go on (tests):
	// the run's own socket is gone by then. (A process-wide registry client
	// that the run's in-process cases started stays on that socket: run the
	// usysv cases in a process of their own, as the verb does.)
	if old, ok := os.LookupEnv("USYSV_SOCKET"); ok {
		defer os.Setenv("USYSV_SOCKET", old)
	} else {
		defer os.Unsetenv("USYSV_SOCKET")
	}
	// A private registry unless -socket names one (USYSV_SOCKET, which a
	// host may set for everyone, does not: the run's objects would count
	// against a shared registry's limits): helpers inherit the variable,
	// and everything the run makes lives in a namespace of its own, which
	// is swept at the end whatever happens.
	private := ""
	if *socket != "" {
		os.Setenv("USYSV_SOCKET", *socket)
	} else {
		dir, err := os.MkdirTemp("", "usysv-bench-")
		if err != nil {
			fmt.Fprintln(stderr, "usysv bench:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		private = filepath.Join(dir, "registry.sock")
		os.Setenv("USYSV_SOCKET", private)
	}
	sweep := func() {
		if private != "" {
			SweepNamespace(shm.Namespace(private))
		}
	}
	defer sweep()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, kernel.StopSignals()...) // SIGINT, SIGTERM, SIGHUP
	defer signal.Stop(sigs)
	stopped := make(chan struct{})
	defer close(stopped)
	go func() {
		select {
		case <-sigs:
		case <-stopped:
			return
		}
		fmt.Fprintln(stderr, "\nusysv bench: interrupted; stopping and removing what it created")
		cancel()
		// A run that does not stop (a hung operation) still gets its
		// objects removed.
		select {
		case <-sigs:
		case <-time.After(10 * time.Second):
		case <-stopped:
			return
		}
		_ = Cleanup()
		sweep()
		os.Exit(130)
	}()

	pl := newProgressLine(stderr)
	o.Progress = pl.update
	rep, err := Run(ctx, o)
	pl.done()
	if ctx.Err() != nil {
		return 130
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			fmt.Fprintln(stderr, "usysv bench:", err)
			return 1
		}
	} else if err := rep.WriteTable(stdout); err != nil {
		fmt.Fprintln(stderr, "usysv bench:", err)
		return 1
	}
	if err != nil {
		fmt.Fprintln(stderr, "usysv bench:", err)
		return 1
	}
	for _, res := range rep.Results {
		for _, ir := range res.Impls {
			if ir.Error != "" {
				return 1
			}
		}
	}
	return 0
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// SweepNamespace removes every live usysv segment of registry namespace ns
// (what a run in a private registry may have left after a crash of a
// helper or an interrupt).
func SweepNamespace(ns uint64) {
	segs, err := kernel.ShmList()
	if err != nil {
		return
	}
	for _, s := range segs {
		if !shm.Candidate(s.DS) {
			continue
		}
		p, _, err := shm.Peek(s.ID)
		if err == nil && p.Namespace == ns {
			_ = kernel.ShmctlRemove(s.ID)
		}
	}
}

// progressLine keeps one status line on a terminal, rewriting it in place;
// on anything else it writes a line per case.
type progressLine struct {
	w     io.Writer
	tty   bool
	start time.Time
	last  string // case of the last line written (not a tty)
	dirty bool
}

func newProgressLine(w io.Writer) *progressLine {
	p := &progressLine{w: w, start: time.Now()}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

func (p *progressLine) update(pr Progress) {
	el := time.Since(p.start).Truncate(time.Second)
	what := "calibrating"
	if pr.Round > 0 {
		what = fmt.Sprintf("round %d", pr.Round)
	}
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K[%3d/%d] %s  %-22s %-7s %s", pr.Step, pr.Steps, el, pr.Case, pr.Impl, what)
		p.dirty = true
		return
	}
	if pr.Case != p.last {
		p.last = pr.Case
		fmt.Fprintf(p.w, "[%3d/%d] %s  %s\n", pr.Step, pr.Steps, el, pr.Case)
	}
}

func (p *progressLine) done() {
	if p.tty && p.dirty {
		fmt.Fprint(p.w, "\r\033[K")
	}
}
