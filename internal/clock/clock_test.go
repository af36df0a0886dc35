package clock

import (
	"testing"
	"time"
)

func TestNowTracksWallClock(t *testing.T) {
	for i := 0; i < 3; i++ {
		before := time.Now().Unix()
		got := Now()
		after := time.Now().Unix()
		if got < before-1 || got > after {
			t.Fatalf("Now() = %d, wall clock in [%d, %d]", got, before, after)
		}
		time.Sleep(700 * time.Millisecond)
	}
}

func TestTickerStopsWhenIdle(t *testing.T) {
	Now()
	time.Sleep(2500 * time.Millisecond)
	if s := state.Load(); s != stopped {
		t.Fatalf("state after 2.5 s idle = %d, want stopped", s)
	}
	if got, want := Now(), time.Now().Unix(); got < want-1 || got > want {
		t.Fatalf("Now() after restart = %d, want %d", got, want)
	}
}
