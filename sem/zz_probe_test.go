package sem

import (
	"testing"
)

func TestZZProbeUndoAfterWait(t *testing.T) {
	forImpls(t, func(t *testing.T, im impl) {
		id := im.create(t, 1, 0o600)
		stale := 0
		for i := 0; i < 30; i++ {
			p := client(t, im, id)
			p.Send("op 0:1:u")
			p.Expect("ok", lineWait)
			p.Kill()
			p.Wait(lineWait)
			v, _ := im.getVal(id, 0)
			if v != 0 {
				stale++
			}
			for v != 0 {
				v, _ = im.getVal(id, 0)
			}
		}
		t.Logf("%s: stale %d/30", im.name, stale)
	})
}
