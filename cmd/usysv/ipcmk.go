package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"

	"github.com/usysv/usysv/kernel"
)

func init() {
	verbs["ipcmk"] = func(args []string) int { return ipcmk(args, os.Stdout, os.Stderr) }
	summaries["ipcmk"] = "ipcmk -Q | -S nsems [-p mode] [-socket PATH]   create a queue or a semaphore set"
}

// ipcmk creates a queue or a semaphore set with a random key, like
// util-linux ipcmk, and prints its id.
func ipcmk(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ipcmk", flag.ContinueOnError)
	fs.SetOutput(stderr)
	q := fs.Bool("Q", false, "create a message queue")
	nsems := fs.Int("S", 0, "create a semaphore set with this many semaphores")
	modeS := fs.String("p", "0644", "permissions (octal)")
	socket := fs.String("socket", "", "registry socket")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	mode, err := strconv.ParseUint(*modeS, 8, 32)
	if err != nil || mode > 0o777 {
		fmt.Fprintf(stderr, "ipcmk: bad mode %q\n", *modeS)
		return 2
	}
	// -S 0 asks for a set of none: EINVAL from semget, as util-linux's
	// ipcmk reports it, not a usage error.
	semAsked := false
	fs.Visit(func(f *flag.Flag) { semAsked = semAsked || f.Name == "S" })
	if fs.NArg() > 0 || *q == semAsked {
		fmt.Fprintln(stderr, "usage: usysv ipcmk -Q | -S nsems [-p mode]")
		return 2
	}
	if _, err := connect(*socket); err != nil {
		fmt.Fprintln(stderr, "ipcmk:", err)
		return 1
	}
	create := func(key int) (int, error) {
		flags := kernel.IPC_CREAT | kernel.IPC_EXCL | int(mode)
		if *q {
			if msgCreate == nil {
				return -1, fmt.Errorf("message queues are not linked into this build: %w", kernel.ENOSYS)
			}
			return msgCreate(key, flags)
		}
		if semCreate == nil {
			return -1, fmt.Errorf("semaphore sets are not linked into this build: %w", kernel.ENOSYS)
		}
		return semCreate(key, *nsems, flags)
	}
	for {
		key := int(int32(rand.Uint32()))
		if key == kernel.IPC_PRIVATE {
			continue
		}
		id, err := create(key)
		if errors.Is(err, kernel.EEXIST) {
			continue
		}
		if err != nil {
			fmt.Fprintln(stderr, "ipcmk:", err)
			return 1
		}
		if *q {
			fmt.Fprintf(stdout, "Message queue id: %d\n", id)
		} else {
			fmt.Fprintf(stdout, "Semaphore id: %d\n", id)
		}
		return 0
	}
}
