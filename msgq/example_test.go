package msgq_test

import (
	"context"
	"fmt"

	"github.com/usysv/usysv/msgq"
)

func Example() {
	q, err := msgq.Open(msgq.IPC_PRIVATE, 0o600)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer q.Close()
	defer q.Remove()

	ctx := context.Background()
	_ = q.Send(ctx, 2, []byte("second kind"))
	_ = q.Send(ctx, 1, []byte("first kind"))

	buf := make([]byte, msgq.MSGMAX)
	n, typ, _ := q.Recv(ctx, buf, -1, 0) // lowest type ≤ 1
	fmt.Println(typ, string(buf[:n]))
	n, typ, _ = q.Recv(ctx, buf, 0, 0) // first in the queue
	fmt.Println(typ, string(buf[:n]))
	_, _, err = q.TryRecv(buf, 0, 0)
	fmt.Println(err)
	// Output:
	// 1 first kind
	// 2 second kind
	// msgq: no message: no message of desired type
}

func Example_batch() {
	q, err := msgq.Open(msgq.IPC_PRIVATE, 0o600)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer q.Close()
	defer q.Remove()

	ctx := context.Background()
	out := []msgq.Msg{{Type: 1, Data: []byte("a")}, {Type: 1, Data: []byte("b")}, {Type: 1, Data: []byte("c")}}
	sent, _ := q.SendBatch(ctx, out)
	in := make([]msgq.Msg, 8)
	for i := range in {
		in[i].Data = make([]byte, 16)
	}
	got, _ := q.RecvBatch(ctx, in, 0, 0)
	fmt.Println(sent, got, string(in[0].Data[:in[0].N]), string(in[2].Data[:in[2].N]))
	// Output: 3 3 a c
}
