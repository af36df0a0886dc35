package registry

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/usysv/usysv/internal/testutil"
	"github.com/usysv/usysv/kernel"
	"github.com/usysv/usysv/shm"
)

func init() {
	// shmmni N DIR, in an IPC namespace of its own: sets the kernel's
	// shmmni there to N, serves a registry with Linux's default limits on
	// a socket in DIR, and creates objects (sets and queues in turn) until
	// one fails, then removes one and creates one more. It prints each
	// creation's outcome.
	testutil.RegisterHelper("shmmni", func(args []string) int {
		if err := os.WriteFile("/proc/sys/kernel/shmmni", []byte(args[0]), 0); err != nil {
			fmt.Println("sysctl:", err)
			return 1
		}
		sock := filepath.Join(args[1], "registry.sock")
		s, err := NewServer(sock, Limits{})
		if err != nil {
			fmt.Println("server:", err)
			return 1
		}
		go func() { _ = s.Serve() }()
		defer s.Close()
		c, err := Dial(sock)
		if err != nil {
			fmt.Println("dial:", err)
			return 1
		}
		defer c.Close()
		var out []string
		var ids []int
		create := func(i int) error {
			req := semReq(kernel.IPC_PRIVATE, 1, 0o600)
			if i%2 == 1 {
				req = msgReq(kernel.IPC_PRIVATE, 0o600)
			}
			id, err := c.Get(req)
			if err != nil {
				out = append(out, errName(err))
				return err
			}
			out = append(out, "ok")
			ids = append(ids, id)
			return nil
		}
		for i := 0; i < 64 && create(i) == nil; i++ {
		}
		kind := shm.KindSem
		if len(ids)%2 == 0 {
			kind = shm.KindMsg
		}
		if err := c.Remove(kind, ids[len(ids)-1]); err != nil {
			out = append(out, "remove:"+errName(err))
		} else {
			out = append(out, "removed")
		}
		_ = create(0)
		fmt.Println(strings.Join(out, " "))
		return 0
	})
}

// Every object is one kernel shm segment, so the host's shmmni bounds them
// all, sets and queues together: past it a creating Get is ENOSPC, and a
// removal makes room again (README, Limits). Run in an IPC namespace of
// its own, whose table it can fill without touching the host's.
func TestShmmniLimit(t *testing.T) {
	testutil.RequireRoot(t)
	p := testutil.Start(t, "shmmni", []string{"4", t.TempDir()}, testutil.NewIPCNamespace())
	assert.Equal(t, "ok ok ok ok ENOSPC removed ok", p.Line(30*time.Second))
}
