package sem

import (
	"math/rand/v2"
	"sync/atomic"
	"time"
)

// Spinning before sleeping. An op that would block re-checks for a while
// before it queues, and a queued waiter re-checks for a while before it
// sleeps in FUTEX_WAIT: when the process it waits for is running on
// another CPU and about to post, that saves both sides a system call and
// the waiter a trip through the scheduler. When it is not — the partner
// sleeps itself, or waits for a CPU, perhaps the one the spinner holds —
// spinning only burns the CPU the partner needs.
//
// So spinning is adaptive, per handle (spinPolicy). A spin is a tight loop
// of re-checks, up to spinTight (3 µs: several times an active partner's
// answer, a fraction of a sleep and wake-up). One that ends with the op
// done earns credit; one that does not loses it; with no credit left the
// handle sleeps at once, except for probes: spinStreak blocking calls in
// every probe period spin anyway, and one that ends with the op done earns
// credit back. Probes must be able to succeed where a normal spin would
// not: spinning pays only when both partners of an exchange spin, and a
// partner that has been sleeping answers only after its wake-up, which
// takes longer than spinTight. So a probe spins up to preQueueSpin and
// counts even a late success; probes come in streaks, each starting at a
// random point of its period, because two partners in lockstep (a
// ping-pong) would otherwise keep their streaks apart for ever. When two
// streaks overlap, both sides find each other awake and spinning pays
// again. If the two share a CPU, spins keep failing and the credit is soon
// gone again; a period in which no probe paid makes the next one twice as
// long (up to probeMax calls), so that probing a partner that is never
// there costs next to nothing. The first blocking call after a sleep or
// a wake-up spins as a probe does (below, wakeMax).
//
// A spinner whose peer last began to spin on the same CPU yields that CPU
// between looks (sched_yield), from the start: two processes that hand a
// semaphore back and forth are often put on one CPU by the scheduler, and
// then every look without a yield only delays the post it waits for
// (shm.CoLocation, which package msgq's spinners use too). Otherwise it
// yields only once it has spun spinPolite, longer than a tight spin, so
// only probes do. A yield that turns out slow (other threads wanted the
// CPU: Linux's EEVDF scheduler then keeps a yielder off its CPU for
// milliseconds) turns the handle's yields off for a while
// (shm.CoLocation.Yield). Measured with make bench on two CPUs, a
// ping-pong's round trip went from 3.0 µs (the kernel's 2.85) to 0.33-0.43
// µs: the two stay runnable, and the scheduler soon moves one to the other
// CPU. With two CPU-bound processes besides, it went from about 3.2 µs to
// 0.37 µs, with a lower p99 (25-60 µs against 44-90). With one, it went
// from 3.0 µs to 4.3 µs: the two then stay on one CPU, and a post handed
// over by yields comes later there than one handed over by a FUTEX_WAKE
// (a handle that stopped yielding after a while of that did no better
// overall: some runs took 7.5 µs, spinning without yielding first).
//
// The budgets are variables only so that benchmarks can measure the
// sleeping path (0: never spin).
var (
	preQueueSpin = 20 * time.Microsecond // a probe's budget, before queueing
	waiterSpin   = spinTight             // a queued waiter's, before sleeping
)

const (
	spinTight  = 3 * time.Microsecond // a spin's budget; later success does not pay
	spinPolite = 5 * time.Microsecond // a spin not on its peer's CPU yields after this
	spinYield  = 128                  // checks between yields (and the first look at coloc)
	spinEvery  = 16                   // checks between looks at the clock
	spinCredit = 16                   // most credit a handle holds
	spinWin    = 4                    // credit a spin that paid earns
	spinLoss   = 4                    // credit a spin that did not costs
	spinProbe  = 128                  // with no credit, spinStreak blocking calls in spinProbe
	spinStreak = 8                    // spin anyway (probes); spinProbe doubles after a streak
	probeMax   = 8192                 // in which no probe paid, up to probeMax
)

// spinPolicy is a handle's spinning credit. Updates are racy on purpose:
// it is a hint, and goroutines that lose each other's updates only spin a
// little more or less.
type spinPolicy struct {
	credit atomic.Int32
	probe  atomic.Uint32 // blocking calls made without credit
	period atomic.Uint32 // of probe streaks (0: spinProbe)
	phase  atomic.Uint32 // where in the current period its streak starts
	hit    atomic.Bool   // a probe of the current period paid

	slept     atomic.Bool   // the handle woke a sleeper, or woke from a sleep
	wakeSkip  atomic.Uint32 // after-wake spins still to skip
	wakeEvery atomic.Uint32 // one after-wake spin in wakeEvery (0: 1) is made
}

// A spin's kind says what its end teaches the policy (ended).
type spinKind uint8

const (
	kindNone   spinKind = iota // no spin
	kindCredit                 // a tight spin, made with credit
	kindProbe                  // a probe, made without
	kindWake                   // the first spin after a sleep or a wake-up
)

// Two peers that both sleep wake each other on every exchange: each
// finds the other asleep, so neither's spin pays, and only their probes,
// made at random points, can find the other awake, if they meet. Parted
// by shm.CoLocation's move, make bench's ping-pong pair fell into this in
// two of five runs of `usysv bench -case sem`, for the whole run: 8–9 µs
// a round trip, the kernel's, with two waits in three asleep. So the
// first blocking call after a handle woke a sleeping peer, or woke from a
// sleep itself, spins with a probe's budget, which covers the woken
// peer's wake-up, and its success, late or not, earns credit: both sides
// of such a pair spin at the next exchange. Where the peer does not
// answer that soon (it sleeps for other reasons), these spins back off:
// only one in wakeEvery is made, which doubles up to wakeMax while they
// fail and is 1 again when one pays.
const wakeMax = 4096

// start returns how long a blocking call should spin now (total, 0: not
// at all), how long of it pays (tight), and the spin's kind. A spin with
// credit is a tight one; a probe, and the first after a sleep, have the
// whole budget.
func (p *spinPolicy) start(budget time.Duration) (tight, total time.Duration, kind spinKind) {
	if p.slept.Load() {
		p.slept.Store(false)
		if p.wakeSkip.Load() == 0 {
			return min(budget, spinTight), budget, kindWake
		}
		p.wakeSkip.Add(^uint32(0))
	}
	if p.credit.Load() > 0 {
		return min(budget, spinTight), min(budget, spinTight), kindCredit
	}
	per := max(p.period.Load(), spinProbe)
	i := p.probe.Add(1) - 1
	if i == 0 || i >= per { // a new period
		switch {
		case p.hit.Swap(false):
			per = spinProbe
		case p.period.Load() != 0:
			per = min(2*per, probeMax)
		}
		p.period.Store(per)
		p.phase.Store(rand.Uint32N(per - spinStreak + 1))
		p.probe.Store(1)
		i = 0
	}
	if ph := p.phase.Load(); i >= ph && i < ph+spinStreak {
		return min(budget, spinTight), budget, kindProbe
	}
	return 0, 0, kindNone
}

// sleptOrWoke tells the policy that the handle woke a sleeping peer or
// was woken from a sleep: its next blocking call makes a kindWake spin.
func (p *spinPolicy) sleptOrWoke() {
	if !p.slept.Load() {
		p.slept.Store(true)
	}
}

// ended records how a spin of kind ended: with the op done or not, and
// (spinner paid) within the tight phase or not. A probe or an after-wake
// spin earns credit even if it succeeded late.
func (p *spinPolicy) ended(kind spinKind, done, tight bool) {
	if kind == kindWake {
		if done {
			p.wakeEvery.Store(1)
		} else {
			e := min(2*max(p.wakeEvery.Load(), 1), wakeMax)
			p.wakeEvery.Store(e)
			p.wakeSkip.Store(e - 1)
		}
	}
	late := kind == kindProbe || kind == kindWake
	c := p.credit.Load()
	if done && (tight || late) {
		c = min(c+spinWin, spinCredit)
		if late {
			p.hit.Store(true)
		}
	} else {
		c = max(c-spinLoss, 0)
	}
	p.credit.Store(c)
}

// spinner paces one spin: re-checks until budget passes, noting whether
// it went on past the tight phase, and yielding the CPU between checks
// once it has spun polite (see politeFor).
type spinner struct {
	i      int
	late   bool
	polite time.Duration // -1 until asked
	start  time.Time
	tight  time.Duration
	budget time.Duration
	s      *Array
}

func (s *Array) newSpinner(tight, budget time.Duration) spinner {
	return spinner{polite: -1, start: time.Now(), tight: tight, budget: budget, s: s}
}

// next reports whether to make the next check.
func (sp *spinner) next() bool {
	sp.i++
	if sp.i%spinEvery != 0 {
		return true
	}
	d := time.Since(sp.start)
	sp.late = sp.late || d >= sp.tight
	if sp.i%spinYield == 0 {
		if sp.polite < 0 {
			sp.polite = sp.s.politeFor()
		}
		if d >= sp.polite {
			sp.s.coloc.Yield()
		}
	}
	return d < sp.budget
}

// politeFor is how long a spin that has checked spinYield times goes on
// before it yields between checks: 0 if the peer is on this CPU.
func (s *Array) politeFor() time.Duration {
	if s.coloc.Same(&s.v.hdr.spinCPU, uint32(s.pid>>pidShift)) {
		return 0
	}
	return spinPolite
}

// paid reports whether a spin that ended with the op done paid off: it
// did not need longer than the tight phase.
func (sp *spinner) paid() bool { return !sp.late }
