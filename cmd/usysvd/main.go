// Command usysvd runs the usysv registry as a standalone daemon:
//
//	usysvd [-socket PATH] [-semmni N] [-semmsl N] [-semmns N] [-msgmni N] [-msgmnb N]
//
// It serves the socket until SIGTERM or SIGINT, then closes it; the
// objects live on in the kernel and the next registry (daemon or embedded)
// finds them all. On a multi-user host run it as root (see usysvd.service),
// so that it can give every segment its owner's uid and adopt every object
// after a restart; point clients at it with USYSV_SOCKET.
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
	s, err := registry.NewServer(*socket, lim)
	if err != nil {
		fmt.Fprintln(os.Stderr, "usysvd:", err)
		return 1
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, kernel.StopSignals()...)
	go func() {
		<-sig
		_ = s.Close()
	}()
	fmt.Fprintf(os.Stderr, "usysvd: serving %s (namespace %#x)\n", s.Socket(), s.Namespace())
	if err := s.Serve(); err != nil {
		fmt.Fprintln(os.Stderr, "usysvd:", err)
		return 1
	}
	return 0
}
