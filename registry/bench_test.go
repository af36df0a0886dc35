package registry

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/usysv/usysv/internal/testutil"
)

func init() {
	// getter: args socket key n; does n Gets of key and prints
	// "<n> <elapsed ns> <p50 ns> <p99 ns>" after "go" on stdin.
	testutil.RegisterHelper("getter", func(args []string) int {
		c, err := Dial(args[0])
		if err != nil {
			fmt.Println("error", err)
			return 1
		}
		key, _ := strconv.Atoi(args[1])
		n, _ := strconv.Atoi(args[2])
		fmt.Println("ready")
		var b [8]byte
		_, _ = os.Stdin.Read(b[:])
		lat := make([]time.Duration, n)
		t0 := time.Now()
		for i := range lat {
			s := time.Now()
			if _, err := c.get(semReq(key, 0, 0)); err != nil {
				fmt.Println("error", err)
				return 1
			}
			lat[i] = time.Since(s)
		}
		el := time.Since(t0)
		p50, p99 := percentiles(lat)
		fmt.Println(n, el.Nanoseconds(), p50.Nanoseconds(), p99.Nanoseconds())
		return 0
	})
}

func percentiles(lat []time.Duration) (p50, p99 time.Duration) {
	if len(lat) == 0 {
		return 0, 0
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return lat[len(lat)/2], lat[len(lat)*99/100]
}

// BenchmarkGetExisting measures a Get of an existing key through the
// registry (Client.get, past the get cache): the round trip every Open by
// key pays the first time. serial: one client, one request at a time
// (latency), in the registry's process. conns: 8 connections from
// goroutines of this process. proc: one client process, one request at a
// time (latency across processes). procs: 4 client processes against a
// registry in this process (what "many clients" means in production).
// cached: Get answered from the cache.
func BenchmarkGetExisting(b *testing.B) {
	_, c := startServer(b, Limits{})
	key := testutil.Key(b)
	mustGet(b, c, semReq(key, 1, creat|excl|0o644))

	b.Run("serial", func(b *testing.B) {
		lat := make([]time.Duration, b.N)
		b.ResetTimer()
		t0 := time.Now()
		for i := 0; i < b.N; i++ {
			s := time.Now()
			if _, err := c.get(semReq(key, 0, 0)); err != nil {
				b.Fatal(err)
			}
			lat[i] = time.Since(s)
		}
		el := time.Since(t0)
		b.StopTimer()
		p50, p99 := percentiles(lat)
		b.ReportMetric(float64(p50.Nanoseconds()), "p50-ns")
		b.ReportMetric(float64(p99.Nanoseconds()), "p99-ns")
		b.ReportMetric(float64(b.N)/el.Seconds(), "gets/s")
	})

	b.Run("cached", func(b *testing.B) {
		for range 2 {
			_, _ = c.Get(semReq(key, 0, 0))
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := c.Get(semReq(key, 0, 0)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("conns", func(b *testing.B) {
		const conns = 8
		var clients []*Client
		for i := 0; i < conns; i++ {
			cl, err := Dial(c.Socket())
			require.NoError(b, err)
			defer cl.Close()
			clients = append(clients, cl)
		}
		per := (b.N + conns - 1) / conns
		lats := make([][]time.Duration, conns)
		var wg sync.WaitGroup
		b.ResetTimer()
		t0 := time.Now()
		for i := range clients {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				lat := make([]time.Duration, per)
				for j := range lat {
					s := time.Now()
					if _, err := clients[i].get(semReq(key, 0, 0)); err != nil {
						b.Error(err)
						return
					}
					lat[j] = time.Since(s)
				}
				lats[i] = lat
			}(i)
		}
		wg.Wait()
		el := time.Since(t0)
		b.StopTimer()
		var all []time.Duration
		for _, l := range lats {
			all = append(all, l...)
		}
		p50, p99 := percentiles(all)
		b.ReportMetric(float64(p50.Nanoseconds()), "p50-ns")
		b.ReportMetric(float64(p99.Nanoseconds()), "p99-ns")
		b.ReportMetric(float64(len(all))/el.Seconds(), "gets/s")
	})

	b.Run("proc", func(b *testing.B) { getFromProcs(b, c.Socket(), key, 1) })
	b.Run("procs", func(b *testing.B) { getFromProcs(b, c.Socket(), key, 4) })
}

// getFromProcs runs BenchmarkGetExisting's Gets from procs client
// processes (helper "getter").
func getFromProcs(b *testing.B, socket string, key, procs int) {
	per := (b.N + procs - 1) / procs
	var ps []*testutil.Proc
	for i := 0; i < procs; i++ {
		p := testutil.Start(b, "getter", []string{socket, strconv.Itoa(key), strconv.Itoa(per)})
		p.Expect("ready", 10*time.Second)
		ps = append(ps, p)
	}
	b.ResetTimer()
	for _, p := range ps {
		p.Send("go")
	}
	var maxEl, sum50, sum99 float64
	for _, p := range ps {
		var n int
		var el, p50, p99 float64
		l := p.Line(5 * time.Minute)
		if _, err := fmt.Sscan(l, &n, &el, &p50, &p99); err != nil {
			b.Fatalf("getter said %q", l)
		}
		if el > maxEl {
			maxEl = el
		}
		sum50 += p50
		sum99 += p99
	}
	b.StopTimer()
	b.ReportMetric(sum50/float64(procs), "p50-ns")
	b.ReportMetric(sum99/float64(procs), "p99-ns")
	b.ReportMetric(float64(per*procs)/(maxEl/1e9), "gets/s")
}
