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
	summaries["ipcs"] = "ipcs [-q] [-s] [-i id] [-socket PATH]   list usysv queues and semaphore sets"
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

// ipcs lists usysv objects with the columns of util-linux ipcs, or one
// object in detail with -i.
func ipcs(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ipcs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	q := fs.Bool("q", false, "message queues")
	s := fs.Bool("s", false, "semaphore arrays")
	fs.Bool("a", false, "all (the default)")
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
		if err := listMsg(c, stdout); err != nil {
			fmt.Fprintln(stderr, "ipcs:", err)
			status = 1
		}
	}
	if *s {
		if err := listSem(c, stdout); err != nil {
			fmt.Fprintln(stderr, "ipcs:", err)
			status = 1
		}
	}
	return status
}

func owner(uid uint32) string {
	if u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10)); err == nil {
		return u.Username
	}
	return strconv.FormatUint(uint64(uid), 10)
}

func listMsg(c *registry.Client, w io.Writer) error {
	objs, err := c.List(shm.KindMsg)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "\n------ Message Queues --------\n")
	fmt.Fprintf(w, "%-10s %-10s %-10s %-10s %-12s %-12s\n", "key", "msqid", "owner", "perms", "used-bytes", "messages")
	for _, o := range objs {
		used, msgs := "-", "-"
		if msgStat != nil {
			if d, err := msgStat(o.ID); err == nil {
				used, msgs = strconv.FormatUint(d.Cbytes, 10), strconv.FormatUint(d.Qnum, 10)
			}
		}
		fmt.Fprintf(w, "0x%08x %-10d %-10s %-10o %-12s %-12s\n", uint32(o.Perm.Key), o.ID, owner(o.Perm.UID), o.Perm.Mode, used, msgs)
	}
	fmt.Fprintln(w)
	return nil
}

func listSem(c *registry.Client, w io.Writer) error {
	objs, err := c.List(shm.KindSem)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "\n------ Semaphore Arrays --------\n")
	fmt.Fprintf(w, "%-10s %-10s %-10s %-10s %-10s\n", "key", "semid", "owner", "perms", "nsems")
	for _, o := range objs {
		fmt.Fprintf(w, "0x%08x %-10d %-10s %-10o %-10d\n", uint32(o.Perm.Key), o.ID, owner(o.Perm.UID), o.Perm.Mode, o.Count)
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
	d, err := semStat(id)
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
