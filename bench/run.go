package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// SchemaID names the version of the JSON report format (see doc.go).
const SchemaID = "usysv-bench/v1"

// Options say what Run measures and how long it takes.
type Options struct {
	// Quick runs about twenty seconds in all instead of a few minutes.
	Quick bool
	// Budget is the timed duration of each case on each implementation,
	// split over the rounds; zero means 2.5 s, or 0.3 s when Quick.
	Budget time.Duration
	// Rounds is how many times each case runs on each implementation,
	// alternating the order of the implementations; zero means 3, or 2
	// when Quick.
	Rounds int
	// Cases selects cases whose name equals or starts with one of these
	// ("sem", "msg/stream"); empty means all.
	Cases []string
	// Impls selects implementations; empty means all in this build.
	Impls []string
	// Spawn starts helper processes; without it cross-process cases fail.
	Spawn Spawner
	// Progress, if not nil, is called before each timed run.
	Progress func(Progress)
}

// Progress is where a Run is.
type Progress struct {
	Step, Steps int // runs done and in all (calibrations included)
	Case, Impl  string
	Round       int // 0 is the calibration run
}

// Report is the outcome of Run; its JSON form is described in doc.go.
type Report struct {
	Schema  string    `json:"schema"`
	Mode    string    `json:"mode"` // "quick" or "full"
	Started time.Time `json:"started"`
	Seconds float64   `json:"seconds"` // wall time of the whole run
	Host    Host      `json:"host"`
	Results []*Result `json:"results"`
}

// Host describes the machine and build the numbers come from.
type Host struct {
	OS        string `json:"os"`
	Arch      string `json:"arch"`
	CPUs      int    `json:"cpus"`
	CPU       string `json:"cpu"`    // model name from /proc/cpuinfo
	Kernel    string `json:"kernel"` // release
	Go        string `json:"go"`
	Registry  string `json:"registry"`  // socket of the usysv registry used
	Budget    string `json:"budget"`    // timed duration per case and implementation
	Rounds    int    `json:"rounds"`    // runs per case and implementation
	Available string `json:"available"` // implementations in the build
	// LoadAvg is the 1-minute load average when the run started: on a
	// machine busy with other work, absolute numbers (and spinning) suffer.
	LoadAvg float64 `json:"loadavg"`
}

// Result is one case on every implementation it ran on.
type Result struct {
	Case  string                 `json:"case"`
	Title string                 `json:"title"`
	Kind  Kind                   `json:"kind"`
	Unit  string                 `json:"unit"` // "ns" (latency), "msgs/s" (throughput) or "us/s" (idle)
	Impls map[string]*ImplResult `json:"impls"`
	// Speedup is how many times better usysv did than the kernel in this
	// run: kernel p50 / usysv p50 for latency, usysv rate / kernel rate
	// for throughput, kernel CPU / usysv CPU for idle. Null when either
	// side has no result (or, idle, used no measurable CPU).
	Speedup *float64 `json:"speedup"`
}

// ImplResult is one case on one implementation.
type ImplResult struct {
	P50NS        *float64  `json:"p50_ns,omitempty"`         // latency
	P99NS        *float64  `json:"p99_ns,omitempty"`         // latency
	Samples      int       `json:"samples,omitempty"`        // latency
	OpsPerSample int       `json:"ops_per_sample,omitempty"` // latency
	MsgsPerS     *float64  `json:"msgs_per_s,omitempty"`     // throughput
	CPUUsPerS    *float64  `json:"cpu_us_per_s,omitempty"`   // idle
	PerRound     []float64 `json:"per_round,omitempty"`      // the headline value of each round
	Ops          int64     `json:"ops"`                      // operations timed
	Seconds      float64   `json:"seconds"`                  // time they took
	Error        string    `json:"error,omitempty"`          // instead of numbers
}

// Steady reports whether the rounds of u and k agree on the speed-up:
// the largest and the smallest per-round ratio are within a factor of
// 1.5. A noisy machine shows up here first.
func Steady(kind Kind, u, k *ImplResult) bool {
	if u == nil || k == nil {
		return true
	}
	lo, hi := math.Inf(1), 0.0
	for i := range min(len(u.PerRound), len(k.PerRound)) {
		a, b := u.PerRound[i], k.PerRound[i]
		if a <= 0 || b <= 0 {
			continue
		}
		r := b / a
		if kind == Throughput {
			r = a / b
		}
		lo, hi = min(lo, r), max(hi, r)
	}
	return hi == 0 || hi <= 1.5*lo
}

// Value is the headline number: p50 in ns, or messages per second.
func (r *ImplResult) Value() (float64, bool) {
	switch {
	case r == nil || r.Error != "":
		return 0, false
	case r.P50NS != nil:
		return *r.P50NS, true
	case r.MsgsPerS != nil:
		return *r.MsgsPerS, true
	case r.CPUUsPerS != nil:
		return *r.CPUUsPerS, true
	}
	return 0, false
}

func (o Options) budget() time.Duration {
	switch {
	case o.Budget > 0:
		return o.Budget
	case o.Quick:
		return 300 * time.Millisecond
	}
	return 2500 * time.Millisecond
}

func (o Options) rounds() int {
	switch {
	case o.Rounds > 0:
		return o.Rounds
	case o.Quick:
		return 2
	}
	return 3
}

// Check reports what in o cannot be meant: a negative budget or count of
// rounds, a -case entry that names no case or group, an -impl entry that
// names no implementation built in. (Selected alone would drop them
// without a word: a typo in -impl kernal,usysv would measure usysv alone.)
func (o Options) Check() error {
	if o.Budget < 0 {
		return fmt.Errorf("budget %v: must not be negative", o.Budget)
	}
	if o.Rounds < 0 {
		return fmt.Errorf("rounds %d: must not be negative", o.Rounds)
	}
	for _, p := range o.Cases {
		if !slices.ContainsFunc(Cases(), func(c Case) bool { return matchAny(c.Name, []string{p}) }) {
			return fmt.Errorf("case %q: no such case or group (see -list)", p)
		}
	}
	avail := Available()
	for _, i := range o.Impls {
		if !contains(avail, i) {
			return fmt.Errorf("impl %q: no such implementation (built: %s)", i, strings.Join(avail, ","))
		}
	}
	return nil
}

// Selected returns the cases o selects, with their implementations cut
// down to those selected and available; cases left with none are dropped.
func (o Options) Selected() []Case {
	avail := Available()
	var out []Case
	for _, c := range Cases() {
		if !matchAny(c.Name, o.Cases) {
			continue
		}
		var impls []string
		for _, i := range c.Impls {
			if contains(avail, i) && (len(o.Impls) == 0 || contains(o.Impls, i)) {
				impls = append(impls, i)
			}
		}
		if len(impls) > 0 {
			c.Impls = impls
			out = append(out, c)
		}
	}
	return out
}

func matchAny(name string, prefixes []string) bool {
	if len(prefixes) == 0 {
		return true
	}
	for _, p := range prefixes {
		if name == p || strings.HasPrefix(name, strings.TrimSuffix(p, "/")+"/") {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Run measures the selected cases on the selected implementations and
// returns the report. Every object it creates is removed before it
// returns, also on error. When ctx ends it stops after the current run and
// returns what it has with ctx's error.
func Run(ctx context.Context, o Options) (*Report, error) {
	defer Cleanup()
	start := time.Now()
	rep := &Report{Schema: SchemaID, Mode: "full", Started: start.UTC().Truncate(time.Second), Host: host()}
	if o.Quick {
		rep.Mode = "quick"
	}
	budget, rounds := o.budget(), o.rounds()
	rep.Host.Budget, rep.Host.Rounds = budget.String(), rounds
	cases := o.Selected()
	steps := 0
	for _, c := range cases {
		steps += len(c.Impls) * (rounds + 1)
	}
	e := &env{ctx: ctx, spawn: o.Spawn, timer: noTimer{}, timeout: 60*time.Second + 20*budget}
	step := 0
	progress := func(c Case, impl string, round int) {
		step++
		if o.Progress != nil {
			o.Progress(Progress{Step: step, Steps: steps, Case: c.Name, Impl: impl, Round: round})
		}
	}
	var err error
	for _, c := range cases {
		if err = ctx.Err(); err != nil {
			break
		}
		var res *Result
		res, err = runCase(e, c, budget, rounds, progress)
		rep.Results = append(rep.Results, res)
		if err != nil {
			break
		}
	}
	rep.Seconds = math.Round(time.Since(start).Seconds()*10) / 10
	return rep, errors.Join(err, Cleanup())
}

// runCase calibrates c on each implementation, then runs the rounds, each
// round in a different order of implementations, and condenses the
// measurements. Only ctx's end is returned as an error; an implementation
// that fails gets its error in the result.
func runCase(e *env, c Case, budget time.Duration, rounds int, progress func(Case, string, int)) (*Result, error) {
	res := &Result{Case: c.Name, Title: c.Title, Kind: c.Kind, Unit: "ns", Impls: map[string]*ImplResult{}}
	switch c.Kind {
	case Throughput:
		res.Unit = "msgs/s"
	case Idle:
		res.Unit = "us/s"
	}
	type plan struct{ n, k int }
	plans := map[string]plan{}
	ms := map[string][]measurement{}
	fail := func(impl string, err error) {
		res.Impls[impl] = &ImplResult{Error: err.Error()}
	}
	for _, impl := range c.Impls {
		if e.ctx.Err() != nil {
			return res, e.ctx.Err()
		}
		progress(c, impl, 0)
		m, err := c.run(e, impl, c.pilot, 1)
		if err != nil {
			fail(impl, err)
			continue
		}
		k := 1
		// The cost of one operation, to size the timed runs: the pilot's
		// wall time per operation, which on a busy machine includes the
		// time other processes take; but a pilot of in-process operations
		// lasts a millisecond or two, and a single preemption would skew
		// it, so it counts for at most four times the median.
		per := max(m.wall, m.elapsed) / time.Duration(max(m.ops, 1))
		if m.wall == 0 && len(m.samples) > 0 {
			p50, _ := percentiles(m.samples)
			per = min(per, time.Duration(4*p50))
			if c.batch {
				// Group so that a sample lasts about a microsecond.
				k = max(1, int(1000/max(p50, 1)))
			}
		}
		per = max(per, time.Nanosecond)
		n := int64(budget / time.Duration(rounds) / per) // int64: no overflow on 386
		p := plan{n: int(min(max(n, int64(c.minOps)), int64(c.maxOps))), k: k}
		plans[impl] = p
	}
	for r := range rounds {
		for i := range c.Impls {
			impl := c.Impls[(i+r)%len(c.Impls)] // each round starts with another one
			p, ok := plans[impl]
			if !ok || res.Impls[impl] != nil {
				continue
			}
			if e.ctx.Err() != nil {
				return res, e.ctx.Err()
			}
			progress(c, impl, r+1)
			m, err := c.run(e, impl, p.n, p.k)
			if err != nil {
				if e.ctx.Err() != nil {
					return res, e.ctx.Err()
				}
				fail(impl, err)
				continue
			}
			ms[impl] = append(ms[impl], m)
		}
	}
	for impl, list := range ms {
		if res.Impls[impl] != nil {
			continue // failed in a later round
		}
		res.Impls[impl] = condense(c.Kind, list)
	}
	res.Speedup = speedup(c.Kind, res.Impls[Usysv], res.Impls[Kernel])
	return res, nil
}

// condense turns the measurements of the rounds into one result: latency
// percentiles over all samples pooled, or messages over total time.
func condense(kind Kind, list []measurement) *ImplResult {
	r := &ImplResult{}
	var samples []float64
	var elapsed, cpu time.Duration
	for _, m := range list {
		r.Ops += int64(m.ops)
		elapsed += m.elapsed
		cpu += m.cpu
		samples = append(samples, m.samples...)
		r.OpsPerSample = max(r.OpsPerSample, m.sampleOps)
		switch kind {
		case Latency:
			p50, _ := percentiles(m.samples)
			r.PerRound = append(r.PerRound, round3(p50))
		case Idle:
			r.PerRound = append(r.PerRound, usPerS(m.cpu, m.elapsed))
		default:
			r.PerRound = append(r.PerRound, math.Round(float64(m.ops)/max(m.elapsed.Seconds(), 1e-9)))
		}
	}
	r.Seconds = round3(elapsed.Seconds())
	switch kind {
	case Latency:
		p50, p99 := percentiles(samples)
		a, b := round3(p50), round3(p99)
		r.P50NS, r.P99NS, r.Samples = &a, &b, len(samples)
	case Throughput:
		v := math.Round(float64(r.Ops) / max(elapsed.Seconds(), 1e-9))
		r.MsgsPerS = &v
	case Idle:
		v := usPerS(cpu, elapsed)
		r.CPUUsPerS = &v
	}
	return r
}

// usPerS is CPU time cpu per second of wall time, in µs, to 0.1 µs.
func usPerS(cpu, wall time.Duration) float64 {
	return math.Round(float64(cpu.Microseconds())/max(wall.Seconds(), 1e-9)*10) / 10
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

// speedup is how many times better u did than k, or nil.
func speedup(kind Kind, u, k *ImplResult) *float64 {
	uv, ok1 := u.Value()
	kv, ok2 := k.Value()
	if !ok1 || !ok2 || uv <= 0 || kv <= 0 {
		return nil
	}
	s := kv / uv
	if kind == Throughput {
		s = uv / kv
	}
	s = roundSig(s, 3) // (to hundredths, a ratio under 0.005 was 0)
	return &s
}

// roundSig rounds v > 0 to n significant digits.
func roundSig(v float64, n int) float64 {
	scale := math.Pow(10, float64(n-1)-math.Floor(math.Log10(v)))
	return math.Round(v*scale) / scale
}

func host() Host {
	h := Host{OS: runtime.GOOS, Arch: runtime.GOARCH, CPUs: runtime.NumCPU(), Go: runtime.Version(),
		Registry: os.Getenv("USYSV_SOCKET"), Available: strings.Join(Available(), ",")}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		h.Kernel = strings.TrimSpace(string(b))
	}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				h.CPU = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			h.LoadAvg, _ = strconv.ParseFloat(f[0], 64)
		}
	}
	if h.Registry == "" {
		h.Registry = "default"
	}
	return h
}

// ResultFor returns the result of case name, or nil.
func (r *Report) ResultFor(name string) *Result {
	for _, res := range r.Results {
		if res.Case == name {
			return res
		}
	}
	return nil
}

// String is a short description of an implementation's outcome.
func (r *ImplResult) String() string {
	if r == nil {
		return "-"
	}
	if r.Error != "" {
		return "error: " + r.Error
	}
	if r.P50NS != nil {
		return fmt.Sprintf("p50 %s p99 %s", fmtNS(*r.P50NS), fmtNS(*r.P99NS))
	}
	if r.MsgsPerS != nil {
		return fmtRate(*r.MsgsPerS)
	}
	return "?"
}
