package sem

import (
	"sync/atomic"
	"time"

	"github.com/usysv/usysv/kernel"
)

// Spinning before sleeping. An op that would block re-checks for a while
// before it queues (preQueueSpin), and a queued waiter re-checks for a
// while before it sleeps in FUTEX_WAIT (waiterSpin): when the process it
// waits for is running on another CPU and about to post, that saves both
// sides a system call and the waiter a trip through the scheduler. When it
// is not — the partner sleeps itself, or waits for a CPU, perhaps the one
// the spinner holds — spinning only burns the CPU the partner needs.
//
// A spin re-checks in a tight loop for up to spinTight, then re-checks
// between sched_yield calls (so that a partner runnable on this CPU gets
// to post) until its budget is spent. Only a spin that ends with the op
// done within the tight phase pays: that one saved a sleep. One that
// needed yields (the partner shared our CPU: handing it over by yielding
// costs about what sleeping does) or that ended in a sleep anyway did not.
// Spinning is adaptive, per handle (spinPolicy): a spin that paid earns
// credit, one that did not loses it, and with no credit left the handle
// sleeps at once, except for probes: spinStreak blocking calls in every
// spinProbe spin their tight phase to see whether spinning pays again.
// Probes come in streaks because spinning pays only when both partners of
// an exchange spin: a partner that sleeps answers late because it must be
// woken first. A lone probe would always meet a sleeping partner; streaks
// of the two sides soon overlap, and both find spinning paying again.
//
// The budgets are variables only so that benchmarks can measure the
// sleeping path (0: never spin).
var (
	preQueueSpin = 20 * time.Microsecond
	waiterSpin   = 10 * time.Microsecond
)

const (
	spinTight  = 3 * time.Microsecond // tight re-checks before the first yield
	spinEvery  = 16                   // checks between looks at the clock (and yields)
	spinCredit = 16                   // most credit a handle holds
	spinWin    = 4                    // credit a spin that paid earns
	spinLoss   = 4                    // credit a spin that did not costs
	spinProbe  = 64                   // with no credit, spinStreak blocking calls in spinProbe
	spinStreak = 8                    // spin anyway (tight phase only)
)

// spinPolicy is a handle's spinning credit. Updates are racy on purpose:
// it is a hint, and goroutines that lose each other's updates only spin a
// little more or less.
type spinPolicy struct {
	credit atomic.Int32
	probe  atomic.Uint32
}

// start returns how long a blocking call should spin now (0: not at all).
func (p *spinPolicy) start(budget time.Duration) time.Duration {
	switch {
	case p.credit.Load() > 0:
		return budget
	case (p.probe.Add(1)-1)%spinProbe < spinStreak:
		return min(budget, spinTight)
	}
	return 0
}

// paid records whether a spin ended with the op done (true) or in a sleep.
func (p *spinPolicy) paid(ok bool) {
	c := p.credit.Load()
	if ok {
		c = min(c+spinWin, spinCredit)
	} else {
		c = max(c-spinLoss, 0)
	}
	p.credit.Store(c)
}

// spinner paces one spin: tight checks, then yields, until budget passes.
type spinner struct {
	i       int
	yielded bool
	start   time.Time
	budget  time.Duration
}

func newSpinner(budget time.Duration) spinner {
	return spinner{start: time.Now(), budget: budget}
}

// next pauses before the next check and reports whether to make it.
func (sp *spinner) next() bool {
	sp.i++
	if sp.i%spinEvery != 0 {
		return true
	}
	d := time.Since(sp.start)
	if d >= sp.budget {
		return false
	}
	if d >= spinTight {
		kernel.SchedYield()
		sp.yielded = true
	}
	return true
}

// paid reports whether a spin that ended with the op done paid off: it
// never had to yield.
func (sp *spinner) paid() bool { return !sp.yielded }
