// Command usysv is the usysv command-line tool:
//
//	usysv ipcs  [-q] [-s] [-t|-p|-c|-l|-u] [-i id] [-socket PATH]   list objects (like util-linux ipcs)
//	usysv ipcrm [-q id] [-s id] [-Q key] [-S key] ... [-a[=msg|sem]] [-socket PATH]
//	usysv ipcmk -Q | -S nsems [-p mode] [-socket PATH]
//	usysv bench [-quick] [-json] [-case LIST] [-impl LIST] ...
//
// Each verb lives in its own file and adds itself to verbs from an init
// function; main only dispatches.
package main

import (
	"fmt"
	"os"
	"sort"
)

// verbs maps a verb to its implementation: it gets the arguments after the
// verb and returns the exit status. Files of this package add theirs in
// init functions.
var verbs = map[string]func(args []string) int{}

// summaries holds an optional one-line usage per verb, for the help text.
var summaries = map[string]string{}

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	v, ok := verbs[os.Args[1]]
	if !ok {
		if a := os.Args[1]; a != "-h" && a != "-help" && a != "--help" && a != "help" {
			fmt.Fprintf(os.Stderr, "usysv: unknown verb %q\n", a)
		}
		usage()
		os.Exit(2)
	}
	os.Exit(v(os.Args[2:]))
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: usysv <verb> [arguments]")
	names := make([]string, 0, len(verbs))
	for n := range verbs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if s := summaries[n]; s != "" {
			fmt.Fprintf(os.Stderr, "  usysv %s\n", s)
		} else {
			fmt.Fprintf(os.Stderr, "  usysv %s ...\n", n)
		}
	}
}
