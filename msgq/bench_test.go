package msgq

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/usysv/usysv/internal/testutil"
	"github.com/usysv/usysv/kernel"
)

// Benchmarks: usysv (handles) and the kernel in the same run, 64-byte
// messages unless named otherwise. Compare each .../usysv line with its
// .../kernel twin (benchstat, or by eye: ns/op and msgs/s). Cross-process
// benchmarks run the other side in helper processes.

// endpoint is one side of a benchmark on one implementation.
type endpoint struct {
	name string
	q    *Queue
	id   int
}

func (e *endpoint) send(mtype int64, b []byte) error {
	if e.q != nil {
		return e.q.Send(context.Background(), mtype, b)
	}
	return kernel.Msgsnd(e.id, mtype, b, 0)
}

func (e *endpoint) recv(b []byte, mtype int64) (int, error) {
	if e.q != nil {
		n, _, err := e.q.Recv(context.Background(), b, mtype, 0)
		return n, err
	}
	n, _, err := kernel.Msgrcv(e.id, b, mtype, 0)
	return n, err
}

// sendBatch and recvBatch use the batch calls on usysv; the kernel has
// none, so they loop.
func (e *endpoint) sendBatch(msgs []Msg) error {
	if e.q != nil {
		_, err := e.q.SendBatch(context.Background(), msgs)
		return err
	}
	for _, m := range msgs {
		if err := kernel.Msgsnd(e.id, m.Type, m.Data, 0); err != nil {
			return err
		}
	}
	return nil
}

func (e *endpoint) recvBatch(msgs []Msg) (int, error) {
	if e.q != nil {
		return e.q.RecvBatch(context.Background(), msgs, 0, 0)
	}
	n, _, err := kernel.Msgrcv(e.id, msgs[0].Data, 0, 0)
	msgs[0].N = n
	return 1, err
}

func openEndpoint(name string, id int) (*endpoint, error) {
	e := &endpoint{name: name, id: id}
	if name == "usysv" {
		q, err := OpenID(id)
		if err != nil {
			return nil, err
		}
		e.q = q
	}
	return e, nil
}

// newEndpoint makes a fresh queue of the implementation for a benchmark.
func newEndpoint(b *testing.B, name string) *endpoint {
	if name == "usysv" {
		q := newQueue(b)
		return &endpoint{name: name, q: q, id: q.ID()}
	}
	return &endpoint{name: name, id: newKernelQueue(b)}
}

var benchImpls = []string{"usysv", "kernel"}

func init() { testutil.RegisterHelper("bench", benchHelper) }

// benchHelper IMPL ID: the other side of a cross-process benchmark. It
// reads commands and prints "done" after each:
//
//	send N SIZE BATCH   send N messages of type 1 (in batches of BATCH)
//	recv N SIZE BATCH   receive N messages (in batches of up to BATCH)
//	echo N              N times: receive type 1, send it back as type 2
func benchHelper(args []string) int {
	id, _ := strconv.Atoi(args[1])
	e, err := openEndpoint(args[0], id)
	if err != nil {
		fmt.Println("err", err)
		return 1
	}
	fmt.Println("ready")
	var line string
	for {
		if _, err := fmt.Scanln(&line); err != nil {
			return 0
		}
		f := strings.Split(line, ",")
		n, _ := strconv.Atoi(f[1])
		switch f[0] {
		case "send", "recv":
			size, _ := strconv.Atoi(f[2])
			batch, _ := strconv.Atoi(f[3])
			msgs := make([]Msg, batch)
			for i := range msgs {
				msgs[i] = Msg{Type: 1, Data: make([]byte, size)}
			}
			for done := 0; done < n; {
				k := min(batch, n-done)
				if f[0] == "send" {
					err = e.sendBatch(msgs[:k])
				} else {
					k, err = e.recvBatch(msgs[:k])
				}
				if err != nil {
					fmt.Println("err", err)
					return 1
				}
				done += k
			}
		case "echo":
			buf := make([]byte, 64)
			for i := 0; i < n; i++ {
				k, err := e.recv(buf, 1)
				if err == nil {
					err = e.send(2, buf[:k])
				}
				if err != nil {
					fmt.Println("err", err)
					return 1
				}
			}
		}
		fmt.Println("done")
	}
}

func startBench(b *testing.B, e *endpoint) *testutil.Proc {
	p := testutil.Start(b, "bench", []string{e.name, fmt.Sprint(e.id)})
	p.Expect("ready", lineWait)
	return p
}

const benchWait = 5 * time.Minute

func reportRate(b *testing.B, msgs int) {
	b.ReportMetric(float64(msgs)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkSendRecv: send then receive, one process, one goroutine.
func BenchmarkSendRecv(b *testing.B) {
	for _, size := range []int{64, 8192} {
		for _, name := range benchImpls {
			b.Run(fmt.Sprintf("%dB/%s", size, name), func(b *testing.B) {
				e := newEndpoint(b, name)
				buf := make([]byte, size)
				b.SetBytes(int64(size))
				b.ReportAllocs()
				for b.Loop() {
					if err := e.send(1, buf); err != nil {
						b.Fatal(err)
					}
					if _, err := e.recv(buf, 0); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkPackageSendRecv: BenchmarkSendRecv's 64 bytes through the
// package-level functions (msgsnd/msgrcv's shape: an id → handle cache in
// front, and Recv holds the handle from retirement: api.go hold).
func BenchmarkPackageSendRecv(b *testing.B) {
	id, err := Get(IPC_PRIVATE, IPC_CREAT|0o600)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = Remove(id) })
	buf := make([]byte, 64)
	for b.Loop() {
		if err := Send(id, 1, buf, 0); err != nil {
			b.Fatal(err)
		}
		if _, _, err := Recv(id, buf, 0, 0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSendRecvBatch: 64 sends then 64 receives, one process; usysv
// with SendBatch/RecvBatch (one lock per batch). ns/op is per message.
func BenchmarkSendRecvBatch(b *testing.B) {
	for _, name := range benchImpls {
		b.Run(name, func(b *testing.B) {
			e := newEndpoint(b, name)
			msgs := make([]Msg, 64)
			for i := range msgs {
				msgs[i] = Msg{Type: 1, Data: make([]byte, 64)}
			}
			b.ReportAllocs()
			for i := 0; i < b.N; i += len(msgs) {
				k := min(len(msgs), b.N-i)
				if err := e.sendBatch(msgs[:k]); err != nil {
					b.Fatal(err)
				}
				for got := 0; got < k; {
					n, err := e.recvBatch(msgs[got:k])
					if err != nil {
						b.Fatal(err)
					}
					got += n
				}
			}
		})
	}
}

// BenchmarkTyped: 8 messages of types 1..8, then received by type from
// the highest: typed receive over 8 interleaved types.
func BenchmarkTyped(b *testing.B) {
	for _, name := range benchImpls {
		b.Run(name, func(b *testing.B) {
			e := newEndpoint(b, name)
			buf := make([]byte, 64)
			for i := 0; i < b.N; i += 8 {
				for t := int64(1); t <= 8; t++ {
					if err := e.send(t, buf); err != nil {
						b.Fatal(err)
					}
				}
				for t := int64(8); t >= 1; t-- {
					if _, err := e.recv(buf, t); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

// BenchmarkStream: one producer process, this process consuming. ns/op
// is per message.
func BenchmarkStream(b *testing.B) {
	for _, batch := range []int{1, 64} {
		for _, name := range benchImpls {
			b.Run(fmt.Sprintf("batch%d/%s", batch, name), func(b *testing.B) {
				e := newEndpoint(b, name)
				p := startBench(b, e)
				msgs := make([]Msg, batch)
				for i := range msgs {
					msgs[i].Data = make([]byte, 64)
				}
				b.ResetTimer()
				p.Send("send,%d,64,%d", b.N, batch)
				for got := 0; got < b.N; {
					n, err := e.recvBatch(msgs[:min(batch, b.N-got)])
					if err != nil {
						b.Fatal(err)
					}
					got += n
				}
				b.StopTimer()
				p.Expect("done", benchWait)
				reportRate(b, b.N)
			})
		}
	}
}

// BenchmarkStream2x2: two producer and two consumer processes, each
// moving b.N messages; ns/op is per message (of 2·b.N).
func BenchmarkStream2x2(b *testing.B) {
	for _, batch := range []int{1, 64} {
		for _, name := range benchImpls {
			b.Run(fmt.Sprintf("batch%d/%s", batch, name), func(b *testing.B) {
				e := newEndpoint(b, name)
				var ps []*testutil.Proc
				for i := 0; i < 4; i++ {
					ps = append(ps, startBench(b, e))
				}
				b.ResetTimer()
				for i, p := range ps {
					p.Send("%s,%d,64,%d", []string{"recv", "send"}[i%2], b.N, batch)
				}
				for _, p := range ps {
					p.Expect("done", benchWait)
				}
				b.StopTimer()
				reportRate(b, 2*b.N)
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(2*b.N), "ns/msg")
			})
		}
	}
}

// BenchmarkPingPong: a round trip to an echoing process (type 1 there,
// type 2 back); ns/op is the round trip.
func BenchmarkPingPong(b *testing.B) {
	for _, name := range benchImpls {
		b.Run(name, func(b *testing.B) {
			e := newEndpoint(b, name)
			p := startBench(b, e)
			buf := make([]byte, 64)
			b.ResetTimer()
			p.Send("echo,%d", b.N)
			for i := 0; i < b.N; i++ {
				if err := e.send(1, buf); err != nil {
					b.Fatal(err)
				}
				if _, err := e.recv(buf, 2); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			p.Expect("done", benchWait)
		})
	}
}
