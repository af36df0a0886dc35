package msgq

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/usysv/usysv/internal/testutil"
)

func init() {
	testutil.RegisterHelper("producer", producerHelper)
	testutil.RegisterHelper("consumer", consumerHelper)
}

// A stress message: producer index, sequence number, a payload whose
// length and bytes depend on both, and an xxhash of all that.
const stopType = 2

func fillMsg(buf []byte, producer, seq, extra int) []byte {
	n := 5 + (seq*7+producer*13)%300
	switch {
	case extra < 0:
		n = 5 + (seq*7+producer*13)%-extra // all small
	case seq%2 == 1:
		n += extra // odd ones big: copied outside the lock (bigCopy)
	}
	b := buf[:n+8]
	b[0] = byte(producer)
	binary.LittleEndian.PutUint32(b[1:], uint32(seq))
	for i := 5; i < n; i++ {
		b[i] = byte(seq + i*producer)
	}
	binary.LittleEndian.PutUint64(b[n:], xxhash.Sum64(b[:n]))
	return b
}

func parseMsg(b []byte) (producer, seq int, ok bool) {
	if len(b) < 13 {
		return 0, 0, false
	}
	n := len(b) - 8
	if binary.LittleEndian.Uint64(b[n:]) != xxhash.Sum64(b[:n]) {
		return 0, 0, false
	}
	return int(b[0]), int(binary.LittleEndian.Uint32(b[1:])), true
}

// producerHelper ID PRODUCER COUNT BATCH EXTRA: sends COUNT messages of
// type 1, one by one or in batches of up to 16; every other one is EXTRA
// bytes longer.
func producerHelper(args []string) int {
	id, _ := strconv.Atoi(args[0])
	producer, _ := strconv.Atoi(args[1])
	count, _ := strconv.Atoi(args[2])
	extra, _ := strconv.Atoi(args[4])
	q, err := OpenID(id)
	if err != nil {
		fmt.Println("err", err)
		return 1
	}
	ctx := context.Background()
	if args[3] == "batch" {
		bufs := make([][]byte, 16)
		msgs := make([]Msg, 16)
		for i := range bufs {
			bufs[i] = make([]byte, 400+extra)
		}
		for seq := 0; seq < count; {
			k := min(1+seq%16, count-seq)
			for j := 0; j < k; j++ {
				msgs[j] = Msg{Type: 1, Data: fillMsg(bufs[j], producer, seq+j, extra)}
			}
			if _, err := q.SendBatch(ctx, msgs[:k]); err != nil {
				fmt.Println("err", err)
				return 1
			}
			seq += k
		}
	} else {
		buf := make([]byte, 400+extra)
		for seq := 0; seq < count; seq++ {
			if err := q.Send(ctx, 1, fillMsg(buf, producer, seq, extra)); err != nil {
				fmt.Println("err", err)
				return 1
			}
		}
	}
	fmt.Println("done")
	return 0
}

// consumerHelper ID PRODUCERS COUNT BATCH EXTRA: receives (msgtyp 0) until a
// stop message; checks every message and that each producer's sequence
// numbers arrive in increasing order; prints one bitmap of the received
// sequence numbers per producer.
func consumerHelper(args []string) int {
	id, _ := strconv.Atoi(args[0])
	producers, _ := strconv.Atoi(args[1])
	count, _ := strconv.Atoi(args[2])
	extra, _ := strconv.Atoi(args[4])
	q, err := OpenID(id)
	if err != nil {
		fmt.Println("err", err)
		return 1
	}
	seen := make([][]byte, producers)
	last := make([]int, producers)
	for i := range seen {
		seen[i] = make([]byte, (count+7)/8)
		last[i] = -1
	}
	ctx := context.Background()
	msgs := make([]Msg, 8)
	for i := range msgs {
		msgs[i].Data = make([]byte, 400+extra)
	}
	batch := 1
	if args[3] == "batch" {
		batch = len(msgs)
	}
	for {
		n, err := q.RecvBatch(ctx, msgs[:batch], 0, 0)
		if err != nil {
			fmt.Println("err", err)
			return 1
		}
		for i, m := range msgs[:n] {
			if m.Type == stopType {
				// A batch may hold other consumers' stop messages (the
				// producers are done, so nothing else): give them back.
				for _, extra := range msgs[i+1 : n] {
					if err := q.Send(ctx, extra.Type, nil); err != nil {
						fmt.Println("err", err)
						return 1
					}
				}
				for p := range seen {
					fmt.Printf("p %d %s\n", p, hex.EncodeToString(seen[p]))
				}
				return 0
			}
			p, s, ok := parseMsg(m.Data[:m.N])
			if !ok || p >= producers || s >= count {
				fmt.Printf("err bad message %x\n", m.Data[:m.N])
				return 1
			}
			if s <= last[p] {
				fmt.Printf("err producer %d: %d after %d\n", p, s, last[p])
				return 1
			}
			last[p] = s
			seen[p][s/8] |= 1 << (s % 8)
		}
	}
}

// Several producer and consumer processes on one queue: every message
// arrives exactly once, intact, and in per-producer order for each
// consumer (FIFO receive).
func TestMultiProducerMultiConsumer(t *testing.T) {
	count := 20000
	if testing.Short() {
		count = 3000
	}
	testMPMC(t, 3, 3, count, 0)
}

// The same with every other message big enough to be copied outside the
// lock (bigCopy), mixed with small ones that go through the ring.
func TestMultiProducerMultiConsumerBig(t *testing.T) {
	count := 4000
	if testing.Short() {
		count = 1000
	}
	testMPMC(t, 2, 3, count, 3000)
}

// The same with small messages on a small queue: its ring's slots fill up
// while the queue still has room (the rest go through the store), and it
// is often full, so senders sleep, batch senders among them.
func TestMultiProducerMultiConsumerSmallRing(t *testing.T) {
	count := 20000
	if testing.Short() {
		count = 3000
	}
	testMPMC(t, 3, 2, count, -16, Config{Capacity: 2048})
}

// testMPMC runs the producers and consumers on a queue made with cfg;
// extra is fillMsg's.
func testMPMC(t *testing.T, producers, consumers, count, extra int, cfg ...Config) {
	q := newQueueConfig(t, append(cfg, Config{})[0], 0o600)
	defer debugWatch(q, 8*time.Second)()
	var cs []*testutil.Proc
	for c := 0; c < consumers; c++ {
		mode := []string{"single", "batch"}[c%2]
		cs = append(cs, testutil.Start(t, "consumer", []string{fmt.Sprint(q.ID()), fmt.Sprint(producers), fmt.Sprint(count), mode, fmt.Sprint(extra)}))
	}
	var ps []*testutil.Proc
	for p := 0; p < producers; p++ {
		mode := []string{"single", "batch"}[p%2]
		ps = append(ps, testutil.Start(t, "producer", []string{fmt.Sprint(q.ID()), fmt.Sprint(p), fmt.Sprint(count), mode, fmt.Sprint(extra)}))
	}
	for _, p := range ps {
		p.Expect("done", lineWait*6)
	}
	for range cs {
		require.NoError(t, q.Send(context.Background(), stopType, nil))
	}
	got := make([][]byte, producers)
	for i := range got {
		got[i] = make([]byte, (count+7)/8)
	}
	for _, c := range cs {
		for p := 0; p < producers; p++ {
			line := c.Line(lineWait * 6)
			f := strings.Fields(line)
			require.Len(t, f, 3, line)
			require.Equal(t, fmt.Sprintf("p %d", p), f[0]+" "+f[1])
			bits, err := hex.DecodeString(f[2])
			require.NoError(t, err)
			for i, b := range bits {
				require.Zero(t, got[p][i]&b, "producer %d: a message in byte %d arrived twice", p, i)
				got[p][i] |= b
			}
		}
		assert.Equal(t, 0, c.Wait(lineWait))
	}
	for p := range got {
		for s := 0; s < count; s++ {
			if got[p][s/8]&(1<<(s%8)) == 0 {
				t.Fatalf("producer %d message %d never arrived", p, s)
			}
		}
	}
	ds, err := q.Stat()
	require.NoError(t, err)
	assert.Zero(t, ds.Qnum)
	assert.Zero(t, ds.Cbytes)
	require.NoError(t, q.Check())
}
