package msgq

import (
	"fmt"
	"os"
	"time"
)

func debugWatch(q *Queue, after time.Duration) func() {
	done := make(chan struct{})
	go func() {
		select {
		case <-done:
			return
		case <-time.After(after):
		}
		c := q.v.ctl
		fmt.Fprintf(os.Stderr, "DEBUG head=%d tail=%d free=%d bump=%d qnum=%d cbytes=%d seq=%d recvWait=%d sendWait=%d sendGen=%d recvGen=%d recvSpin=%d sendSpin=%d ovfWait=%d lock=%d qbytes=%d\n",
			c.head, c.tail, c.free, c.bump, c.qnum, c.cbytes, c.seq, c.recvWait, c.sendWait, c.sendGen.Load(), c.recvGen.Load(), c.recvSpin.Load(), c.sendSpin.Load(), c.ovfWait.Load(), q.mu.Holder(), q.qbytes())
		for i := range q.v.slots {
			s := &q.v.slots[i]
			if s.State.Load() != 0 {
				fmt.Fprintf(os.Stderr, "DEBUG slot %d state=%d pid=%d futex=%d args=%d %d %x %d\n", i, s.State.Load(), s.PID.Load(), s.Futex.Load(), s.Arg[0].Load(), s.Arg[1].Load(), s.Arg[2].Load(), s.Arg[3].Load())
			}
		}
	}()
	return func() { close(done) }
}
