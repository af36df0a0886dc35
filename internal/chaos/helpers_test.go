package chaos

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/usysv/usysv/internal/testutil"
	"github.com/usysv/usysv/kernel"
	"github.com/usysv/usysv/msgq"
	"github.com/usysv/usysv/registry"
	"github.com/usysv/usysv/sem"
	"github.com/usysv/usysv/shm"
)

// The helper processes. Every one of them talks to the registry named by
// USYSV_SOCKET (its cluster's) and prints one line per event on stdout.
//
//	chaos-host MODE     the registry host: "embedded" (a client that hosts
//	                    the registry, as every usysv process may, and then
//	                    serves ctl commands) or "daemon" (registry.NewServer
//	                    and Serve, what cmd/usysvd runs, with the kinds'
//	                    repair hooks linked in)
//	chaos-ctl           a client serving ctl commands (see ctl)
//	chaos-producer ...  msgq producer (producerMain)
//	chaos-consumer ...  msgq consumer (consumerMain)
//	chaos-sem ...       semaphore worker (semMain)
//	chaos-regclient     registry Get/Stat/Remove loop (regclientMain)
//	chaos-spin ...      an operation in a loop, reporting stalls (spinMain)
func init() {
	testutil.RegisterHelper("chaos-host", hostMain)
	testutil.RegisterHelper("chaos-ctl", func([]string) int {
		if _, err := registry.Default(); err != nil {
			fmt.Println("error", err)
			return 1
		}
		fmt.Println("ready")
		return ctlLoop()
	})
	testutil.RegisterHelper("chaos-producer", producerMain)
	testutil.RegisterHelper("chaos-consumer", consumerMain)
	testutil.RegisterHelper("chaos-sem", semMain)
	testutil.RegisterHelper("chaos-regclient", regclientMain)
	testutil.RegisterHelper("chaos-spin", spinMain)
}

func hostMain(args []string) int {
	switch args[0] {
	case "embedded":
		c, err := registry.Default()
		if err != nil {
			fmt.Println("error", err)
			return 1
		}
		if c.ServerPid() != os.Getpid() {
			fmt.Println("error: not the host; registry pid", c.ServerPid())
			return 1
		}
		fmt.Println("ready")
		return ctlLoop()
	case "daemon":
		s, err := registry.NewServer(os.Getenv("USYSV_SOCKET"), registry.Limits{})
		if err != nil {
			fmt.Println("error", err)
			return 1
		}
		go func() { _ = s.Serve() }()
		fmt.Println("ready")
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
		}
		_ = s.Close()
		return 0
	}
	fmt.Println("error: mode", args[0])
	return 2
}

// now is the wall clock in ns: comparable between processes.
func now() int64 { return time.Now().UnixNano() }

// stdinContext is cancelled when stdin ends: how the test tells a worker
// to stop.
func stdinContext() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
		}
		cancel()
	}()
	return ctx
}

// errName is "ok", an errno's name, or the error's text.
func errName(err error) string {
	if err == nil {
		return "ok"
	}
	if errors.Is(err, registry.ErrConnLost) {
		return "ECONNLOST"
	}
	var e kernel.Errno
	if errors.As(err, &e) {
		if n := kernel.ErrnoName(e); n != "" {
			return n
		}
		return fmt.Sprintf("errno%d", int(e))
	}
	return strings.ReplaceAll(err.Error(), " ", "_")
}

// parseOps reads "num:op[:flags],..." with flags u (SEM_UNDO) and n
// (IPC_NOWAIT).
func parseOps(s string) ([]sem.Buf, error) {
	var ops []sem.Buf
	for _, f := range strings.Split(s, ",") {
		p := strings.Split(f, ":")
		if len(p) < 2 {
			return nil, fmt.Errorf("bad op %q", f)
		}
		n, err1 := strconv.Atoi(p[0])
		o, err2 := strconv.Atoi(p[1])
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("bad op %q", f)
		}
		var flg int16
		if len(p) > 2 {
			for _, c := range p[2] {
				switch c {
				case 'u':
					flg |= sem.SEM_UNDO
				case 'n':
					flg |= sem.IPC_NOWAIT
				}
			}
		}
		ops = append(ops, sem.Buf{Num: uint16(n), Op: int16(o), Flg: flg})
	}
	return ops, nil
}

// handles caches this helper's open queues and sets.
var handles struct {
	sync.Mutex
	q map[int]*msgq.Queue
	s map[int]*sem.Array
}

func queue(id int) (*msgq.Queue, error) {
	handles.Lock()
	defer handles.Unlock()
	if q := handles.q[id]; q != nil {
		return q, nil
	}
	q, err := msgq.OpenID(id)
	if err != nil {
		return nil, err
	}
	if handles.q == nil {
		handles.q = map[int]*msgq.Queue{}
	}
	handles.q[id] = q
	return q, nil
}

func semSet(id int) (*sem.Array, error) {
	handles.Lock()
	defer handles.Unlock()
	if s := handles.s[id]; s != nil {
		return s, nil
	}
	s, err := sem.OpenID(id)
	if err != nil {
		return nil, err
	}
	if handles.s == nil {
		handles.s = map[int]*sem.Array{}
	}
	handles.s[id] = s
	return s, nil
}

func joinInts[T int | uint16](v []T) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.Itoa(int(x))
	}
	return strings.Join(s, ",")
}

// ctlLoop serves commands from stdin, one answer line each (drainq
// answers several lines and then "end N"):
//
//	pid                      registry server pid        → pid N
//	self                     this process's pid         → self N
//	newq CAP MAXMSG WAITERS  create a private queue     → id N
//	newsem V,V,...           create a private set       → id N
//	rm q|sem ID              IPC_RMID                   → ok | ERRNO
//	rmkey q|sem KEY          remove by key, if any      → ok | ENOENT | ERRNO
//	stat q|sem ID            IPC_STAT                   → ok | ERRNO
//	drainq ID                receive (IPC_NOWAIT) all   → M PROD SEQ | T WHY ..., end N
//	checkq ID                the queue's invariants     → ok | err WHY
//	send ID TYPE TEXT        blocking send              → ok NS | ERRNO
//	recv ID TYPE             blocking receive           → TEXT NS | ERRNO
//	tryrecv ID TYPE          receive with IPC_NOWAIT    → TEXT | ERRNO
//	fill ID TYPE SIZE        TrySend until full         → n N
//	drain ID TYPE            receive all of TYPE        → texts T,T,...
//	op ID SPEC               blocking semop             → ok NS | ERRNO
//	top ID MS SPEC           semtimedop                 → ok NS | ERRNO
//	getall ID                GETALL                     → vals V,V,...
//	cnt ID                   GETNCNT/GETZCNT of each    → cnt N,N,..;Z,Z,..
//	getpid ID N              GETPID                     → pid N
//	sendn ID TYPE N          send m0..mN-1, one by one  → sent I ..., done | ERRNO
//	recvn ID TYPE N          receive N, one by one      → TEXT ..., done | ERRNO
//	then CMD ...             "at NS" (now), then CMD's answer
//	exit
func ctlLoop() int {
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		f := strings.Fields(in.Text())
		if len(f) == 0 {
			continue
		}
		if f[0] == "exit" {
			return 0
		}
		if f[0] == "drainq" {
			drainq(f)
			continue
		}
		if f[0] == "sendn" || f[0] == "recvn" {
			sendRecvN(f)
			continue
		}
		if f[0] == "then" {
			// then CMD...: the time now, then CMD's answer; a process that
			// dies inside CMD leaves the time it started it.
			fmt.Println("at", now())
			f = f[1:]
		}
		fmt.Println(ctl(f))
	}
	return 0
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

// atoi64 is for nanosecond times, which do not fit a 32-bit int.
func atoi64(s string) int64 { n, _ := strconv.ParseInt(s, 10, 64); return n }

func ctl(f []string) string {
	arg := func(i int) string {
		if i < len(f) {
			return f[i]
		}
		return ""
	}
	ctx := context.Background()
	switch f[0] {
	case "pid":
		c, err := registry.Default()
		if err != nil {
			return errName(err)
		}
		// A round trip first, so that a connection to a registry that is
		// gone is noticed and replaced.
		if _, err := c.Info(shm.KindSem); err != nil {
			return errName(err)
		}
		return fmt.Sprint("pid ", c.ServerPid())
	case "self":
		return fmt.Sprint("self ", os.Getpid())
	case "newq":
		q, err := msgq.OpenConfig(msgq.IPC_PRIVATE, 0o600, msgq.Config{Capacity: atoi(arg(1)), MaxMsg: atoi(arg(2)), Waiters: atoi(arg(3))})
		if err != nil {
			return errName(err)
		}
		return fmt.Sprint("id ", q.ID())
	case "newsem":
		vals := strings.Split(arg(1), ",")
		s, err := sem.Open(sem.IPC_PRIVATE, len(vals), 0o600)
		if err != nil {
			return errName(err)
		}
		v := make([]uint16, len(vals))
		for i, x := range vals {
			v[i] = uint16(atoi(x))
		}
		if err := s.SetAll(v); err != nil {
			return errName(err)
		}
		return fmt.Sprint("id ", s.ID())
	case "rm":
		if arg(1) == "q" {
			return errName(msgq.Remove(atoi(arg(2))))
		}
		return errName(sem.Remove(atoi(arg(2))))
	case "rmkey":
		// Remove the object with this key, if there is one.
		var id int
		var err error
		if arg(1) == "q" {
			if id, err = msgq.Get(atoi(arg(2)), 0); err == nil {
				err = msgq.Remove(id)
			}
		} else {
			if id, err = sem.Get(atoi(arg(2)), 0, 0); err == nil {
				err = sem.Remove(id)
			}
		}
		return errName(err)
	case "stat":
		var err error
		if arg(1) == "q" {
			_, err = msgq.Stat(atoi(arg(2)))
		} else {
			_, err = sem.Stat(atoi(arg(2)))
		}
		return errName(err)
	case "checkq":
		q, err := queue(atoi(arg(1)))
		if err != nil {
			return errName(err)
		}
		if err := q.Check(); err != nil {
			return "err " + err.Error()
		}
		return "ok"
	case "drain":
		// drain ID TYPE: receive (IPC_NOWAIT) every message of TYPE.
		q, err := queue(atoi(arg(1)))
		if err != nil {
			return errName(err)
		}
		buf := make([]byte, q.MaxMsg())
		var texts []string
		for {
			n, _, err := q.TryRecv(buf, int64(atoi(arg(2))), 0)
			if err != nil {
				if errors.Is(err, msgq.ErrEmpty) {
					return "texts " + strings.Join(texts, ",")
				}
				return errName(err)
			}
			texts = append(texts, string(buf[:n]))
		}
	case "getpid":
		s, err := semSet(atoi(arg(1)))
		if err != nil {
			return errName(err)
		}
		pid, err := s.GetPid(atoi(arg(2)))
		if err != nil {
			return errName(err)
		}
		return fmt.Sprint("pid ", pid)
	case "send", "recv", "tryrecv", "fill":
		q, err := queue(atoi(arg(1)))
		if err != nil {
			return errName(err)
		}
		typ := int64(atoi(arg(2)))
		switch f[0] {
		case "send":
			if err := q.Send(ctx, typ, []byte(arg(3))); err != nil {
				return errName(err)
			}
			return fmt.Sprint("ok ", now())
		case "fill":
			n, b := 0, make([]byte, atoi(arg(3)))
			for q.TrySend(typ, b) == nil {
				n++
			}
			return fmt.Sprint("n ", n)
		}
		buf := make([]byte, q.MaxMsg())
		var n int
		if f[0] == "recv" {
			n, _, err = q.Recv(ctx, buf, typ, 0)
		} else {
			n, _, err = q.TryRecv(buf, typ, 0)
		}
		if err != nil {
			return errName(err)
		}
		return fmt.Sprint(string(buf[:n]), " ", now())
	case "op", "top", "getall", "cnt":
		s, err := semSet(atoi(arg(1)))
		if err != nil {
			return errName(err)
		}
		switch f[0] {
		case "op", "top":
			spec := arg(2)
			if f[0] == "top" {
				spec = arg(3)
			}
			ops, err := parseOps(spec)
			if err != nil {
				return err.Error()
			}
			if f[0] == "top" {
				err = s.TimedOp(time.Duration(atoi(arg(2)))*time.Millisecond, ops...)
			} else {
				err = s.Op(ctx, ops...)
			}
			if err != nil {
				return errName(err)
			}
			return fmt.Sprint("ok ", now())
		case "getall":
			v, err := s.GetAll()
			if err != nil {
				return errName(err)
			}
			return "vals " + joinInts(v)
		case "cnt":
			var nc, zc []int
			for i := 0; i < s.Nsems(); i++ {
				n, _ := s.GetNcnt(i)
				z, _ := s.GetZcnt(i)
				nc, zc = append(nc, n), append(zc, z)
			}
			return "cnt " + joinInts(nc) + ";" + joinInts(zc)
		}
	}
	return "unknown command " + f[0]
}

func sendRecvN(f []string) {
	q, err := queue(atoi(f[1]))
	if err != nil {
		fmt.Println(errName(err))
		return
	}
	typ, n := int64(atoi(f[2])), atoi(f[3])
	buf := make([]byte, q.MaxMsg())
	for i := 0; i < n; i++ {
		if f[0] == "sendn" {
			if err := q.Send(context.Background(), typ, []byte(fmt.Sprint("m", i))); err != nil {
				fmt.Println(errName(err))
				return
			}
			fmt.Println("sent", i)
			continue
		}
		k, _, err := q.Recv(context.Background(), buf, typ, 0)
		if err != nil {
			fmt.Println(errName(err))
			return
		}
		fmt.Println(string(buf[:k]))
	}
	fmt.Println("done")
}

// drainq receives every message left in a queue (IPC_NOWAIT) and checks
// each as a consumer does.
func drainq(f []string) {
	q, err := queue(atoi(f[1]))
	if err != nil {
		fmt.Println("T", errName(err))
		fmt.Println("end 0")
		return
	}
	buf := make([]byte, q.MaxMsg())
	n := 0
	for {
		k, rt, err := q.TryRecv(buf, 0, 0)
		if errors.Is(err, msgq.ErrEmpty) {
			break
		}
		if err != nil {
			fmt.Println("T drain:", errName(err))
			break
		}
		n++
		prod, seq, err := decode(buf[:k], rt)
		if err != nil {
			fmt.Println("T", strings.ReplaceAll(err.Error(), " ", "_"))
			continue
		}
		fmt.Println("M", prod, seq, rt)
	}
	fmt.Println("end", n)
}
