package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	"github.com/usysv/usysv/msgq"
	"github.com/usysv/usysv/registry"
	"github.com/usysv/usysv/sem"
	"github.com/usysv/usysv/shm"
)

// producerMain: chaos-producer LEDGER(4) ID PROD LO HI NTYPES BATCH.
// Sends messages 0, 1, 2, ... of producer PROD (sizes in [LO, HI], types
// 1..NTYPES, see msgSize and msgType), BATCH at a time with SendBatch when
// BATCH > 1, and records in the ledger, right after each send returned
// success, how many it has sent. Stops when stdin ends ("X"); any other
// error is printed ("E ...", exit 3).
func producerMain(args []string) int {
	l, err := openLedger(args[:4])
	if err != nil {
		fmt.Println("E ledger", err)
		return 3
	}
	args = args[4:]
	id, prod, lo, hi, ntypes, batch := atoi(args[0]), atoi(args[1]), atoi(args[2]), atoi(args[3]), atoi(args[4]), atoi(args[5])
	q, err := msgq.OpenID(id)
	if err != nil {
		fmt.Println("E open", errName(err))
		return 3
	}
	ctx := stdinContext()
	batch = max(batch, 1)
	bufs := make([][]byte, batch)
	msgs := make([]msgq.Msg, batch)
	sent := l.sent(prod)
	mk := marker{l: l}
	for seq := uint64(0); ; seq += uint64(batch) {
		for i := range msgs {
			s := seq + uint64(i)
			mt := msgType(prod, s, ntypes)
			bufs[i] = encode(bufs[i], prod, s, mt, msgSize(prod, s, lo, hi))
			msgs[i] = msgq.Msg{Type: mt, Data: bufs[i]}
		}
		var n int
		if batch == 1 {
			if err = q.Send(ctx, msgs[0].Type, msgs[0].Data); err == nil {
				n = 1
			}
		} else {
			n, err = q.SendBatch(ctx, msgs)
		}
		if n > 0 {
			sent.Store(seq + uint64(n))
			mk.mark()
		}
		if err != nil {
			if ctx.Err() != nil {
				fmt.Println("X")
				return 0
			}
			fmt.Println("E send", errName(err))
			return 3
		}
	}
}

// consumerMain: chaos-consumer LEDGER(4) ID LANE MODE TYPE BATCH.
// Receives with msgtyp TYPE (MODE fifo: 0; type: TYPE; neg: -TYPE;
// except: TYPE with MSG_EXCEPT), BATCH at a time with RecvBatch when
// BATCH > 1, checks each message and records it in ledger lane LANE right
// after the call returned, or prints "T WHY" for a torn one. Stops when
// stdin ends ("X"); "F" (exit 5) when its lane is full.
func consumerMain(args []string) int {
	l, err := openLedger(args[:4])
	if err != nil {
		fmt.Println("E ledger", err)
		return 3
	}
	args = args[4:]
	id, lane, mode, typ, batch := atoi(args[0]), atoi(args[1]), args[2], int64(atoi(args[3])), atoi(args[4])
	q, err := msgq.OpenID(id)
	if err != nil {
		fmt.Println("E open", errName(err))
		return 3
	}
	flags := 0
	switch mode {
	case "fifo":
		typ = 0
	case "neg":
		typ = -typ
	case "except":
		flags = msgq.MSG_EXCEPT
	}
	batch = max(batch, 1)
	ctx := stdinContext()
	msgs := make([]msgq.Msg, batch)
	for i := range msgs {
		msgs[i].Data = make([]byte, q.MaxMsg())
	}
	mk := marker{l: l}
	for {
		var n int
		if batch == 1 {
			var k int
			var rt int64
			if k, rt, err = q.Recv(ctx, msgs[0].Data, typ, flags); err == nil {
				n, msgs[0].N, msgs[0].Type = 1, k, rt
			}
		} else {
			n, err = q.RecvBatch(ctx, msgs, typ, flags)
		}
		for i := 0; i < n; i++ {
			prod, seq, derr := decode(msgs[i].Data[:msgs[i].N], msgs[i].Type)
			if derr != nil {
				fmt.Printf("T %s\n", strings.ReplaceAll(derr.Error(), " ", "_"))
				continue
			}
			if !l.record(lane, prod, seq) {
				fmt.Println("F")
				return 5
			}
		}
		if n > 0 {
			mk.mark()
		}
		if err != nil {
			if ctx.Err() != nil {
				fmt.Println("X")
				return 0
			}
			fmt.Println("E recv", errName(err))
			return 3
		}
	}
}

// The semaphore set of the sem scenario: K transfer semaphores T0..TK-1,
// then L, Z, M, C and P.
//
//   - T: tokens moved between them only by atomic arrays without SEM_UNDO,
//     so their sum never changes;
//   - L and Z: a holder takes {L-1, Z+1} and gives back {L+1, Z-1}, both
//     with SEM_UNDO, so L+Z never changes and, once every holder is gone
//     (its undo applied once), L and Z are back to their initial values;
//   - M: solo holders take and give back one token with a single SEM_UNDO
//     op (the lock-free path);
//   - C: a counter incremented by single ops without SEM_UNDO (the
//     lock-free path), never checked;
//   - P: posts (single V without SEM_UNDO) taken by single blocking P ops
//     without SEM_UNDO, sem's post path (the V completes the blocked P); a
//     poster keeps it at most semPosts, and no post waits long beside a
//     blocked taker, nor P at semPosts with nobody taking (stuck).
type semLayout struct{ K int }

const (
	semTokens = 10 // initial value of each T
	semLocks  = 2  // initial L
	semSolo   = 3  // initial M
	semPosts  = 4  // most P a poster makes
)

// postStuck is how long P may be stuck before a checker calls a post
// lost: above 0 while GETNCNT(P) counts a blocked taker (the V completes a
// waiting P itself, so the two meet only while a post is under way or a
// dead poster's post is being recovered), or at semPosts, either with
// GETPID(P) unchanged (a take changes it: nobody took anything). Takers
// are restarted at once when killed, but a loaded machine may keep them
// off a CPU for a while.
const postStuck = 3 * time.Second

// postWatch is a checker's watch on P (postStuck).
type postWatch struct {
	since time.Time // when P was first seen stuck, or zero
	pid   int       // GETPID(P) then
}

// look takes a sample of P's value p, GETNCNT(P) n and GETPID(P) pid at
// now, and returns for how long P has been stuck (0 if it is not).
func (w *postWatch) look(p, n, pid int, now time.Time) time.Duration {
	switch {
	case p == 0 || n == 0 && p < semPosts || pid != w.pid:
		w.since, w.pid = time.Time{}, pid
	case w.since.IsZero():
		w.since = now
	default:
		return now.Sub(w.since)
	}
	return 0
}

func (l semLayout) L() int { return l.K }
func (l semLayout) Z() int { return l.K + 1 }
func (l semLayout) M() int { return l.K + 2 }
func (l semLayout) C() int { return l.K + 3 }
func (l semLayout) P() int { return l.K + 4 }
func (l semLayout) n() int { return l.K + 5 }

func (l semLayout) initial() []int {
	v := make([]int, l.n())
	for i := 0; i < l.K; i++ {
		v[i] = semTokens
	}
	v[l.L()], v[l.M()] = semLocks, semSolo
	return v
}

// violation says which invariant vals break, or "".
func (l semLayout) violation(vals []uint16) string {
	if len(vals) != l.n() {
		return fmt.Sprintf("%d values", len(vals))
	}
	sum := 0
	for i := 0; i < l.K; i++ {
		sum += int(vals[i])
	}
	switch {
	case sum != l.K*semTokens:
		return fmt.Sprintf("sum of T is %d, want %d", sum, l.K*semTokens)
	case int(vals[l.L()])+int(vals[l.Z()]) != semLocks:
		return fmt.Sprintf("L+Z is %d, want %d", int(vals[l.L()])+int(vals[l.Z()]), semLocks)
	case vals[l.M()] > semSolo:
		return fmt.Sprintf("M is %d, above %d", vals[l.M()], semSolo)
	case vals[l.P()] > semPosts:
		return fmt.Sprintf("P is %d, above %d", vals[l.P()], semPosts)
	}
	return ""
}

func b(num int, op int, flg int16) sem.Buf { return sem.Buf{Num: uint16(num), Op: int16(op), Flg: flg} }

// semMain: chaos-sem LEDGER(4) ID ROLE K SLOT. Roles:
//
//	mover    atomic arrays moving T tokens ({Ti-a, Tj+a}, {Ti-1, Tj-1, Tk+2}),
//	         semtimedop with a short timeout, and now and then C+1
//	bigmover arrays of 200 ops taking and giving back T tokens (it holds
//	         the set's lock longer than anyone)
//	holder   P = {L-1, Z+1} with SEM_UNDO (blocking: holders outnumber L),
//	         sometimes with a move inside the same array; holds a moment;
//	         V = {L+1, Z-1} with SEM_UNDO
//	solo     the same with one SEM_UNDO op on M (the lock-free path)
//	zero     waits for Z to be zero (semtimedop)
//	poster   P+1 without SEM_UNDO while P is below semPosts (one poster a
//	         load: the bound is checked)
//	taker    P-1 without SEM_UNDO, blocking
//	checker  GETALL in a loop, checking the invariants, and GETNCNT(P)
//	         and GETPID(P): "BAD ..." (exit 4) on a violation, or when P is
//	         stuck for postStuck
//
// Each completed operation is counted in the ledger (ops of SLOT), and a
// holder or solo records there whether it holds a token (holding of SLOT:
// 1 from its P's return until just before its V, when it holds one for
// sure; 2 during the V, when it may have given it back already; else 0).
// Stops when stdin ends ("X"); a holder that holds a token then exits
// holding it, so that its undo gives it back.
func semMain(args []string) int {
	l, err := openLedger(args[:4])
	if err != nil {
		fmt.Println("E ledger", err)
		return 3
	}
	args = args[4:]
	id, role, lay, slot := atoi(args[0]), args[1], semLayout{K: atoi(args[2])}, atoi(args[3])
	s, err := sem.OpenID(id)
	if err != nil {
		fmt.Println("E open", errName(err))
		return 3
	}
	ctx := stdinContext()
	r := rand.New(rand.NewPCG(uint64(os.Getpid()), uint64(time.Now().UnixNano())))
	pick2 := func() (int, int) {
		i := r.IntN(lay.K)
		j := (i + 1 + r.IntN(lay.K-1)) % lay.K
		return i, j
	}
	ops, holding := l.ops(slot), l.holding(slot)
	mk := marker{l: l}
	done := func() {
		ops.Add(1)
		mk.mark()
	}
	fail := func(what string, err error) int {
		if ctx.Err() != nil {
			fmt.Println("X")
			return 0
		}
		fmt.Println("E", what, errName(err))
		return 3
	}
	const timeout = 30 * time.Millisecond
	var watch postWatch // checker
	for ctx.Err() == nil {
		switch role {
		case "mover":
			var err error
			switch k := r.IntN(10); {
			case k < 6:
				i, j := pick2()
				a := 1 + r.IntN(3)
				err = s.TimedOp(timeout, b(i, -a, 0), b(j, a, 0))
			case k < 9:
				i, j := pick2()
				k := r.IntN(lay.K)
				err = s.TimedOp(timeout, b(i, -1, 0), b(j, -1, 0), b(k, 2, 0))
			default:
				// A lock-free op; C wraps before SEMVMX.
				if err = s.Op(ctx, b(lay.C(), 1, 0)); isErr(err, "ERANGE") {
					err = s.Op(ctx, b(lay.C(), -sem.SEMVMX/2, 0))
				}
			}
			if err != nil && !isErr(err, "EAGAIN") {
				return fail("mover", err)
			}
			if err == nil {
				done()
			}
		case "bigmover":
			// A long array (it holds the lock a while): take and give back
			// one token of each T, a hundred times over.
			ops := make([]sem.Buf, 0, 200)
			for k := 0; k < 100; k++ {
				i := k % lay.K
				ops = append(ops, b(i, -1, 0), b(i, 1, 0))
			}
			err := s.TimedOp(timeout, ops...)
			if err != nil && !isErr(err, "EAGAIN") {
				return fail("bigmover", err)
			}
			if err == nil {
				done()
			}
		case "holder", "solo":
			p := []sem.Buf{b(lay.L(), -1, sem.SEM_UNDO), b(lay.Z(), 1, sem.SEM_UNDO)}
			v := []sem.Buf{b(lay.L(), 1, sem.SEM_UNDO), b(lay.Z(), -1, sem.SEM_UNDO)}
			if role == "solo" {
				p, v = []sem.Buf{b(lay.M(), -1, sem.SEM_UNDO)}, []sem.Buf{b(lay.M(), 1, sem.SEM_UNDO)}
			} else if r.IntN(3) == 0 {
				i, j := pick2()
				p = append(p, b(i, -1, 0), b(j, 1, 0))
			}
			if err := s.Op(ctx, p...); err != nil {
				return fail("P", err)
			}
			holding.Store(1)
			done()
			if r.IntN(4) == 0 {
				time.Sleep(time.Duration(r.IntN(2000)) * time.Microsecond)
			}
			if ctx.Err() != nil {
				break // exit holding: the undo gives the token back
			}
			holding.Store(2) // giving it back: from here it may be gone
			if err := s.Op(context.Background(), v...); err != nil {
				return fail("V", err)
			}
			holding.Store(0)
			done()
		case "zero":
			err := s.TimedOp(timeout, b(lay.Z(), 0, 0))
			if err != nil && !isErr(err, "EAGAIN") {
				return fail("zero", err)
			}
			if err == nil {
				done()
			}
		case "poster":
			v, err := s.GetVal(lay.P())
			if err != nil {
				return fail("getval", err)
			}
			if v >= semPosts {
				time.Sleep(100 * time.Microsecond)
				break
			}
			if err := s.Op(ctx, b(lay.P(), 1, 0)); err != nil {
				return fail("post", err)
			}
			done()
		case "taker":
			if err := s.Op(ctx, b(lay.P(), -1, 0)); err != nil {
				return fail("take", err)
			}
			done()
		case "checker":
			v, err := s.GetAll()
			if err != nil {
				return fail("getall", err)
			}
			if why := lay.violation(v); why != "" {
				fmt.Printf("BAD %s: %s\n", strings.ReplaceAll(why, " ", "_"), joinInts(v))
				return 4
			}
			n, err := s.GetNcnt(lay.P())
			if err != nil {
				return fail("getncnt", err)
			}
			pid, err := s.GetPid(lay.P())
			if err != nil {
				return fail("getpid", err)
			}
			if d := watch.look(int(v[lay.P()]), n, pid, time.Now()); d > postStuck {
				fmt.Printf("BAD P_stuck_at_%d_with_%d_blocked_takers_for_%v: %s\n", v[lay.P()], n, d.Round(time.Millisecond), joinInts(v))
				return 4
			}
			done()
		default:
			fmt.Println("E role", role)
			return 2
		}
	}
	fmt.Println("X")
	return 0
}

func isErr(err error, name string) bool { return errName(err) == name }

// registryRemove is IPC_RMID straight through the registry client: what
// msgq.Remove and sem.Remove do, without mapping the object.
func registryRemove(kind shm.Kind, id int) error {
	c, err := registry.Default()
	if err != nil {
		return err
	}
	return c.Remove(kind, id)
}

// regclientMain: chaos-regclient KIND. Loops over the registry's calls on
// objects of its own: Get(key, IPC_CREAT|IPC_EXCL), Stat, Remove, printing
// "k KEY" first and then "g|s|r START END RESULT" for each call (wall-clock
// ns). A creating Get whose
// connection broke (ECONNLOST: it may or may not have created) is followed
// by a Get without IPC_EXCL, so that nothing leaks. Stops when stdin ends.
func regclientMain(args []string) int {
	ctx := stdinContext()
	kind := args[0]
	get := func(key, flags int) (int, error) {
		if kind == "q" {
			return msgq.Get(key, flags)
		}
		return sem.Get(key, 1, flags)
	}
	// Stat and Remove through a handle closed right after: the
	// package-level msgq.Stat/sem.Stat keep a mapping (and so the removed
	// kernel segment) per object for the life of the process (FINDINGS.md,
	// F2), which would exhaust the host's SHMMNI here.
	stat := func(id int) error {
		if kind == "q" {
			q, err := msgq.OpenID(id)
			if err != nil {
				return err
			}
			defer q.Close()
			_, err = q.Stat()
			return err
		}
		s, err := sem.OpenID(id)
		if err != nil {
			return err
		}
		defer s.Close()
		_, err = s.Stat()
		return err
	}
	remove := func(id int) error {
		if kind == "q" {
			return registryRemove(shm.KindMsg, id)
		}
		return registryRemove(shm.KindSem, id)
	}
	base := (os.Getpid() & 0x7fff) << 16
	report := func(op string, t0 int64, err error) {
		fmt.Println(op, t0, now(), errName(err))
	}
	for i := 1; ctx.Err() == nil; i++ {
		key := base | i&0xffff
		if key == 0 {
			continue
		}
		fmt.Println("k", key) // in case it dies with the object made
		t0 := now()
		id, err := get(key, sem.IPC_CREAT|sem.IPC_EXCL|0o600)
		report("g", t0, err)
		for err != nil {
			// Lost in flight, or timed out: find it (or create it) by key so
			// that it is removed below.
			time.Sleep(time.Millisecond)
			t0 = now()
			id, err = get(key, sem.IPC_CREAT|0o600)
			report("g", t0, err)
		}
		t0 = now()
		err = stat(id)
		report("s", t0, err)
		for {
			t0 = now()
			err = remove(id)
			report("r", t0, err)
			if err == nil {
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
	fmt.Println("X")
	return 0
}

// spinMain: chaos-spin KIND ID ARG. Runs one operation in a loop —
// KIND q: TrySend then TryRecv of type ARG on queue ID; KIND sem: the array
// {ARG-1, ARG+1} on set ID (it takes the set's lock) — and reports every
// call that took
// longer than 0.5 ms as "G START END" (wall-clock ns), plus "tick N" every
// 20 ms. It is how the tests see a process blocked behind a lock.
func spinMain(args []string) int {
	kind, id, arg := args[0], atoi(args[1]), atoi(args[2])
	ctx := stdinContext()
	var op func() error
	switch kind {
	case "q":
		q, err := msgq.OpenID(id)
		if err != nil {
			fmt.Println("E open", errName(err))
			return 3
		}
		buf := make([]byte, 64)
		op = func() error {
			if err := q.TrySend(int64(arg), []byte("spin")); err != nil && !errors.Is(err, msgq.ErrFull) {
				return err
			}
			if _, _, err := q.TryRecv(buf, int64(arg), 0); err != nil && !errors.Is(err, msgq.ErrEmpty) {
				return err
			}
			return nil
		}
	case "sem":
		s, err := sem.OpenID(id)
		if err != nil {
			fmt.Println("E open", errName(err))
			return 3
		}
		// An array (a single op would take the lock-free path and never
		// meet the lock).
		op = func() error { return s.Op(ctx, b(arg, -1, 0), b(arg, 1, 0)) }
	}
	fmt.Println("ready")
	n, tick := 0, time.Now()
	for ctx.Err() == nil {
		t0 := time.Now()
		if err := op(); err != nil {
			if ctx.Err() != nil {
				break
			}
			fmt.Println("E", errName(err))
			return 3
		}
		t1 := time.Now()
		n++
		if t1.Sub(t0) > 500*time.Microsecond {
			fmt.Println("G", t0.UnixNano(), t1.UnixNano())
		}
		if t1.Sub(tick) > 20*time.Millisecond {
			fmt.Println("tick", n)
			tick = t1
		}
	}
	fmt.Println("X")
	return 0
}
