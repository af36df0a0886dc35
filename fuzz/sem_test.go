package fuzz

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/usysv/usysv/internal/testutil"
	"github.com/usysv/usysv/kernel"
	"github.com/usysv/usysv/registry"
	"github.com/usysv/usysv/sem"
	"github.com/usysv/usysv/shm"
)

// FuzzSemModel runs a random program of semaphore calls (see
// decodeSemStep) on a usysv set through its handle (*sem.Array: Op with a
// context, TryOp, TimedOp and the semctl methods) and on semModel, and
// compares every result, errno and value; after every step that can change
// the set it compares the whole state too (values, sempids, counts,
// IPC_STAT). An op array that would sleep is issued with a context that
// expires after 200µs: usysv must queue it, give up with EINTR and leave
// nothing applied.
func FuzzSemModel(f *testing.F) {
	f.Cleanup(drainPools)
	keepCrashReports(f)
	f.Fuzz(func(t *testing.T, data []byte) { runSem(t, data, false) })
}

// FuzzSemDiff runs the same programs through the contract functions
// (sem.Op, sem.TimedOp, sem.GetVal, ..., sem.Remove) and through the
// kernel's own SysV semaphores (package kernel), and checks every result,
// errno and value against the kernel, and the model against the kernel
// (so that FuzzSemModel's oracle is itself checked). An op array that
// would sleep is issued with semtimedop and a zero timeout.
func FuzzSemDiff(f *testing.F) {
	f.Cleanup(drainPools)
	useNobody(f)
	keepCrashReports(f)
	f.Fuzz(func(t *testing.T, data []byte) { runSem(t, data, true) })
}

// semNsems are the set sizes a program's first byte chooses from; 65 is
// beyond the kernel's 64-bit duplicate mask (perform_atomic_semop_slow).
var semNsems = [8]int{1, 2, 3, 4, 5, 8, 16, 65}

// maxSteps bounds a program, to keep each execution short.
const maxSteps = 100

type semImpl interface {
	name() string
	step(st *semStep) string
}

// runSem decodes and runs one program: against the model (FuzzSemModel)
// or against the kernel and the model (FuzzSemDiff, diff true).
func runSem(t *testing.T, data []byte, diff bool) {
	requireRoot(t)
	defer guard(t, corpusEntry(data))()
	p := &prog{b: data}
	h0, h1 := p.u8(), p.u8()
	nsems := semNsems[h0%8]
	fresh := h1&1 != 0
	mode := semModes[h1>>1&7]
	self := os.Getpid()

	var u *semUsysv
	key := 0
	if fresh {
		key = testutil.Key(t)
		u = newFreshSem(t, key, nsems, mode, !diff)
	} else {
		mode = 0o600
		u = pooledSem(t, nsems, !diff)
	}
	model := newSemModel(nsems, key, mode, self, fresh)
	impls := []semImpl{model, u}
	if diff {
		impls = []semImpl{newKernelSem(t, key, nsems, mode, fresh), u, model}
	}
	other := testutil.Key(t)

	var tr trace
	var waiters []*semWaiter
	var nobody nobodyProc
	for n := 0; n < maxSteps && p.more(); n++ {
		st := decodeSemStep(p, nsems)
		st.other = other
		st.otime = fresh
		if st.kind == sRemove && !fresh {
			continue // pooled sets outlive the program
		}
		if st.nobody {
			// Nobody steps need the kernel (FuzzSemDiff); the waiters are
			// this process's. nobody's ops have no SEM_UNDO: its
			// adjustments would be applied when the helper exits, after
			// the program, and the model follows this process's semadj
			// only.
			st.nobody = diff && !st.wait
		}
		if st.nobody {
			for i := range st.ops {
				st.ops[i].Flg &^= sem.SEM_UNDO
			}
		}
		// A waiter's array is at most 16 ops, so that 8 of them fit usysv's
		// documented arena of 500 queued sembufs (doc.go: beyond it,
		// ENOSPC where Linux allocates).
		if st.wait && !(diff && fresh && !impls[0].(*semKernel).removed && !st.badID && len(waiters) < maxWaiters &&
			len(st.ops) >= 1 && len(st.ops) <= 16) {
			st.wait = false // an ordinary semop
		}
		targets := impls
		if len(waiters) > 0 {
			// Wakers apply waiters' arrays, which the model does not know:
			// from the first waiter on it only predicts sleeping, on the
			// kernel's values, and is not compared.
			targets = impls[:2]
			model.syncValues(t, impls[0].(*semKernel))
		}
		if st.wait {
			tr.add("%s", st)
			w := spawnSemWaiter(t, st, impls[0].(*semKernel), u)
			tr.add("    -> %s", w.started[0])
			if w.started[0] != w.started[1] {
				t.Fatalf("%s: kernel says %q, usysv says %q\nprogram (nsems %d, fresh %t):\n%s",
					st, w.started[0], w.started[1], nsems, fresh, &tr)
			}
			waiters = append(waiters, w)
			checkSemState(t, &tr, impls[0], impls[1], nsems)
			continue
		}
		if st.kind == sOp && st.call == callOp && model.sleeps(st) {
			if diff {
				st.call = callTimed // semtimedop({0,0}): EAGAIN at once
			} else {
				st.call = callCtx
			}
		}
		if diff {
			if st.call == callTimed && st.timeout < 0 {
				st.timeout = 0 // the kernel package cannot pass an invalid timespec
			}
		}
		tr.add("%s", st)
		res := make([]string, len(targets))
		for i, im := range targets {
			if st.nobody && i < 2 {
				if i == 0 {
					res[0], res[1] = nobody.sem(t, st, impls[0].(*semKernel), u, model)
				}
				continue
			}
			res[i] = im.step(st)
		}
		tr.add("    -> %s", res[0])
		for i := 1; i < len(res); i++ {
			if res[i] != res[0] {
				t.Fatalf("%s: %s says %q, %s says %q\nprogram (nsems %d, fresh %t):\n%s",
					st, targets[0].name(), res[0], targets[i].name(), res[i], nsems, fresh, &tr)
			}
		}
		if !diff && changes(st, res[0]) {
			checkSemState(t, &tr, model, u, nsems)
		}
		// Against the kernel after every change, not only at the end: a
		// wrong sempid or count that a later step overwrites shows here.
		if len(waiters) > 0 || diff && changes(st, res[0]) {
			checkSemState(t, &tr, impls[0], impls[1], nsems)
		}
	}
	if len(waiters) > 0 {
		finishSemWaiters(t, &tr, waiters, impls[0].(*semKernel), u)
	}
	if testing.Verbose() && os.Getenv("USYSV_FUZZ_TRACE") == "1" {
		t.Logf("program:\n%s", &tr)
	}
	checkSemState(t, &tr, impls[0], impls[1], nsems)
	if diff && len(waiters) == 0 {
		checkSemState(t, &tr, impls[0], impls[2], nsems)
	}
}

// Waiters (FuzzSemDiff, fresh sets only): an op array issued in a goroutine
// of its own with a long timeout, on the kernel and on usysv, and left
// blocked; later steps wake it (or not), and the removal of the set at the
// end of the program ends the rest with EIDRM. A waiter is started only
// once the previous one is queued (it shows in GETNCNT + GETZCNT), so the
// queue order is the program's; the kernel, and usysv, apply a woken
// waiter's array inside the waker's call, so the state after each step is
// deterministic and compared; the waiters' own results are compared at the
// end.
const (
	maxWaiters    = 8
	waiterTimeout = 6 * time.Second // longer than any program; removal ends them
)

type semWaiter struct {
	st      *semStep
	started [2]string      // "queued", or the result if it did not block
	done    [2]chan string // kernel, usysv
}

// spawnSemWaiter starts st on the kernel and on usysv and waits until each
// is queued or has returned.
func spawnSemWaiter(t *testing.T, st *semStep, k *semKernel, u *semUsysv) *semWaiter {
	w := &semWaiter{st: st}
	// Until every waiter has returned, closing the handle would unmap
	// memory under them: if the program fails before, the handle is leaked.
	u.keepOpen = true
	runs := [2]func() error{
		func() error { return kernel.Semtimedop(k.id, st.ops, waiterTimeout) },
		func() error { return sem.TimedOp(u.id, st.ops, waiterTimeout) },
	}
	if st.call == callTry {
		// No timeout at all: only a wake-up or the removal ends it.
		runs[0] = func() error { return kernel.Semop(k.id, st.ops) }
		runs[1] = func() error { return sem.Op(u.id, st.ops) }
	}
	counts := [2]func() (int, error){k.waiting, u.waiting}
	for i := range runs {
		before, err := counts[i]()
		if err != nil {
			t.Fatalf("counting waiters (%s): %v", [2]string{"kernel", "usysv"}[i], err)
		}
		w.done[i] = make(chan string, 1)
		go func() { w.done[i] <- errno(runs[i]()) }()
		deadline := time.Now().Add(callTimeout)
		for w.started[i] == "" {
			select {
			case r := <-w.done[i]:
				w.started[i] = r
				w.done[i] <- r
				continue
			default:
			}
			n, err := counts[i]()
			if err == nil && n == before+1 {
				// Read again: the sum is read one semaphore and count
				// at a time, so a queued waiter that the new call moves
				// from GETNCNT to GETZCNT while it is being read shows
				// as one more (a call that never queues, counted queued).
				n, err = counts[i]()
			}
			switch {
			case err != nil:
				t.Fatalf("counting waiters (%s): %v", [2]string{"kernel", "usysv"}[i], err)
			case n == before+1:
				w.started[i] = "queued"
			case time.Now().After(deadline):
				w.started[i] = fmt.Sprintf("neither returned nor counted in GETNCNT/GETZCNT after %v (%d counted, %d before)", callTimeout, n, before)
			default:
				time.Sleep(20 * time.Microsecond)
			}
		}
	}
	return w
}

// finishSemWaiters removes the set (if the program did not) and compares
// every waiter's result.
func finishSemWaiters(t *testing.T, tr *trace, ws []*semWaiter, k *semKernel, u *semUsysv) {
	if !k.removed {
		st := &semStep{kind: sRemove}
		tr.add("IPC_RMID (end of program)")
		rk, ru := k.step(st), u.step(st)
		tr.add("    -> %s", rk)
		if rk != ru {
			t.Fatalf("IPC_RMID: kernel says %q, usysv says %q\nprogram:\n%s", rk, ru, tr)
		}
	}
	for i, w := range ws {
		var res [2]string
		for j := range res {
			select {
			case res[j] = <-w.done[j]:
			case <-time.After(callTimeout):
				res[j] = "still blocked after IPC_RMID (stacks: " + dumpStacks(t, "blocked-waiter") + ")"
			}
		}
		tr.add("waiter %d %s -> %s", i, w.st, res[0])
		if res[0] != res[1] {
			t.Fatalf("waiter %d %s: kernel says %q, usysv says %q\nprogram:\n%s", i, w.st, res[0], res[1], tr)
		}
	}
	u.keepOpen = false
}

// waiting is the number of queued waiters: the sum of GETNCNT and GETZCNT
// (each waiter counts once, on the semaphore it blocks on).
func (k *semKernel) waiting() (int, error) {
	return sumCounts(k.id, kernel.SemctlGetNcnt, kernel.SemctlGetZcnt)
}

func (u *semUsysv) waiting() (int, error) {
	return sumCounts(u.id, sem.GetNcnt, sem.GetZcnt)
}

func sumCounts(id int, ncnt, zcnt func(id, num int) (int, error)) (int, error) {
	total := 0
	for i := 0; ; i++ {
		n, err := ncnt(id, i)
		if errors.Is(err, kernel.EINVAL) && i > 0 {
			return total, nil
		}
		if err != nil {
			return 0, err
		}
		z, err := zcnt(id, i)
		if err != nil {
			return 0, err
		}
		total += n + z
	}
}

func changes(st *semStep, res string) bool {
	return res == "ok" && (st.kind == sOp || st.kind == sSetVal || st.kind == sSetAll || st.kind == sSet)
}

// checkSemState compares everything observable of the set: values,
// sempids and counts (of the first 8 semaphores) and IPC_STAT.
func checkSemState(t *testing.T, tr *trace, a, b semImpl, nsems int) {
	t.Helper()
	steps := []*semStep{{kind: sGetAll}, {kind: sStat}}
	for i := 0; i < nsems && i < 8; i++ {
		steps = append(steps, &semStep{kind: sGetPid, num: i}, &semStep{kind: sGetNcnt, num: i}, &semStep{kind: sGetZcnt, num: i})
	}
	for _, st := range steps {
		ra, rb := a.step(st), b.step(st)
		if ra != rb {
			t.Fatalf("state check %s: %s says %q, %s says %q\nprogram:\n%s", st, a.name(), ra, b.name(), rb, tr)
		}
	}
}

func requireRoot(t *testing.T) {
	if kernel.Geteuid() != 0 {
		t.Skip("the models assume root (CAP_IPC_OWNER, CAP_SYS_ADMIN): no EACCES, no EPERM")
	}
}

// semKernel runs steps on a kernel SysV semaphore set.
type semKernel struct {
	id      int
	key     int
	removed bool
}

func newKernelSem(t *testing.T, key, nsems int, mode uint32, fresh bool) *semKernel {
	flags := int(mode)
	if fresh {
		flags |= kernel.IPC_CREAT | kernel.IPC_EXCL
	}
	id, err := kernel.Semget(key, nsems, flags)
	if err != nil {
		t.Fatalf("kernel semget: %v", err)
	}
	testutil.Track(t, "sem", id)
	if !fresh { // the state pooled usysv sets are reset to
		if err := kernel.SemctlSetAll(id, make([]uint16, nsems)); err != nil {
			t.Fatalf("kernel SETALL: %v", err)
		}
	}
	return &semKernel{id: id, key: key}
}

func (k *semKernel) name() string { return "kernel" }

func (k *semKernel) step(st *semStep) string {
	id := k.id
	if st.badID {
		id = -1
	}
	w := watch(callTimeout, func() { _ = kernel.SemctlRemove(k.id) })
	res := k.do(st, id)
	if w.stop() {
		return "HUNG (watchdog removed the set): " + res
	}
	return res
}

func (k *semKernel) do(st *semStep, id int) string {
	switch st.kind {
	case sOp:
		switch st.call {
		case callOp:
			return errno(kernel.Semop(id, st.ops))
		case callTry:
			return errno(kernel.Semop(id, withNowait(st.ops)))
		case callTimed:
			return errno(kernel.Semtimedop(id, st.ops, st.timeout))
		}
		return "kernel: no handle call"
	case sSetVal:
		return errno(kernel.SemctlSetVal(id, st.num, st.val))
	case sSetAll:
		return errno(kernel.SemctlSetAll(id, st.vals))
	case sGetVal:
		return intResult(kernel.SemctlGetVal(id, st.num))
	case sGetPid:
		return intResult(kernel.SemctlGetPid(id, st.num))
	case sGetNcnt:
		return intResult(kernel.SemctlGetNcnt(id, st.num))
	case sGetZcnt:
		return intResult(kernel.SemctlGetZcnt(id, st.num))
	case sGetAll:
		v, err := kernel.SemctlGetAll(id)
		if err != nil {
			return errno(err)
		}
		return fmt.Sprintf("ok %v", v)
	case sStat:
		ds, err := kernel.SemctlStat(id)
		if err != nil {
			return errno(err)
		}
		return semStatString(ds, ds.Otime != 0, st.otime)
	case sSet:
		return errno(kernel.SemctlSet(id, semDS(st)))
	case sGet:
		nid, err := kernel.Semget(st.getKey(k.key), st.nsems, st.flags)
		if err != nil {
			return errno(err)
		}
		if nid == k.id && !k.removed {
			return "ok same"
		}
		if err := kernel.SemctlRemove(nid); err != nil {
			return "kernel: removing the set semget made: " + errno(err)
		}
		return "ok new"
	case sRemove:
		err := kernel.SemctlRemove(id)
		if err == nil {
			k.removed = true
		}
		return errno(err)
	}
	return "kernel: unknown step"
}

func withNowait(ops []sem.Buf) []sem.Buf {
	cp := make([]sem.Buf, len(ops))
	for i, b := range ops {
		b.Flg |= sem.IPC_NOWAIT
		cp[i] = b
	}
	return cp
}

func intResult(v int, err error) string {
	if err != nil {
		return errno(err)
	}
	return fmt.Sprintf("ok %d", v)
}

func semDS(st *semStep) sem.DS {
	return sem.DS{Perm: registry.Perm{UID: st.uid, GID: st.gid, Mode: st.mode}}
}

// semUsysv runs steps on a usysv set: through the handle h when there is
// one, else (and for id -1, and for "alt" steps after IPC_RMID) through
// the contract functions with the id.
type semUsysv struct {
	id       int
	h        *sem.Array
	key      int
	removed  bool
	pooled   *pooledSemSet
	keepOpen bool // a call on h never returned: never close it
}

func (u *semUsysv) name() string { return "usysv" }

func (u *semUsysv) step(st *semStep) string {
	w := watch(callTimeout, func() {
		if c, err := registry.Default(); err == nil {
			_ = c.Remove(shm.KindSem, u.id)
		}
	})
	res := u.do(st)
	if w.stop() {
		if u.pooled != nil {
			u.pooled.dead = true
		}
		return "HUNG (watchdog removed the set): " + res
	}
	return res
}

func (u *semUsysv) do(st *semStep) string {
	if st.kind == sGet {
		return u.get(st)
	}
	if u.h == nil || st.badID || (u.removed && st.alt) {
		return u.pkg(st)
	}
	h := u.h
	switch st.kind {
	case sOp:
		switch st.call {
		case callOp:
			return errno(h.Op(context.Background(), st.ops...))
		case callTry:
			return errno(h.TryOp(st.ops...))
		case callTimed:
			return errno(h.TimedOp(st.timeout, st.ops...))
		case callCtx:
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Microsecond)
			err := h.Op(ctx, st.ops...)
			cancel()
			if errors.Is(err, kernel.EINTR) && !errors.Is(err, context.DeadlineExceeded) {
				return "EINTR not matching ctx.Err(): " + err.Error()
			}
			return errno(err)
		}
	case sSetVal:
		return errno(h.SetVal(st.num, st.val))
	case sSetAll:
		return errno(h.SetAll(st.vals))
	case sGetVal:
		return intResult(h.GetVal(st.num))
	case sGetPid:
		return intResult(h.GetPid(st.num))
	case sGetNcnt:
		return intResult(h.GetNcnt(st.num))
	case sGetZcnt:
		return intResult(h.GetZcnt(st.num))
	case sGetAll:
		v, err := h.GetAll()
		if err != nil {
			return errno(err)
		}
		return fmt.Sprintf("ok %v", v)
	case sStat:
		ds, err := h.Stat()
		if err != nil {
			return errno(err)
		}
		return semStatString(ds, ds.Otime != 0, st.otime)
	case sSet:
		if u.pooled != nil {
			u.pooled.permDirty = true
		}
		return errno(h.Set(semDS(st)))
	case sRemove:
		if st.alt {
			return u.pkg(st) // sem.Remove itself, on a live set
		}
		err := h.Remove()
		if err == nil {
			u.removed = true
		}
		return errno(err)
	}
	return "usysv: unknown step"
}

// pkg runs a step through the contract functions.
func (u *semUsysv) pkg(st *semStep) string {
	id := u.id
	if st.badID {
		id = -1
	}
	switch st.kind {
	case sOp:
		switch st.call {
		case callOp:
			return errno(sem.Op(id, st.ops))
		case callTry:
			return errno(sem.Op(id, withNowait(st.ops)))
		case callTimed:
			return errno(sem.TimedOp(id, st.ops, st.timeout))
		case callCtx:
			return errno(sem.TimedOp(id, st.ops, 200*time.Microsecond))
		}
	case sSetVal:
		return errno(sem.SetVal(id, st.num, st.val))
	case sSetAll:
		return errno(sem.SetAll(id, st.vals))
	case sGetVal:
		return intResult(sem.GetVal(id, st.num))
	case sGetPid:
		return intResult(sem.GetPid(id, st.num))
	case sGetNcnt:
		return intResult(sem.GetNcnt(id, st.num))
	case sGetZcnt:
		return intResult(sem.GetZcnt(id, st.num))
	case sGetAll:
		v, err := sem.GetAll(id)
		if err != nil {
			return errno(err)
		}
		return fmt.Sprintf("ok %v", v)
	case sStat:
		ds, err := sem.Stat(id)
		if err != nil {
			return errno(err)
		}
		return semStatString(ds, ds.Otime != 0, st.otime)
	case sSet:
		if u.pooled != nil && !st.badID {
			u.pooled.permDirty = true
		}
		return errno(sem.Set(id, semDS(st)))
	case sRemove:
		err := sem.Remove(id)
		if err == nil && !st.badID {
			u.removed = true
		}
		return errno(err)
	}
	return "usysv: unknown step"
}

// get is semget through sem.Get. A set it creates is removed at once.
func (u *semUsysv) get(st *semStep) string {
	nid, err := sem.Get(st.getKey(u.key), st.nsems, st.flags)
	if err != nil {
		return errno(err)
	}
	if nid == u.id && !u.removed {
		return "ok same"
	}
	if err := removeSemByID(nid); err != nil {
		return "usysv: removing the set semget made: " + errno(err)
	}
	return "ok new"
}

// removeSemByID removes a set through the contract function, which also
// drops the handle the contract functions cached for it; the registry's
// Remove would leave that handle mapped until a call through the id finds
// the set gone.
func removeSemByID(id int) error { return sem.Remove(id) }

// newFreshSem creates a set with key for one program, used through a
// handle of its own (handle: FuzzSemModel) or through the contract
// functions (FuzzSemDiff); the set is removed, and the handle closed, when
// the program ends.
func newFreshSem(t *testing.T, key, nsems int, mode uint32, handle bool) *semUsysv {
	id, err := sem.Get(key, nsems, sem.IPC_CREAT|sem.IPC_EXCL|int(mode))
	if err != nil {
		setupFailed(t, "sem.Get", err)
	}
	u := &semUsysv{id: id, key: key}
	if handle {
		if u.h, err = sem.OpenID(id); err != nil {
			_ = removeSemByID(id)
			t.Fatalf("sem.OpenID: %v", err)
		}
	}
	t.Cleanup(func() {
		if !u.removed {
			if err := removeSemByID(id); err != nil {
				t.Errorf("removing set %d: %v", id, err)
			}
		}
		if u.h != nil && !u.keepOpen {
			_ = u.h.Close()
		}
	})
	return u
}

// Pooled sets: creating a usysv set costs a registry round trip and a
// kernel segment, so most programs run on one set per size, kept for the
// process and reset (SETALL of zeros, which also clears semadj; IPC_SET back to
// 0/0/0600) before each program. drainPools removes them when the target
// ends.
type pooledSemSet struct {
	id        int
	h         *sem.Array
	nsems     int
	permDirty bool
	dead      bool
}

var pools struct {
	sync.Mutex
	sems map[int]*pooledSemSet
	msgs map[int]*pooledQueue
}

func pooledSem(t *testing.T, nsems int, handle bool) *semUsysv {
	pools.Lock()
	defer pools.Unlock()
	if pools.sems == nil {
		pools.sems = make(map[int]*pooledSemSet)
	}
	ps := pools.sems[nsems]
	if ps != nil && !ps.dead {
		if err := resetPooledSem(ps); err != nil {
			t.Logf("pooled set %d: reset: %v; making another", ps.id, err)
			ps.dead = true
		}
	}
	if ps == nil || ps.dead {
		if ps != nil {
			_ = removeSemByID(ps.id)
			_ = ps.h.Close()
		}
		id, err := sem.Get(sem.IPC_PRIVATE, nsems, 0o600)
		if err != nil {
			setupFailed(t, "sem.Get", err)
		}
		h, err := sem.OpenID(id)
		if err != nil {
			_ = removeSemByID(id)
			t.Fatalf("sem.OpenID: %v", err)
		}
		ps = &pooledSemSet{id: id, h: h, nsems: nsems}
		pools.sems[nsems] = ps
		if err := sem.SetAll(id, make([]uint16, nsems)); err != nil {
			t.Fatalf("sem.SetAll: %v", err)
		}
	}
	u := &semUsysv{id: ps.id, pooled: ps}
	if handle {
		u.h = ps.h
	}
	return u
}

func resetPooledSem(ps *pooledSemSet) error {
	if err := sem.SetAll(ps.id, make([]uint16, ps.nsems)); err != nil {
		return err
	}
	if ps.permDirty {
		if err := sem.Set(ps.id, sem.DS{Perm: registry.Perm{Mode: 0o600}}); err != nil {
			return err
		}
		ps.permDirty = false
	}
	return nil
}

// drainPools removes every pooled object; the targets run it when they end
// (f.Cleanup), so that testutil.Main's leak check finds nothing.
func drainPools() {
	pools.Lock()
	defer pools.Unlock()
	var errs []string
	for n, ps := range pools.sems {
		if err := removeSemByID(ps.id); err != nil && !ps.dead {
			errs = append(errs, fmt.Sprintf("set %d: %v", ps.id, err))
		}
		_ = ps.h.Close()
		delete(pools.sems, n)
	}
	for n, pq := range pools.msgs {
		if err := msgqRemove(pq.id); err != nil && !pq.dead {
			errs = append(errs, fmt.Sprintf("queue %d: %v", pq.id, err))
		}
		pq.close()
		delete(pools.msgs, n)
	}
	if len(errs) > 0 {
		fmt.Fprintln(os.Stderr, "fuzz: removing pooled objects:", strings.Join(errs, "; "))
	}
}
