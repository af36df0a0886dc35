package bench

import (
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"
)

// WriteTable prints the report as a table a person reads in ten seconds:
// one row per case, the usysv and kernel numbers, the speed-up, then the
// other transports and the tail latencies, and the errors under it.
func (r *Report) WriteTable(w io.Writer) error {
	var b strings.Builder
	h := r.Host
	fmt.Fprintf(&b, "usysv bench (%s): %s/%s, %d CPUs", r.Mode, h.OS, h.Arch, h.CPUs)
	if h.CPU != "" {
		fmt.Fprintf(&b, " (%s)", h.CPU)
	}
	fmt.Fprintf(&b, ", Linux %s, %s, load %.1f, %s\n\n", h.Kernel, h.Go, h.LoadAvg, (time.Duration(r.Seconds*10) * time.Second / 10).String())

	rows := [][]string{{"case", Usysv, Kernel, "speed-up", "unix socket", "pipe", "p99 usysv / kernel"}}
	var notes []string
	unsteady := false
	for _, res := range r.Results {
		cell := func(impl string) string {
			ir := res.Impls[impl]
			switch {
			case ir == nil:
				return "-"
			case ir.Error != "":
				notes = append(notes, fmt.Sprintf("%s on %s: %s", res.Case, impl, ir.Error))
				return "error"
			case ir.P50NS != nil:
				return fmtNS(*ir.P50NS)
			case ir.MsgsPerS != nil:
				return fmtRate(*ir.MsgsPerS)
			case ir.CPUUsPerS != nil:
				return fmtCPU(*ir.CPUUsPerS)
			}
			return "?"
		}
		sp := oneSided(res.Kind, res.Impls[Usysv], res.Impls[Kernel])
		if res.Speedup != nil {
			sp = fmtSpeedup(*res.Speedup)
			if !Steady(res.Kind, res.Impls[Usysv], res.Impls[Kernel]) {
				sp = "~" + sp
				unsteady = true
			}
		}
		tail := ""
		if res.Kind == Latency {
			tail = fmtP99(res.Impls[Usysv]) + " / " + fmtP99(res.Impls[Kernel])
		}
		rows = append(rows, []string{res.Title, cell(Usysv), cell(Kernel), sp, cell(Unix), cell(Pipe), tail})
	}
	// Drop the unix and pipe columns when no row has them.
	for col := 5; col >= 4; col-- {
		empty := true
		for _, row := range rows[1:] {
			empty = empty && row[col] == "-"
		}
		if empty {
			for i := range rows {
				rows[i] = append(rows[i][:col], rows[i][col+1:]...)
			}
		}
	}
	width := make([]int, len(rows[0]))
	for _, row := range rows {
		for i, c := range row {
			width[i] = max(width[i], utf8.RuneCountInString(c))
		}
	}
	for _, row := range rows {
		var line strings.Builder
		for i, c := range row {
			pad := strings.Repeat(" ", width[i]-utf8.RuneCountInString(c))
			if i == 0 {
				line.WriteString(c + pad)
			} else {
				line.WriteString("   " + pad + c)
			}
		}
		b.WriteString(strings.TrimRight(line.String(), " ") + "\n")
	}
	b.WriteString("\nlatency rows: p50 per operation or round trip (lower is better); stream rows: messages/s (higher is better);\n")
	b.WriteString("p99: of samples; operations of tens of ns are timed in groups (ops_per_sample in -json), which smooths their tail.\n")
	b.WriteString("blocked rows: CPU time the blocked process used per second, µs/s (lower is better).\n")
	b.WriteString("speed-up: usysv against the kernel's own SysV IPC, measured in this run; above 1× usysv is faster.\n")
	if unsteady {
		b.WriteString("~: the rounds disagreed on this ratio by more than 1.5× (a busy machine); see per_round in -json.\n")
	}
	for _, n := range notes {
		b.WriteString("error: " + n + "\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func fmtP99(r *ImplResult) string {
	if r == nil || r.P99NS == nil {
		return "-"
	}
	return fmtNS(*r.P99NS)
}

// fmtNS writes a duration in ns with three significant digits.
func fmtNS(ns float64) string {
	switch {
	case ns < 10:
		return fmt.Sprintf("%.1f ns", ns)
	case ns < 1e3:
		return fmt.Sprintf("%.0f ns", ns)
	case ns < 1e6:
		return sig3(ns/1e3) + " µs"
	case ns < 1e9:
		return sig3(ns/1e6) + " ms"
	}
	return sig3(ns/1e9) + " s"
}

// fmtRate writes a rate in messages per second with three significant digits.
func fmtRate(v float64) string {
	switch {
	case v >= 1e6:
		return sig3(v/1e6) + " M/s"
	case v >= 1e3:
		return sig3(v/1e3) + " k/s"
	}
	return sig3(v) + " /s"
}

// oneSided is the speed-up cell of a row with no ratio: for an idle row,
// "same" when both measured 0, "∞" when only usysv did (the kernel's
// waiter used CPU, usysv's none), "worse" when only the kernel did; else
// "-" (a number missing, or a latency or rate of 0).
func oneSided(kind Kind, u, k *ImplResult) string {
	uv, ok1 := u.Value()
	kv, ok2 := k.Value()
	switch {
	case kind != Idle || !ok1 || !ok2:
		return "-"
	case uv == 0 && kv == 0:
		return "same"
	case uv == 0:
		return "∞"
	case kv == 0:
		return "worse"
	}
	return "-"
}

// fmtCPU writes CPU time per second in µs/s with three significant digits.
func fmtCPU(v float64) string {
	if v == 0 {
		return "0 µs/s"
	}
	if v >= 1e3 {
		return sig3(v/1e3) + " ms/s"
	}
	return sig3(v) + " µs/s"
}

func fmtSpeedup(s float64) string {
	if s >= 10 {
		return fmt.Sprintf("%.0f×", s)
	}
	return fmt.Sprintf("%.2g×", s)
}

func sig3(v float64) string {
	switch {
	case v < 10:
		return fmt.Sprintf("%.2f", v)
	case v < 100:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.0f", v)
}
