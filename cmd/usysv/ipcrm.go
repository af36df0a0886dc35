package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/usysv/usysv/kernel"
	"github.com/usysv/usysv/registry"
	"github.com/usysv/usysv/shm"
)

func init() {
	verbs["ipcrm"] = func(args []string) int { return ipcrm(args, os.Stderr) }
	summaries["ipcrm"] = "ipcrm [-q id] [-s id] [-Q key] [-S key] ... [-a[=msg|sem]] [-socket PATH]   remove objects"
}

// target is one object named on the command line.
type target struct {
	kind  shm.Kind
	byKey bool
	n     int
	arg   string
}

type targets struct {
	list  *[]target
	kind  shm.Kind
	byKey bool
}

func (t targets) String() string { return "" }

func (t targets) Set(s string) error {
	// Ids are decimal, keys any base (util-linux: strtos32 and strtokey):
	// read in base 0, an id 010 would remove the object whose id is 8.
	base := 10
	if t.byKey {
		base = 0
	}
	n, err := strconv.ParseInt(s, base, 64)
	if err != nil {
		return fmt.Errorf("bad number %q", s)
	}
	if t.byKey && (n < -1<<31 || n > 1<<32-1) || !t.byKey && (n < 0 || n > 1<<31-1) {
		return fmt.Errorf("%q out of range", s)
	}
	*t.list = append(*t.list, target{kind: t.kind, byKey: t.byKey, n: int(int32(n)), arg: s})
	return nil
}

// allKinds is -a's value: the kinds whose every object to remove. As for
// util-linux's ipcrm, -a alone is every kind, -a=msg or -a=sem one
// (--all too; shm is not usysv's).
type allKinds struct{ kinds *[]shm.Kind }

func (a allKinds) String() string   { return "" }
func (a allKinds) IsBoolFlag() bool { return true } // -a alone: Set("true")

func (a allKinds) Set(s string) error {
	switch s {
	case "true":
		*a.kinds = append(*a.kinds, shm.KindMsg, shm.KindSem)
	case "msg":
		*a.kinds = append(*a.kinds, shm.KindMsg)
	case "sem":
		*a.kinds = append(*a.kinds, shm.KindSem)
	case "false":
	default:
		return fmt.Errorf("unknown kind %q (msg or sem)", s)
	}
	return nil
}

// ipcrm removes the named objects, in order, like util-linux ipcrm: an
// error on one is reported and the rest are still removed. With -a it
// then removes every object of the kinds given that this user may read,
// as util-linux's does (it finds them by MSG_STAT and SEM_STAT, which need
// read permission), reporting those it may not remove.
func ipcrm(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("ipcrm", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var list []target
	fs.Var(targets{&list, shm.KindMsg, false}, "q", "remove the message queue with this id")
	fs.Var(targets{&list, shm.KindSem, false}, "s", "remove the semaphore set with this id")
	fs.Var(targets{&list, shm.KindMsg, true}, "Q", "remove the message queue with this key")
	fs.Var(targets{&list, shm.KindSem, true}, "S", "remove the semaphore set with this key")
	var all []shm.Kind
	fs.Var(allKinds{&all}, "a", "remove all message queues and semaphore sets this user may read (-a=msg, -a=sem: of one kind)")
	fs.Var(allKinds{&all}, "all", "the same as -a")
	socket := fs.String("socket", "", "registry socket")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 || len(list) == 0 && len(all) == 0 {
		fmt.Fprintln(stderr, "usage: usysv ipcrm [-q id] [-s id] [-Q key] [-S key] ... [-a[=msg|sem]]")
		return 2
	}
	c, err := connect(*socket)
	if err != nil {
		fmt.Fprintln(stderr, "ipcrm:", err)
		return 1
	}
	status := 0
	for _, t := range list {
		if err := removeTarget(c, t); err != nil {
			fmt.Fprintf(stderr, "ipcrm: %s\n", err)
			status = 1
		}
	}
	for _, kind := range all {
		for _, err := range removeAll(c, kind) {
			fmt.Fprintf(stderr, "ipcrm: %s\n", err)
			status = 1
		}
	}
	return status
}

// removeAll removes every object of kind that this user may read (its
// Stat succeeds), going on past the failures, which it returns. One it may
// not read, or removed meanwhile by someone else, is no failure; any other
// error of its Stat (the registry unreachable, say) is.
func removeAll(c *registry.Client, kind shm.Kind) []error {
	objs, err := c.List(kind)
	if err != nil {
		return []error{err}
	}
	what := map[shm.Kind]string{shm.KindMsg: "msqid", shm.KindSem: "semid"}[kind]
	var errs []error
	for _, o := range objs {
		if _, err := c.Stat(kind, o.ID); err != nil {
			if !errors.Is(err, kernel.EACCES) && !errors.Is(err, kernel.EINVAL) && !errors.Is(err, kernel.EIDRM) {
				errs = append(errs, fmt.Errorf("%s %d: %w", what, o.ID, err))
			}
			continue // unreadable (util-linux's *_STAT skips it) or gone
		}
		if err := c.Remove(kind, o.ID); err != nil && !errors.Is(err, kernel.EINVAL) && !errors.Is(err, kernel.EIDRM) {
			errs = append(errs, fmt.Errorf("%s %d: %w", what, o.ID, err))
		}
	}
	return errs
}

func removeTarget(c *registry.Client, t target) error {
	what := map[shm.Kind]string{shm.KindMsg: "msqid", shm.KindSem: "semid"}[t.kind]
	id := t.n
	if t.byKey {
		what = map[shm.Kind]string{shm.KindMsg: "msqid key", shm.KindSem: "semid key"}[t.kind]
		if t.n == kernel.IPC_PRIVATE {
			return fmt.Errorf("%s %s: %w", what, t.arg, kernel.EINVAL)
		}
		var err error
		id, err = c.Get(registry.GetRequest{Kind: t.kind, Key: int32(t.n)})
		if err != nil {
			return fmt.Errorf("%s %s: %w", what, t.arg, err)
		}
	}
	if err := c.Remove(t.kind, id); err != nil {
		if errors.Is(err, kernel.EINVAL) {
			return fmt.Errorf("invalid %s (%s): %w", what, t.arg, err)
		}
		return fmt.Errorf("%s %s: %w", what, t.arg, err)
	}
	return nil
}
