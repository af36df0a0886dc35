package msgq

import (
	"context"
	"testing"

	"github.com/usysv/usysv/kernel"
)

// Benchmarks: usysv and the kernel in the same run. Compare the
// .../usysv and .../kernel lines (benchstat, or the ratio printed by
// TestBenchRatios when USYSV_BENCH_RATIOS is set).

func BenchmarkSendRecv(b *testing.B) {
	for _, size := range []int{64, 8192} {
		name := "64B"
		if size == 8192 {
			name = "8KiB"
		}
		b.Run(name+"/usysv", func(b *testing.B) {
			q := newQueue(b)
			ctx := context.Background()
			buf := make([]byte, size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if err := q.Send(ctx, 1, buf); err != nil {
					b.Fatal(err)
				}
				if _, _, err := q.Recv(ctx, buf, 0, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/kernel", func(b *testing.B) {
			id := newKernelQueue(b)
			buf := make([]byte, size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if err := kernel.Msgsnd(id, 1, buf, 0); err != nil {
					b.Fatal(err)
				}
				if _, _, err := kernel.Msgrcv(id, buf, 0, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
