package bench

import (
	"errors"
	"sync"
)

// live holds a remover for every IPC object (and descriptor) this process
// created for a benchmark and has not removed yet, so that Cleanup can
// remove them after an error or an interrupt.
var live struct {
	sync.Mutex
	next int
	m    map[int]func() error
}

// track records remove as the way to destroy a new object. The returned
// function removes the object (once) and forgets it.
func track(remove func() error) func() error {
	live.Lock()
	if live.m == nil {
		live.m = map[int]func() error{}
	}
	live.next++
	id := live.next
	live.m[id] = remove
	live.Unlock()
	return func() error {
		live.Lock()
		f, ok := live.m[id]
		delete(live.m, id)
		live.Unlock()
		if !ok {
			return nil // already removed by Cleanup
		}
		return f()
	}
}

// Cleanup removes every object that benchmarks in this process created and
// have not removed yet. Run calls it before it returns; a command calls it
// again from its interrupt handler, where a benchmark may still be running.
// It is safe to call concurrently with benchmarks (their next operation
// fails) and more than once.
func Cleanup() error {
	live.Lock()
	fs := live.m
	live.m = nil
	live.Unlock()
	var errs []error
	for _, f := range fs {
		if err := f(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Outstanding is how many objects are created and not yet removed.
func Outstanding() int {
	live.Lock()
	defer live.Unlock()
	return len(live.m)
}
