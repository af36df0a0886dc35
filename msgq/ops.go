package msgq

import (
	"context"
	"math"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/usysv/usysv/internal/clock"
	"github.com/usysv/usysv/kernel"
)

// spinFor bounds how long a call that cannot proceed watches the queue
// before it sleeps: long enough that two processes playing ping-pong
// never sleep, short enough that a blocked caller costs nothing measurable.
const spinFor = 20 * time.Microsecond

// spinShort is the spin of a handle whose spins stopped paying: long
// enough for a round trip to a peer that is running, so that the handle
// sees when spinning pays again (two peers that both stopped spinning
// would otherwise never find out), short enough to cost no more than the
// sleep it may save.
const spinShort = 2 * time.Microsecond

// spinWake is the spin of a call whose handle just woke a sleeping peer
// (one call in wakeProbe; the others do not spin): long enough to see the
// answer of a peer woken on an idle CPU, so that two peers that both sleep
// find out when they could both spin again. wakeProbe starts at
// wakeProbeMin and doubles, up to wakeProbeMax, each time such a spin does
// not pay (on a busy machine they do not), so that it costs next to nothing
// there and still finds out soon when the machine quiets down.
const spinWake = 40 * time.Microsecond

const (
	spinGiveUp    = 4  // spins in a row that did not pay before spinShort
	spinProbe     = 64 // even then, one call in spinProbe spins spinFor
	wakeProbeMin  = 16
	wakeProbeMax  = 4096
	shortProbeMax = 64
)

// spinPolite is how long a spin only watches (plus its first 128 looks)
// when the peer it waits for runs on another CPU; after it, it also yields
// the CPU between looks (sched_yield), in case the peer moved to this one.
// A spin whose peer last began to spin on this very CPU yields from the
// start (shm.CoLocation).
const spinPolite = 5 * time.Microsecond

// politeFor is the spinPolite of a spin that has looked 128 times
// without seeing a change: 0 if the peer is on this CPU.
func (q *Queue) politeFor() time.Duration {
	if q.coloc.Same(&q.v.ctl.spinCPU, q.pid) {
		return 0
	}
	return spinPolite
}

// spinBudget is how long this call may spin: spinFor, or after
// spinGiveUp spins in a row saw nothing (the peer is not running: an idle
// peer, or an overloaded machine) spinShort in one call in shortProbe
// (which doubles, up to shortProbeMax, while such spins see nothing, and
// is 1 again when one does) and nothing in the others, except one call in
// spinProbe, which spins spinFor. A call whose handle just woke a sleeping
// peer does not spin at all (except one in wakeProbe, spinWake): the peer
// answers after its wake-up, and a sleeper woken gets a busy CPU sooner
// than a spinner that yields.
func (q *Queue) spinBudget() time.Duration {
	if q.wokePeer.Load() {
		q.wokePeer.Store(false)
		every := q.wakeProbe.Load()
		if every == 0 {
			every = wakeProbeMin
		}
		if q.spinProbe.Add(1)%every != 0 {
			return 0
		}
		return spinWake
	}
	if q.spinFails.Load() >= spinGiveUp {
		if q.spinProbe.Add(1)%spinProbe == 0 {
			return spinFor
		}
		if q.shortCount.Add(1)%max(q.shortProbe.Load(), 1) != 0 {
			return 0
		}
		return spinShort
	}
	return spinFor
}

// spinDone records whether a spin of budget saw what it waited for. It
// returns ok.
func (q *Queue) spinDone(ok bool, budget time.Duration) bool {
	if ok {
		if q.spinFails.Load() != 0 {
			q.spinFails.Store(0)
		}
	} else {
		q.spinFails.Add(1)
	}
	switch budget {
	case spinWake:
		// A probe that paid makes every call after a wake-up spin, until
		// one does not pay: on an idle machine a woken peer answers
		// within the spin, and when one side stops sleeping the other
		// stops waking it (else the two sleep and wake each other for
		// good: an 8 KiB stream spent most of its time in futex calls).
		if ok {
			q.wakeProbe.Store(1)
		} else if p := q.wakeProbe.Load(); p < wakeProbeMax {
			q.wakeProbe.Store(min(max(p*2, wakeProbeMin), wakeProbeMax))
		}
	case spinShort:
		if ok {
			q.shortProbe.Store(1)
		} else if p := q.shortProbe.Load(); p < shortProbeMax {
			q.shortProbe.Store(max(p, 1) * 2)
		}
	}
	return ok
}

// spin watches gen (bumped by locked sends or receives while someone
// spins) and the ring's words until one moves, for spinBudget. It yields
// to other goroutines only now and then: a yield costs more than the whole
// hand-off it waits for. It watches the ring too because once the lock is
// released the ring may open, and then sends and receives no longer bump
// the gens.
func (q *Queue) spin(gen *atomic.Uint32, g uint32, h, t uint64) {
	budget := q.spinBudget()
	if budget == 0 {
		return
	}
	rc := q.v.rc
	polite := time.Duration(-1)
	var start time.Time
	for i := 1; ; i++ {
		if gen.Load() != g || q.v.nslots != 0 && (rc.tail.Load() != t || rc.head.Load() != h) {
			q.spinDone(true, budget)
			return
		}
		if i&127 == 0 {
			if polite < 0 {
				polite = q.politeFor()
			}
			if start.IsZero() {
				start = time.Now()
			} else if d := time.Since(start); d > budget {
				q.spinDone(false, budget)
				return
			} else if d > polite {
				q.coloc.Yield()
			}
			if i&4095 == 0 {
				runtime.Gosched()
			}
		}
	}
}

// reopened is the ring's head and tail words h and t, read under the
// lock just before the unlock, as the spin that follows should watch them:
// if that unlock opened the ring (its only change to them), the opened
// words. Otherwise the spinner would see its own unlock as the change it
// waits for, and go to sleep on its next round (an 8 KiB stream's
// receiver, which finds the store empty and opens the ring each time,
// slept once every 16 messages).
func (v *view) reopened(h, t uint64) (uint64, uint64) {
	if v.nslots == 0 || (h|t)&ringClosed == 0 {
		return h, t
	}
	if h2, t2 := v.rc.head.Load(), v.rc.tail.Load(); h2 == h&^ringClosed && t2 == t&^ringClosed {
		return h2, t2
	}
	return h, t
}

func (q *Queue) fail(w *waiter, wl *wakeList, n int, err error) (int, error) {
	q.release(w)
	q.unlock(wl)
	return n, err
}

// sendMsgs sends msgs in order, blocking while the queue is full unless
// nowait. The lock is taken once for as many messages as fit.
func (q *Queue) sendMsgs(ctx context.Context, msgs []Msg, nowait, spun, waited bool) (int, error) {
	if err := q.enter(); err != nil {
		return 0, err
	}
	defer q.leave()
	if q.seg.Removed() {
		return 0, kernel.EINVAL
	}
	var w waiter
	defer w.done()
	var wl wakeList
	defer q.v.guard(q.mu, &wl, &w)
	c := q.v.ctl
	sent := 0
	for {
		if err := q.lockFor(ctx, &w, &wl); err != nil {
			return sent, err
		}
		// Linux's order: EACCES, EIDRM, then whether it fits. A sender
		// that waited (waited: this message's send slept or spun for room,
		// here or in the ring) looks at its permission only when it was
		// woken for room (argWoken) or its message fits now: Linux wakes a
		// sender only for room (an IPC_SET wakes no other), and its loop
		// looks at the permission only then, after EIDRM.
		woken := waited && w.slot != nil && w.slot.Arg[argWoken].Load() != 0
		if !waited && q.access()&permWrite == 0 {
			return q.fail(&w, &wl, sent, kernel.EACCES)
		}
		if q.seg.Removed() {
			return q.fail(&w, &wl, sent, kernel.EIDRM)
		}
		// The store is the whole queue from here on (the ring's messages
		// are older than this one and must stay ahead of it).
		if err := q.closeRing(); err != nil {
			return q.fail(&w, &wl, sent, err)
		}
		qb := q.qbytes()
		if waited && (woken || q.v.fits(len(msgs[sent].Data), qb)) && q.access()&permWrite == 0 {
			return q.fail(&w, &wl, sent, kernel.EACCES)
		}
		waited = false
		now := clock.Now()
		for sent < len(msgs) && q.v.fits(len(msgs[sent].Data), qb) {
			if len(msgs[sent].Data) >= bigCopy {
				ok, err := q.enqueueBig(msgs[sent].Type, msgs[sent].Data, &wl)
				if err != nil {
					return q.fail(&w, &wl, sent, err)
				}
				qb, now = q.qbytes(), clock.Now() // the lock was released
				if !ok {
					continue // it no longer fits: look again
				}
			} else if err := q.enqueue(msgs[sent].Type, msgs[sent].Data, now, &wl); err != nil {
				return q.fail(&w, &wl, sent, err)
			}
			sent++
		}
		if sent == len(msgs) {
			q.release(&w)
			q.unlock(&wl)
			return sent, nil
		}
		if nowait {
			return q.fail(&w, &wl, sent, ErrFull)
		}
		size := uint64(len(msgs[sent].Data))
		if !spun && w.slot == nil && !w.ovf {
			spun = true
			c.sendSpin.Add(1)
			g := c.recvGen.Load()
			h, t := q.v.rc.head.Load(), q.v.rc.tail.Load()
			q.unlock(&wl)
			h, t = q.v.reopened(h, t)
			q.spin(&c.recvGen, g, h, t)
			waited = true
			continue
		}
		if w.slot == nil {
			q.claim(&w, slotSend, size, 0)
		} else {
			w.slot.Arg[argType].Store(size)
			if w.slot.Arg[argWoken].Swap(0) != 0 {
				q.v.rc.sendWake.Add(1)
			}
		}
		// (After the slot has this message's size, which does not fit: a
		// batch's slot may still hold an earlier one's.)
		q.rewakeSenders(&wl)
		if roomHook != nil {
			roomHook()
		}
		seen := q.futex(&w).Load()
		if err := q.stopped(ctx, 0); err != nil {
			return q.fail(&w, &wl, sent, err)
		}
		q.unlock(&wl)
		waited = true
		if q.seg.DeadGen() != q.deadGen.Load() {
			continue // repair first
		}
		// qbytes again, after seen: the registry changes it (IPC_SET)
		// without the lock and then wakes every waiter, and a wake-up
		// between the look above and seen would be lost: the sender would
		// sleep on with room (TestRoomAfterLook; seen once in CI).
		if q.qbytes() != qb {
			continue
		}
		q.sleep(ctx, &w, seen)
	}
}

// recvMsgs receives up to len(msgs) messages matching msgtyp, blocking
// until there is one unless flags has IPC_NOWAIT. The lock is taken once
// for all that are there.
func (q *Queue) recvMsgs(ctx context.Context, msgs []Msg, msgtyp int64, flags int, spun bool) (int, error) {
	if err := q.enter(); err != nil {
		return 0, err
	}
	defer q.leave()
	if q.seg.Removed() {
		return 0, kernel.EINVAL
	}
	mode, typ := convertMode(msgtyp, flags)
	maxsize := uint64(len(msgs[0].Data))
	if flags&MSG_NOERROR != 0 {
		maxsize = math.MaxUint32
	}
	var w waiter
	defer w.done()
	var wl wakeList
	defer q.v.guard(q.mu, &wl, &w)
	c := q.v.ctl
	for {
		if err := q.lockFor(ctx, &w, &wl); err != nil {
			return 0, err
		}
		now := clock.Now()
		// A message handed to our slot wins over everything else.
		if s := w.slot; s != nil {
			switch s.State.Load() {
			case slotDelivered:
				err := q.takeHanded(s, &msgs[0])
				q.release(&w)
				q.unlock(&wl)
				if err != nil {
					return 0, err
				}
				return 1, nil
			case slotE2BIG:
				return q.fail(&w, &wl, 0, kernel.E2BIG)
			}
		}
		// Linux's order: EACCES, EIDRM, find, E2BIG, then ENOMSG or sleep.
		if q.access()&permRead == 0 {
			return q.fail(&w, &wl, 0, kernel.EACCES)
		}
		if q.seg.Removed() {
			return q.fail(&w, &wl, 0, kernel.EIDRM)
		}
		// The ring may have opened while this call spun (the spin ends
		// when the ring's words move): then a first message that matches
		// goes through the ring, as in recvLocked, rather than close the
		// ring again at once. In a message ping-pong, a receiver that had
		// come here closed every open this way, with its peer's message in
		// the ring and none taken from it, which noteClose counts as an
		// open that bought nothing: its backoff then kept 44% of the
		// receives and sends of a slow run (1.5 µs round trips against
		// 0.54) on the lock path.
		if w.slot == nil && !w.ovf && len(msgs) == 1 && flags&MSG_COPY == 0 && msgtyp >= 0 && q.ring && q.v.isOpen() {
			if q.ringTake(&msgs[0], mode, typ, flags&MSG_NOERROR != 0) == takeDone {
				q.afterRecv(&wl)
				q.unlock(&wl)
				q.stampRecv()
				return 1, nil
			}
		}
		if err := q.closeRing(); err != nil {
			return q.fail(&w, &wl, 0, err)
		}
		got := 0
		var out outside
		for got < len(msgs) {
			ok, err := q.take(&msgs[got], mode, typ, flags, now, &wl, &out)
			if err != nil {
				if got == 0 {
					return q.fail(&w, &wl, 0, err)
				}
				break // reported by the next call
			}
			if !ok {
				break
			}
			got++
			if out.s != nil {
				break // its text is copied once the lock is released
			}
		}
		if got > 0 {
			q.release(&w)
			q.unlock(&wl)
			if out.s != nil {
				if err := q.finishTake(&out, &msgs[got-1]); err != nil {
					return got - 1, err
				}
			}
			return got, nil
		}
		if flags&IPC_NOWAIT != 0 {
			return q.fail(&w, &wl, 0, ErrEmpty)
		}
		if !spun && w.slot == nil && !w.ovf {
			spun = true
			c.recvSpin.Add(1)
			g := c.sendGen.Load()
			h, t := q.v.rc.head.Load(), q.v.rc.tail.Load()
			q.unlock(&wl)
			h, t = q.v.reopened(h, t)
			q.spin(&c.sendGen, g, h, t)
			continue
		}
		q.rewakeSenders(&wl)
		if w.slot == nil {
			q.claim(&w, slotRecv, uint64(typ), uint64(mode)|maxsize<<32)
		}
		seen := q.futex(&w).Load()
		if err := q.stopped(ctx, permRead); err != nil {
			return q.fail(&w, &wl, 0, err)
		}
		q.unlock(&wl)
		if q.seg.DeadGen() != q.deadGen.Load() {
			continue
		}
		q.sleep(ctx, &w, seen)
	}
}

func (q *Queue) checkMsg(mtype int64, data []byte) error {
	if mtype < 1 || len(data) > q.maxMsg {
		return kernel.EINVAL
	}
	return nil
}

// closeRing closes the ring and moves its messages into the store, so
// that the locked operation sees the whole queue there. Lock held.
func (q *Queue) closeRing() error {
	v := q.v
	if v.nslots == 0 {
		return nil
	}
	if h, t := v.rc.head.Load(), v.rc.tail.Load(); h&t&ringClosed != 0 && rpos(h) == rpos(t) {
		return nil // closed and empty: nothing to do
	}
	v.setClosed()
	return v.flush()
}

// sendLocked is the whole of a send through the lock in the common case:
// the lock once, room in the queue. It reports false, having sent
// nothing, when the call needs the general path (to wait, to repair, or
// for an error in Linux's order).
func (q *Queue) sendLocked(ctx context.Context, mtype int64, data []byte, ring bool) (bool, error) {
	var wl wakeList
	defer q.v.guard(q.mu, &wl, nil)
	if ok, err := q.lockQuick(ctx, &wl, permWrite); !ok {
		return err != nil, err
	}
	// The ring may have opened while this call waited for the lock (ring:
	// it came here because it found the ring closed): then the message
	// goes through the ring rather than close it again at once, which in a
	// stream had the two sides close and open it in turn, and most
	// messages go through the lock.
	if ring && len(data) <= slotText && q.ring && q.v.isOpen() {
		if r, _, _ := q.ringPut(mtype, data, q.qbytes()); r == putDone {
			wl.sent = true
			q.changed(&wl)
			q.unlock(&wl)
			q.stampSend()
			return true, nil
		}
	}
	if err := q.closeRing(); err != nil {
		q.unlock(&wl)
		return true, err
	}
	if !q.v.fits(len(data), q.qbytes()) {
		q.unlock(&wl)
		return false, nil
	}
	if len(data) >= bigCopy {
		sent, err := q.enqueueBig(mtype, data, &wl)
		q.unlock(&wl)
		return sent || err != nil, err
	}
	err := q.enqueue(mtype, data, clock.Now(), &wl)
	q.unlock(&wl)
	return true, err
}

// lockQuick takes the lock for sendLocked or recvLocked, waiting until ctx
// ends at most (then it returns ctx's error, without the lock), and
// reports whether their common case may go on: no death since this handle
// last repaired, permission need, the queue not removed. If not, it has
// released the lock, and the general path does the call (it repairs, and
// returns the errors in Linux's order).
func (q *Queue) lockQuick(ctx context.Context, wl *wakeList, need uint64) (bool, error) {
	died, err := q.acquireWithin(ctx, wl)
	if err != nil {
		return false, err
	}
	if died {
		q.v.repair(true)
	}
	if q.seg.DeadGen() != q.deadGen.Load() || q.access()&need == 0 || q.seg.Removed() {
		q.unlock(wl)
		return false, nil
	}
	return true, nil
}

// recvLocked is the whole of a receive through the lock in the common
// case: the lock once, a message there (or none and IPC_NOWAIT). It
// reports false, having taken nothing, when the call needs the general
// path.
func (q *Queue) recvLocked(ctx context.Context, m *Msg, msgtyp int64, flags int, ring bool) (bool, error) {
	var wl wakeList
	defer q.v.guard(q.mu, &wl, nil)
	if ok, err := q.lockQuick(ctx, &wl, permRead); !ok {
		return err != nil, err
	}
	mode, typ := convertMode(msgtyp, flags)
	// As in sendLocked: the ring may have opened meanwhile.
	if ring && flags&MSG_COPY == 0 && msgtyp >= 0 && q.ring && q.v.isOpen() {
		if q.ringTake(m, mode, typ, flags&MSG_NOERROR != 0) == takeDone {
			q.afterRecv(&wl)
			q.unlock(&wl)
			q.stampRecv()
			return true, nil
		}
	}
	if err := q.closeRing(); err != nil {
		q.unlock(&wl)
		return true, err
	}
	var out outside
	ok, err := q.take(m, mode, typ, flags, clock.Now(), &wl, &out)
	if !ok && err == nil {
		if flags&IPC_NOWAIT == 0 {
			q.unlock(&wl)
			return false, nil
		}
		err = ErrEmpty
	}
	q.unlock(&wl)
	if out.s != nil {
		err = q.finishTake(&out, m)
	}
	return true, err
}

// ringReady reports whether a call needing permission need may try the
// ring: it exists, the permission is there and the queue is not removed.
// Otherwise the lock path decides (and returns the errors in Linux's
// order). A death since this handle last repaired is repaired first if
// that needs no waiting (tryRepair).
func (q *Queue) ringReady(need uint64) bool {
	if p := q.perm.Load(); p&need == 0 || uint32(p>>32) != q.seg.PermSeq() {
		return q.ringReadySlow(need)
	}
	return q.ring && (q.seg.DeadGen() == q.deadGen.Load() || q.tryRepair()) && !q.seg.Removed()
}

// ringReadySlow is ringReady with the permission cache refreshed first.
func (q *Queue) ringReadySlow(need uint64) bool {
	return q.ring && q.access()&need != 0 && (q.seg.DeadGen() == q.deadGen.Load() || q.tryRepair()) && !q.seg.Removed()
}

// tryRepair is the lazy repair of a lock-free call that finds that a
// process died since this handle last repaired. It repairs if the lock is
// free; if not, it leaves the repair pending (the generation is not
// recorded) for the next call that finds the lock free, and the call goes
// on through the ring, rather than wait for the holder: a holder that is
// stopped (SIGSTOP) would otherwise stop every call on the queue, lock-free
// ones too, as soon as any client anywhere died (chaos finding F3). It
// returns true.
//
// The ring needs no repair to be used. What the repair fixes that the
// ring could meet: a dead sender's claim at the tail, which a sender
// finds on its own (waitSender gives it back, with a CAS from the dead
// claim, as repair does); a dead lock holder's half-done flush or
// rebuild, which happens with the ring closed (ring calls take the lock
// path, which takes a dead holder over and repairs in full); and dead
// waiters, which keep the ring closed (receivers) or make receivers take
// the lock to wake them (senders), so calls that meet them take the lock
// anyway. A dead lock holder is left to the registry's eager repair or
// the next locked call; a live one is not waited for here.
func (q *Queue) tryRepair() bool {
	// A load first: a failed CAS would take the header's line from every
	// other CPU on each call while the holder keeps the lock.
	if q.mu.Held() || !q.mu.TryLock() {
		return true
	}
	wl := wakeList{section: q.mu.Enter()}
	defer q.v.guard(q.mu, &wl, nil)
	if g := q.seg.DeadGen(); g != q.deadGen.Load() {
		q.v.repair(false)
		q.deadGen.Store(g)
	}
	q.unlock(&wl)
	return true
}

// Send sends a message of type mtype (≥ 1) with text data (at most
// MaxMsg bytes), blocking while the queue is full. A cancelled ctx ends
// the wait with an error matching ctx.Err() and kernel.EINTR. Errors are
// msgsnd's: EINVAL (bad type or size; removed queue), EACCES, EIDRM (the
// queue was removed while the call waited).
func (q *Queue) Send(ctx context.Context, mtype int64, data []byte) error {
	return q.send(ctx, mtype, data, false)
}

// TrySend is Send that never blocks: ErrFull (EAGAIN) if the message does
// not fit now.
func (q *Queue) TrySend(mtype int64, data []byte) error {
	return q.send(context.Background(), mtype, data, true)
}

func (q *Queue) send(ctx context.Context, mtype int64, data []byte, nowait bool) error {
	if err := q.checkMsg(mtype, data); err != nil {
		return err
	}
	if q.closed.Load() {
		return ErrClosed
	}
	q.noteSent()
	spun, tried, waited := false, false, false
	if len(data) <= slotText && q.v.rc.tail.Load()&ringClosed == 0 && q.ringReady(permWrite) {
		tried = true
		r, s, sv := q.ringPut(mtype, data, q.qbytes())
		if r == putDone {
			q.stampSend()
			return nil
		}
		var done bool
		var err error
		if done, spun, waited, err = q.sendRing(ctx, mtype, data, nowait, r, s, sv); done {
			return err
		}
	}
	if !spun {
		if done, err := q.sendLocked(ctx, mtype, data, !tried); done {
			return err
		}
	}
	m := [1]Msg{{Type: mtype, Data: data}}
	_, err := q.sendMsgs(ctx, m[:], nowait, spun, waited)
	return err
}

// SendBatch sends every message of msgs in order, as Send would one by
// one, but takes the queue's lock once for as many as fit; it blocks while
// the queue is full. It returns how many were sent (all of them unless
// err != nil). A batch with an invalid message sends nothing (EINVAL).
func (q *Queue) SendBatch(ctx context.Context, msgs []Msg) (int, error) {
	return q.sendBatch(ctx, msgs, false)
}

// TrySendBatch sends the longest prefix of msgs that fits now and returns
// its length; ErrFull if that is not all of them.
func (q *Queue) TrySendBatch(msgs []Msg) (int, error) {
	return q.sendBatch(context.Background(), msgs, true)
}

func (q *Queue) sendBatch(ctx context.Context, msgs []Msg, nowait bool) (int, error) {
	for i := range msgs {
		if err := q.checkMsg(msgs[i].Type, msgs[i].Data); err != nil {
			return 0, err
		}
	}
	if len(msgs) == 0 {
		return 0, nil
	}
	if q.closed.Load() {
		return 0, ErrClosed
	}
	q.noteSent()
	sent := 0
	spun, waited := false, false // waited: msgs[sent]'s send slept for room
	if q.ringReady(permWrite) {
		var st spinner
		for sent < len(msgs) && len(msgs[sent].Data) <= slotText {
			r, s, sv := q.ringPut(msgs[sent].Type, msgs[sent].Data, q.qbytes())
			if r == putDone {
				sent++
				waited = false
				continue
			}
			if r == putBusy && q.waitSender(ctx, s, sv) {
				continue
			}
			if r == putFallback && !nowait && q.waitOpen(&st) {
				continue
			}
			if r != putFull || nowait {
				break
			}
			if q.ringSpin(&st, &q.v.rc.head) {
				continue
			}
			retry, err := q.sleepForRoom(ctx, uint32(len(msgs[sent].Data)), waited)
			waited = true
			if err != nil {
				st.finish(q)
				if sent > 0 {
					q.stampSend()
				}
				return sent, err
			}
			if !retry || !q.ringReady(permWrite) {
				break
			}
		}
		st.finish(q)
		spun = st.on
		if sent > 0 {
			q.stampSend()
		}
		if sent == len(msgs) {
			return sent, nil
		}
	}
	n, err := q.sendMsgs(ctx, msgs[sent:], nowait, spun, waited)
	return sent + n, err
}

func checkRecvFlags(flags int) error {
	if flags&MSG_COPY != 0 && (flags&MSG_EXCEPT != 0 || flags&IPC_NOWAIT == 0) {
		return kernel.EINVAL
	}
	return nil
}

// Recv receives a message into buf and returns its length and type.
// msgtyp selects it as msgrcv does: 0 the first message; > 0 the first of
// that type (of any other type with MSG_EXCEPT); < 0 the first of the
// lowest type ≤ |msgtyp|. flags: IPC_NOWAIT (ErrEmpty, matching ENOMSG,
// instead of blocking), MSG_NOERROR (truncate instead of E2BIG),
// MSG_EXCEPT, MSG_COPY (msgtyp is an index; copy without removing; needs
// IPC_NOWAIT). A message larger than buf without MSG_NOERROR gives E2BIG
// and stays queued. A cancelled ctx ends the wait with an error matching
// ctx.Err() and kernel.EINTR; a removed queue, EIDRM.
func (q *Queue) Recv(ctx context.Context, buf []byte, msgtyp int64, flags int) (int, int64, error) {
	if err := checkRecvFlags(flags); err != nil {
		return 0, 0, err
	}
	if q.closed.Load() {
		return 0, 0, ErrClosed
	}
	m := [1]Msg{{Data: buf}}
	var done, spun, tried bool
	var err error
	if flags&MSG_COPY == 0 && msgtyp >= 0 && q.v.rc.head.Load()&ringClosed == 0 && q.ringReady(permRead) {
		tried = true
		mode, typ := convertMode(msgtyp, flags)
		switch r := q.ringTake(&m[0], mode, typ, flags&MSG_NOERROR != 0); r {
		case takeDone:
			q.stampRecv()
			if q.v.rc.sendWake.Load() != 0 {
				q.wakeRoom()
			}
			return m[0].N, m[0].Type, nil
		case takeFallback:
		default:
			done, spun, err = q.ringRecvSlow(ctx, &m[0], mode, typ, flags, r)
		}
	}
	if !done && !spun {
		done, err = q.recvLocked(ctx, &m[0], msgtyp, flags, !tried)
	}
	if !done {
		_, err = q.recvMsgs(ctx, m[:], msgtyp, flags, spun)
	}
	if err != nil {
		return 0, 0, err
	}
	return m[0].N, m[0].Type, nil
}

// TryRecv is Recv that never blocks: ErrEmpty (ENOMSG) if no message
// matches now.
func (q *Queue) TryRecv(buf []byte, msgtyp int64, flags int) (int, int64, error) {
	return q.Recv(context.Background(), buf, msgtyp, flags|IPC_NOWAIT)
}

// RecvBatch receives into msgs[0], msgs[1], ... (each Data a buffer; Type
// and N are set) every message matching msgtyp that is there, up to
// len(msgs), taking the queue's lock once. It blocks until there is at
// least one (unless flags has IPC_NOWAIT: ErrEmpty) and returns how many it
// received. Selection and flags are Recv's; MSG_COPY is refused (EINVAL).
// A message too big for its buffer ends the batch before it: E2BIG if it
// is the first.
func (q *Queue) RecvBatch(ctx context.Context, msgs []Msg, msgtyp int64, flags int) (int, error) {
	if flags&MSG_COPY != 0 {
		return 0, kernel.EINVAL
	}
	if len(msgs) == 0 {
		return 0, nil
	}
	if q.closed.Load() {
		return 0, ErrClosed
	}
	spun := false
	if msgtyp == 0 && q.ringReady(permRead) {
		// The first message as Recv would take it, the rest as long as
		// the ring has them at once.
		done, s, err := q.ringRecv(ctx, &msgs[0], searchAny, 0, flags)
		if done {
			if err != nil {
				return 0, err
			}
			got := 1
			if len(msgs) > 1 {
				got += q.ringTakeMany(msgs[1:], flags&MSG_NOERROR != 0)
			}
			if got > 1 {
				q.stampRecv()
				if q.v.rc.sendWake.Load() != 0 {
					q.wakeRoom()
				}
			}
			return got, nil
		}
		spun = s
	}
	return q.recvMsgs(ctx, msgs, msgtyp, flags, spun)
}

// TryRecvBatch is RecvBatch with IPC_NOWAIT.
func (q *Queue) TryRecvBatch(msgs []Msg, msgtyp int64, flags int) (int, error) {
	return q.RecvBatch(context.Background(), msgs, msgtyp, flags|IPC_NOWAIT)
}
