// Command usysvd runs the usysv registry as a standalone daemon:
//
//	usysvd [-socket PATH] [-semmni N] [-semmsl N] [-semmns N] [-msgmni N] [-msgmnb N]
//
// It serves the socket until SIGTERM, SIGINT or SIGHUP, then closes it; the
// objects live on in the kernel and the next registry (daemon or embedded)
// finds them all. A socket or lock file removed while it runs is put back.
// If its directory is removed, or another registry took the socket's lock
// meanwhile (registry package doc), the daemon steps down (handing its
// objects over to that registry, if any) and exits with status 1
// (registry.ErrDisplaced); usysvd.service restarts it.
//
// On a multi-user host run it as root (see usysvd.service), so that it can
// give every segment its owner's uid and adopt every object after a
// restart; point clients at it with USYSV_SOCKET.
//
// The kinds' eager repair hooks (SEM_UNDO of dead processes and the like)
// run in the registry's process; they are linked in by kinds.go.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"

	"github.com/usysv/usysv/kernel"
	"github.com/usysv/usysv/registry"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := flag.NewFlagSet("usysvd", flag.ContinueOnError)
	d := registry.DefaultLimits()
	socket := fs.String("socket", registry.SocketPath(), "socket to serve")
	var lim registry.Limits
	fs.IntVar(&lim.SEMMSL, "semmsl", d.SEMMSL, "max semaphores per set")
	fs.IntVar(&lim.SEMMNI, "semmni", d.SEMMNI, "max semaphore sets")
	fs.IntVar(&lim.SEMMNS, "semmns", 0, "max semaphores in all sets (default semmsl*semmni)")
	fs.IntVar(&lim.MSGMNI, "msgmni", d.MSGMNI, "max message queues")
	fs.IntVar(&lim.MSGMNB, "msgmnb", d.MSGMNB, "max queue bytes without CAP_SYS_RESOURCE")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "usysvd: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	// (A zero Limits field means Linux's default: a limit of 0 or less
	// cannot be asked for, and is refused rather than turned into it.)
	for name, v := range map[string]int{"semmsl": lim.SEMMSL, "semmni": lim.SEMMNI, "msgmni": lim.MSGMNI, "msgmnb": lim.MSGMNB} {
		if v < 1 {
			fmt.Fprintf(os.Stderr, "usysvd: -%s %d: must be at least 1\n", name, v)
			return 2
		}
	}
	if lim.SEMMNS < 0 {
		fmt.Fprintf(os.Stderr, "usysvd: -semmns %d: must be at least 1 (or 0 for semmsl*semmni)\n", lim.SEMMNS)
		return 2
	}
	s, err := registry.NewServer(*socket, lim)
	if err != nil {
		fmt.Fprintln(os.Stderr, "usysvd:", err)
		return 1
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, kernel.StopSignals()...)
	closed := make(chan struct{})
	go func() {
		<-sig
		_ = s.Close()
		close(closed)
	}()
	fmt.Fprintf(os.Stderr, "usysvd: serving %s (namespace %#x)\n", s.Socket(), s.Namespace())
	if err := s.Serve(); err != nil {
		fmt.Fprintln(os.Stderr, "usysvd:", err)
		_ = s.Close()
		return 1
	}
	// Serve returns once Close has closed the listener; the rest of the
	// clean stop (connections, the journal, the lock) is not done yet.
	<-closed
	return 0
}
