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
	warm(t)
	time.Sleep(2500 * time.Millisecond)
	if s := state.Load(); s != stopped {
		t.Fatalf("state after 2.5 s idle = %d, want stopped", s)
	}
	if got, want := Now(), time.Now().Unix(); got < want-1 || got > want {
		t.Fatalf("Now() after restart = %d, want %d", got, want)
	}
}

// Park stops the timer at once; after it, Now reads the wall clock, and
// the armAfter-th call arms the timer again.
func TestParkStopsTimer(t *testing.T) {
	warm(t)
	Park()
	waitStopped(t, "Park")
	time.Sleep(1200 * time.Millisecond) // a boundary passes with no timer
	for i := 0; i < armAfter-1; i++ {
		if got, want := Now(), time.Now().Unix(); got < want-1 || got > want {
			t.Fatalf("Now() after Park = %d, want %d", got, want)
		}
	}
	if s := state.Load(); s != stopped {
		t.Fatalf("state after %d calls = %d: armed before armAfter", armAfter-1, s)
	}
	Now()
	if s := state.Load(); s != used {
		t.Fatalf("state after armAfter calls = %d, want used", s)
	}
	Park()
	Park() // twice: nothing more to stop
	waitStopped(t, "two Parks")
	// A call between two Parks does not arm it: the count starts again.
	for i := 0; i < 3; i++ {
		for j := 0; j < armAfter-1; j++ {
			Now()
		}
		Park()
	}
	if s := state.Load(); s != stopped {
		t.Fatalf("state after rounds of fewer than armAfter calls between Parks = %d, want stopped", s)
	}
}

// warm calls Now until the timer is armed.
func warm(t *testing.T) {
	t.Helper()
	for i := 0; i <= armAfter; i++ {
		Now()
	}
	if s := state.Load(); s != used {
		t.Fatalf("state after %d calls of Now = %d, want used", armAfter+1, s)
	}
}

// waitStopped waits for the clock to be stopped: at once, unless Park
// came just as the timer fired, when the tick that was due stops it.
func waitStopped(t *testing.T, after string) {
	t.Helper()
	for end := time.Now().Add(1500 * time.Millisecond); state.Load() != stopped; {
		if time.Now().After(end) {
			t.Fatalf("state 1.5 s after %s = %d, want stopped", after, state.Load())
		}
		time.Sleep(time.Millisecond)
	}
}

// Goroutines that call Now while others Park and the timer fires always
// read a value within a second of the wall clock (go test -race checks
// the synchronisation).
func TestParkRacesNow(t *testing.T) {
	stop := time.Now().Add(2500 * time.Millisecond)
	done := make(chan struct{})
	for g := 0; g < 4; g++ {
		go func(g int) {
			defer func() { done <- struct{}{} }()
			for time.Now().Before(stop) {
				before := time.Now().Unix()
				got := Now()
				after := time.Now().Unix()
				if got < before-1 || got > after {
					t.Errorf("Now() = %d, wall clock in [%d, %d]", got, before, after)
					return
				}
				if g == 0 {
					Park()
				}
			}
		}(g)
	}
	for range 4 {
		<-done
	}
}
