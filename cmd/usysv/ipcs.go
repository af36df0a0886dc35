package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"os/user"
	"strconv"
	"time"

	"github.com/usysv/usysv/registry"
	"github.com/usysv/usysv/shm"
)

func init() {
	verbs["ipcs"] = func(args []string) int { return ipcs(args, os.Stdout, os.Stderr) }
	summaries["ipcs"] = "ipcs [-q] [-s] [-t|-p|-c|-l|-u] [-i id] [-socket PATH]   list usysv queues and semaphore sets"
}

// connect returns the registry client the tools use: the process-wide
// one, on -socket's path if given. With no registry running it hosts one
// for its own life, which rebuilds the table from the kernel: the tools
// work whether or not a registry runs.
func connect(socket string) (*registry.Client, error) {
	if socket != "" {
		if err := os.Setenv("USYSV_SOCKET", socket); err != nil {
			return nil, err
		}
	}
	return registry.Default()
}

// The output formats of util-linux ipcs's output options, with its
// headers and columns. As there, the last one given wins, and -i ignores
// them.
const (
	fmtList    = iota // the default: key, id, owner, perms and sizes
	fmtTime           // -t: send/receive or operation times, change time
	fmtPid            // -p: lspid and lrpid (none for sets, as util-linux)
	fmtCreator        // -c: perms, cuid, cgid, uid, gid
	fmtLimits         // -l: the registry's limits
	fmtSummary        // -u: what is in use
)

// ipcs lists usysv objects with the columns of util-linux ipcs, or one
// object in detail with -i.
func ipcs(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ipcs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	q := fs.Bool("q", false, "message queues")
	s := fs.Bool("s", false, "semaphore arrays")
	fs.Bool("a", false, "all (the default)")
	format := fmtList
	for _, o := range []struct {
		name, usage string
		format      int
	}{
		{"t", "show send, receive (queues) or operation (sets) and change times", fmtTime},
		{"p", "show the PIDs of the last send and receive (queues)", fmtPid},
		{"c", "show creator and owner", fmtCreator},
		{"l", "show the registry's limits", fmtLimits},
		{"u", "show a summary of what is in use", fmtSummary},
	} {
		fs.BoolFunc(o.name, o.usage, func(v string) error {
			on, err := strconv.ParseBool(v)
			if on {
				format = o.format
			}
			return err
		})
	}
	id, idSet := 0, false
	fs.Func("i", "show the object with this id (decimal) in detail (with -q or -s)", func(v string) error {
		n, err := strconv.ParseInt(v, 10, 32) // (ids are decimal, as for util-linux: 010 is 10)
		if err != nil {
			return fmt.Errorf("bad id %q", v)
		}
		id, idSet = int(n), true
		return nil
	})
	socket := fs.String("socket", "", "registry socket (default: $USYSV_SOCKET or the per-user default)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "ipcs: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if idSet && *q == *s {
		fmt.Fprintln(stderr, "ipcs: -i needs exactly one of -q and -s")
		return 2
	}
	if !*q && !*s {
		*q, *s = true, true
	}
	c, err := connect(*socket)
	if err != nil {
		fmt.Fprintln(stderr, "ipcs:", err)
		return 1
	}
	if idSet {
		kind := shm.KindSem
		if *q {
			kind = shm.KindMsg
		}
		if err := detail(c, kind, id, stdout); err != nil {
			fmt.Fprintln(stderr, "ipcs:", err)
			return 1
		}
		return 0
	}
	status := 0
	if *q {
		if err := listMsg(c, format, stdout); err != nil {
			fmt.Fprintln(stderr, "ipcs:", err)
			status = 1
		}
	}
	if *s {
		if err := listSem(c, format, stdout); err != nil {
			fmt.Fprintln(stderr, "ipcs:", err)
			status = 1
		}
	}
	return status
}

// owner is the name of user uid, or its number if it has none.
func owner(uid uint32) string {
	if u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10)); err == nil {
		return u.Username
	}
	return strconv.FormatUint(uint64(uid), 10)
}

// group is the name of group gid, or its number if it has none.
func group(gid uint32) string {
	if g, err := user.LookupGroupId(strconv.FormatUint(uint64(gid), 10)); err == nil {
		return g.Name
	}
	return strconv.FormatUint(uint64(gid), 10)
}

// creatorRow is an object's line of -c.
func creatorRow(w io.Writer, o registry.Object) {
	p := o.Perm
	fmt.Fprintf(w, "%-10d %-10o %-10s %-10s %-10s %-10s\n", o.ID, p.Mode&0o777, owner(p.CUID), group(p.CGID), owner(p.UID), group(p.GID))
}

// shortTime is t as util-linux's -t shows a queue's times: ctime(3)
// without the weekday, to 16 characters (the year cut off).
func shortTime(t int64) string {
	if t == 0 {
		return "Not set"
	}
	return ctime(t)[4:20]
}

// listMsg prints the message queues in format. What only the queue itself
// holds (its sizes, times and pids) needs read permission on it: "-" for
// a queue this process may not read.
func listMsg(c *registry.Client, format int, w io.Writer) error {
	switch format {
	case fmtLimits:
		return limits(c, shm.KindMsg, w)
	case fmtSummary:
		return msgSummary(c, w)
	}
	objs, err := c.List(shm.KindMsg)
	if err != nil {
		return err
	}
	switch format {
	case fmtTime:
		fmt.Fprintf(w, "\n------ Message Queues Send/Recv/Change Times --------\n")
		fmt.Fprintf(w, "%-8s %-10s %-20s %-20s %-20s\n", "msqid", "owner", "send", "recv", "change")
	case fmtPid:
		fmt.Fprintf(w, "\n------ Message Queues PIDs --------\n")
		fmt.Fprintf(w, "%-10s %-10s %-10s %-10s\n", "msqid", "owner", "lspid", "lrpid")
	case fmtCreator:
		fmt.Fprintf(w, "\n------ Message Queues Creators/Owners --------\n")
		fmt.Fprintf(w, "%-10s %-10s %-10s %-10s %-10s %-10s\n", "msqid", "perms", "cuid", "cgid", "uid", "gid")
	default:
		fmt.Fprintf(w, "\n------ Message Queues --------\n")
		fmt.Fprintf(w, "%-10s %-10s %-10s %-10s %-12s %-12s\n", "key", "msqid", "owner", "perms", "used-bytes", "messages")
	}
	for _, o := range objs {
		if format == fmtCreator {
			creatorRow(w, o)
			continue
		}
		var d *msgDetail
		if msgStat != nil {
			if ds, err := msgStat(o.ID); err == nil {
				d = &ds
			}
		}
		who := owner(o.Perm.UID)
		switch format {
		case fmtTime:
			send, recv, change := "-", "-", "-"
			if d != nil {
				send, recv, change = shortTime(d.Stime), shortTime(d.Rtime), shortTime(d.Ctime)
			}
			fmt.Fprintf(w, "%-8d %-10.10s %-20s %-20s %-20s\n", o.ID, who, send, recv, change)
		case fmtPid:
			lspid, lrpid := "-", "-"
			if d != nil {
				lspid, lrpid = strconv.Itoa(d.Lspid), strconv.Itoa(d.Lrpid)
			}
			fmt.Fprintf(w, "%-8d %-10.10s  %5s     %5s\n", o.ID, who, lspid, lrpid)
		default:
			used, msgs := "-", "-"
			if d != nil {
				used, msgs = strconv.FormatUint(d.Cbytes, 10), strconv.FormatUint(d.Qnum, 10)
			}
			fmt.Fprintf(w, "0x%08x %-10d %-10.10s %-10o %-12s %-12s\n", uint32(o.Perm.Key), o.ID, who, o.Perm.Mode&0o777, used, msgs)
		}
	}
	fmt.Fprintln(w)
	return nil
}

// limits is -l: the registry's limits of kind, named as util-linux names
// Linux's.
func limits(c *registry.Client, kind shm.Kind, w io.Writer) error {
	u, err := c.Info(kind)
	if err != nil {
		return err
	}
	l := u.Limits
	type row struct {
		name string
		v    int
	}
	title, rows := "Messages Limits", []row{
		{"max queues system wide", l.MSGMNI},
		{"max size of message (bytes)", l.MSGMAX},
		{"default max size of queue (bytes)", l.MSGMNB},
	}
	if kind == shm.KindSem {
		title, rows = "Semaphore Limits", []row{
			{"max number of arrays", l.SEMMNI},
			{"max semaphores per array", l.SEMMSL},
			{"max semaphores system wide", l.SEMMNS},
			{"max ops per semop call", l.SEMOPM},
			{"semaphore max value", l.SEMVMX},
		}
	}
	fmt.Fprintf(w, "\n------ %s --------\n", title)
	for _, r := range rows {
		fmt.Fprintf(w, "%s = %d\n", r.name, r.v)
	}
	fmt.Fprintln(w)
	return nil
}

// msgSummary is -u for the queues: Linux's MSG_INFO counts the messages
// and bytes of every queue; the registry does not read queues, so this
// adds up those this process may read, and says how many it could not.
func msgSummary(c *registry.Client, w io.Writer) error {
	objs, err := c.List(shm.KindMsg)
	if err != nil {
		return err
	}
	var msgs, bytes uint64
	unread := 0
	for _, o := range objs {
		if msgStat == nil {
			unread++
			continue
		}
		d, err := msgStat(o.ID)
		if err != nil {
			unread++
			continue
		}
		msgs += d.Qnum
		bytes += d.Cbytes
	}
	fmt.Fprintf(w, "\n------ Messages Status --------\n")
	fmt.Fprintf(w, "allocated queues = %d\n", len(objs))
	fmt.Fprintf(w, "used headers = %d\n", msgs)
	fmt.Fprintf(w, "used space = %d bytes\n", bytes)
	if unread > 0 {
		fmt.Fprintf(w, "(not counted: %d queues this user may not read)\n", unread)
	}
	fmt.Fprintln(w)
	return nil
}

// listSem prints the semaphore sets in format. Operation times need read
// permission on the set: "-" for one this process may not read.
func listSem(c *registry.Client, format int, w io.Writer) error {
	switch format {
	case fmtLimits:
		return limits(c, shm.KindSem, w)
	case fmtSummary:
		u, err := c.Info(shm.KindSem)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "\n------ Semaphore Status --------\n")
		fmt.Fprintf(w, "used arrays = %d\n", u.Objects)
		fmt.Fprintf(w, "allocated semaphores = %d\n\n", u.Units)
		return nil
	case fmtPid:
		return nil // a set has no pids of its own (util-linux prints nothing either)
	}
	objs, err := c.List(shm.KindSem)
	if err != nil {
		return err
	}
	switch format {
	case fmtTime:
		fmt.Fprintf(w, "\n------ Semaphore Operation/Change Times --------\n")
		fmt.Fprintf(w, "%-8s %-10s %-26s %-26s\n", "semid", "owner", "last-op", "last-changed")
	case fmtCreator:
		fmt.Fprintf(w, "\n------ Semaphore Arrays Creators/Owners --------\n")
		fmt.Fprintf(w, "%-10s %-10s %-10s %-10s %-10s %-10s\n", "semid", "perms", "cuid", "cgid", "uid", "gid")
	default:
		fmt.Fprintf(w, "\n------ Semaphore Arrays --------\n")
		fmt.Fprintf(w, "%-10s %-10s %-10s %-10s %-10s\n", "key", "semid", "owner", "perms", "nsems")
	}
	for _, o := range objs {
		switch format {
		case fmtCreator:
			creatorRow(w, o)
		case fmtTime:
			op, change := "-", "-"
			if semStat != nil {
				if d, err := semStat(o.ID, false); err == nil {
					op, change = ctime(d.Otime), ctime(d.Ctime)
				}
			}
			fmt.Fprintf(w, "%-8d %-10.10s  %-26s %-26s\n", o.ID, owner(o.Perm.UID), op, change)
		default:
			fmt.Fprintf(w, "0x%08x %-10d %-10.10s %-10o %-10d\n", uint32(o.Perm.Key), o.ID, owner(o.Perm.UID), o.Perm.Mode&0o777, o.Count)
		}
	}
	fmt.Fprintln(w)
	return nil
}

func ctime(t int64) string {
	if t == 0 {
		return "Not set"
	}
	return time.Unix(t, 0).Format("Mon Jan _2 15:04:05 2006")
}

// detail prints one object as util-linux's ipcs -i does. It needs read
// permission on the object (IPC_STAT).
func detail(c *registry.Client, kind shm.Kind, id int, w io.Writer) error {
	o, err := c.Stat(kind, id)
	if err != nil {
		return fmt.Errorf("id %d: %w", id, err)
	}
	p := o.Perm
	if kind == shm.KindMsg {
		fmt.Fprintf(w, "\nMessage Queue msqid=%d\n", id)
		fmt.Fprintf(w, "uid=%d\tgid=%d\tcuid=%d\tcgid=%d\tmode=%#o\n", p.UID, p.GID, p.CUID, p.CGID, p.Mode)
		if msgStat == nil {
			fmt.Fprintf(w, "cbytes=-\tqbytes=%d\tqnum=-\tlspid=-\tlrpid=-\n", o.Param)
			fmt.Fprintf(w, "send_time=-\nrcv_time=-\nchange_time=%s\n\n", ctime(o.Ctime))
			return nil
		}
		d, err := msgStat(id)
		if err != nil {
			return fmt.Errorf("id %d: %w", id, err)
		}
		fmt.Fprintf(w, "cbytes=%d\tqbytes=%d\tqnum=%d\tlspid=%d\tlrpid=%d\n", d.Cbytes, d.Qbytes, d.Qnum, d.Lspid, d.Lrpid)
		fmt.Fprintf(w, "send_time=%s\nrcv_time=%s\nchange_time=%s\n\n", ctime(d.Stime), ctime(d.Rtime), ctime(d.Ctime))
		return nil
	}
	fmt.Fprintf(w, "\nSemaphore Array semid=%d\n", id)
	fmt.Fprintf(w, "uid=%d\t gid=%d\t cuid=%d\t cgid=%d\n", p.UID, p.GID, p.CUID, p.CGID)
	fmt.Fprintf(w, "mode=%#o, access_perms=%#o\n", p.Mode, p.Mode&0o777)
	fmt.Fprintf(w, "nsems = %d\n", o.Count)
	if semStat == nil {
		fmt.Fprintf(w, "otime = -\nctime = %-26s\n\n", ctime(o.Ctime))
		return nil
	}
	d, err := semStat(id, true)
	if err != nil {
		return fmt.Errorf("id %d: %w", id, err)
	}
	fmt.Fprintf(w, "otime = %-26s\nctime = %-26s\n", ctime(d.Otime), ctime(d.Ctime))
	fmt.Fprintf(w, "%-10s %-10s %-10s %-10s %-10s\n", "semnum", "value", "ncount", "zcount", "pid")
	for i, r := range d.Sems {
		fmt.Fprintf(w, "%-10d %-10d %-10d %-10d %-10d\n", i, r.Val, r.Ncnt, r.Zcnt, r.Pid)
	}
	fmt.Fprintln(w)
	return nil
}
