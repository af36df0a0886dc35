package bench

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sampleReport is a small report as Run would make it, with every kind of
// row: latency, throughput, idle, an error, and a row with no usysv number.
func sampleReport() *Report {
	f := func(v float64) *float64 { return &v }
	return &Report{
		Schema: SchemaID, Mode: "quick", Started: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Seconds: 19.5,
		Host: Host{OS: "linux", Arch: "amd64", CPUs: 2, CPU: "x", Kernel: "6.1", Go: "go1.26", Registry: "default",
			Budget: "200ms", Rounds: 2, Available: "usysv,kernel,unix,pipe", LoadAvg: 0.5},
		Results: []*Result{
			{Case: "sem/uncontended", Title: "sem P+V", Kind: Latency, Unit: "ns", Speedup: f(10),
				Impls: map[string]*ImplResult{
					Usysv:  {P50NS: f(40), P99NS: f(90), Samples: 100, OpsPerSample: 25, PerRound: []float64{40, 41}, Ops: 2500, Seconds: 0.0001},
					Kernel: {P50NS: f(400), P99NS: f(900), Samples: 100, OpsPerSample: 3, PerRound: []float64{400, 402}, Ops: 300, Seconds: 0.0001},
				}},
			{Case: "msg/stream", Title: "stream", Kind: Throughput, Unit: "msgs/s", Speedup: f(4),
				Impls: map[string]*ImplResult{
					Usysv:  {MsgsPerS: f(4e6), PerRound: []float64{4e6}, Ops: 4000, Seconds: 0.001},
					Kernel: {MsgsPerS: f(1e6), PerRound: []float64{1e6}, Ops: 1000, Seconds: 0.001},
					Pipe:   {Error: "broken pipe"},
				}},
			{Case: "sem/idle-waiter", Title: "blocked", Kind: Idle, Unit: "us/s", Speedup: f(1.25),
				Impls: map[string]*ImplResult{
					Usysv:  {CPUUsPerS: f(1600), PerRound: []float64{1500, 1700}, Ops: 1600, Seconds: 1.6},
					Kernel: {CPUUsPerS: f(2000), PerRound: []float64{2000, 2000}, Ops: 1600, Seconds: 1.6},
				}},
			{Case: "msg/pingpong", Title: "ping-pong", Kind: Latency, Unit: "ns",
				Impls: map[string]*ImplResult{Kernel: {P50NS: f(3000), P99NS: f(9000), Samples: 10, OpsPerSample: 1, PerRound: []float64{3000}, Ops: 10, Seconds: 0.00003}}},
		},
	}
}

func TestValidateAccepts(t *testing.T) {
	b, err := json.Marshal(sampleReport())
	require.NoError(t, err)
	require.NoError(t, Validate(b))
}

// Every mutation breaks one documented rule; Validate must catch each.
func TestValidateRejects(t *testing.T) {
	mutations := map[string]func(m map[string]any){
		"wrong schema id":       func(m map[string]any) { m["schema"] = "usysv-bench/v0" },
		"unknown mode":          func(m map[string]any) { m["mode"] = "slow" },
		"missing host":          func(m map[string]any) { delete(m, "host") },
		"unknown top field":     func(m map[string]any) { m["extra"] = 1 },
		"started not UTC":       func(m map[string]any) { m["started"] = "2026-01-02T03:04:05+01:00" },
		"cpus not integer":      func(m map[string]any) { hostOf(m)["cpus"] = 1.5 },
		"case name malformed":   func(m map[string]any) { result(m, 0)["case"] = "Sem Uncontended" },
		"kind/unit mismatch":    func(m map[string]any) { result(m, 0)["unit"] = "msgs/s" },
		"unknown impl":          func(m map[string]any) { implsOf(m, 0)["shm"] = implsOf(m, 0)["kernel"] },
		"no impls":              func(m map[string]any) { result(m, 3)["impls"] = map[string]any{} },
		"latency without p99":   func(m map[string]any) { delete(impl(m, 0, "usysv"), "p99_ns") },
		"latency with rate":     func(m map[string]any) { impl(m, 0, "usysv")["msgs_per_s"] = 5 },
		"negative p50":          func(m map[string]any) { impl(m, 0, "kernel")["p50_ns"] = -1 },
		"zero rate":             func(m map[string]any) { impl(m, 1, "kernel")["msgs_per_s"] = 0 },
		"throughput with p50":   func(m map[string]any) { impl(m, 1, "usysv")["p50_ns"] = 1 },
		"error and numbers":     func(m map[string]any) { impl(m, 1, "pipe")["msgs_per_s"] = 5 },
		"empty error":           func(m map[string]any) { impl(m, 1, "pipe")["error"] = "" },
		"speedup not a number":  func(m map[string]any) { result(m, 0)["speedup"] = "10x" },
		"speedup missing":       func(m map[string]any) { delete(result(m, 0), "speedup") },
		"speedup wrong":         func(m map[string]any) { result(m, 0)["speedup"] = 2 },
		"speedup invented":      func(m map[string]any) { result(m, 3)["speedup"] = 1 },
		"idle speedup wrong":    func(m map[string]any) { result(m, 2)["speedup"] = 0.8 },
		"idle with p50":         func(m map[string]any) { impl(m, 2, "usysv")["p50_ns"] = 1 },
		"idle without cpu":      func(m map[string]any) { delete(impl(m, 2, "usysv"), "cpu_us_per_s") },
		"negative cpu":          func(m map[string]any) { impl(m, 2, "kernel")["cpu_us_per_s"] = -1 },
		"idle/unit mismatch":    func(m map[string]any) { result(m, 2)["unit"] = "ns" },
		"speedup dropped":       func(m map[string]any) { result(m, 1)["speedup"] = nil },
		"p99 below p50":         func(m map[string]any) { impl(m, 0, "usysv")["p99_ns"] = 10 },
		"no per_round":          func(m map[string]any) { delete(impl(m, 1, "kernel"), "per_round") },
		"per_round not numbers": func(m map[string]any) { impl(m, 0, "kernel")["per_round"] = []any{"fast"} },
		"trailing data":         nil,
	}
	for name, mutate := range mutations {
		t.Run(name, func(t *testing.T) {
			b, err := json.Marshal(sampleReport())
			require.NoError(t, err)
			if mutate == nil {
				b = append(b, []byte(" {}")...)
			} else {
				var m map[string]any
				require.NoError(t, json.Unmarshal(b, &m))
				mutate(m)
				b, err = json.Marshal(m)
				require.NoError(t, err)
			}
			err = Validate(b)
			assert.Error(t, err)
			t.Log(err)
		})
	}
}

// The validator refuses schemas that use keywords it does not implement.
func TestValidatorKnowsItsLimits(t *testing.T) {
	v := &validator{}
	var s any
	require.NoError(t, decodeJSON([]byte(`{"maxLength": 3}`), &s))
	err := v.check(s, "abcd", "$")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "does not implement")
}

func hostOf(m map[string]any) map[string]any { return m["host"].(map[string]any) }
func result(m map[string]any, i int) map[string]any {
	return m["results"].([]any)[i].(map[string]any)
}
func implsOf(m map[string]any, i int) map[string]any {
	return result(m, i)["impls"].(map[string]any)
}
func impl(m map[string]any, i int, name string) map[string]any {
	return implsOf(m, i)[name].(map[string]any)
}

func TestSchemaDocumented(t *testing.T) {
	// Every field of the schema is described in the package documentation.
	doc := readDoc(t)
	var s map[string]any
	require.NoError(t, json.Unmarshal(Schema, &s))
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if props, ok := v["properties"].(map[string]any); ok {
				for name := range props {
					assert.Contains(t, doc, `"`+name+`"`, "field %s not described in doc.go", name)
				}
			}
			for _, sub := range v {
				walk(sub)
			}
		case []any:
			for _, sub := range v {
				walk(sub)
			}
		}
	}
	walk(s)
	assert.True(t, strings.Contains(doc, SchemaID))
}

func TestSteady(t *testing.T) {
	r := func(v ...float64) *ImplResult { return &ImplResult{PerRound: v} }
	assert.True(t, Steady(Latency, r(40, 42), r(400, 410)))
	assert.False(t, Steady(Latency, r(40, 80), r(400, 400)))
	assert.True(t, Steady(Throughput, r(2e6, 2.2e6), r(1e6, 1.2e6)))
	assert.False(t, Steady(Throughput, r(2e6, 4e6), r(1e6, 1e6)))
	assert.True(t, Steady(Latency, nil, r(1)))
}

// Ratios keep three significant digits, however small (to hundredths, a
// usysv idle row 500 times the kernel's was 0, which the schema refuses),
// and a row with a zero on one side says which.
func TestSpeedupCells(t *testing.T) {
	idle := func(v float64) *ImplResult { return &ImplResult{CPUUsPerS: &v} }
	s := speedup(Idle, idle(500), idle(1))
	require.NotNil(t, s)
	assert.Equal(t, 0.002, *s)
	f := func(v float64) *float64 { return &v }
	s = speedup(Latency, &ImplResult{P50NS: f(27)}, &ImplResult{P50NS: f(508)})
	require.NotNil(t, s)
	assert.Equal(t, 18.8, *s)
	s = speedup(Throughput, &ImplResult{MsgsPerS: f(1.07e7)}, &ImplResult{MsgsPerS: f(1.07e6)})
	require.NotNil(t, s)
	assert.Equal(t, 10.0, *s)

	for _, c := range []struct {
		u, k float64
		want string
	}{{0, 0, "same"}, {0, 5, "∞"}, {5, 0, "worse"}} {
		assert.Nil(t, speedup(Idle, idle(c.u), idle(c.k)))
		assert.Equal(t, c.want, oneSided(Idle, idle(c.u), idle(c.k)), "usysv %v, kernel %v", c.u, c.k)
	}
	assert.Equal(t, "-", oneSided(Idle, nil, idle(5)))
	rate := func(v float64) *ImplResult { return &ImplResult{MsgsPerS: &v} }
	assert.Equal(t, "-", oneSided(Throughput, rate(0), rate(1e6)), "a stream that moved nothing is no ∞")

	rep := sampleReport()
	row := rep.Results[2] // the idle row
	row.Impls[Usysv].CPUUsPerS, row.Impls[Kernel].CPUUsPerS = f(500), f(1)
	row.Impls[Usysv].PerRound, row.Impls[Kernel].PerRound = []float64{500}, []float64{1}
	row.Speedup = speedup(Idle, row.Impls[Usysv], row.Impls[Kernel])
	js, err := json.Marshal(rep)
	require.NoError(t, err)
	assert.NoError(t, Validate(js), "a tiny ratio validates")
}
