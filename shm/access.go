package shm

import (
	"fmt"
	"reflect"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"
)

// At returns a *T over the bytes at off in the segment, after checking that
// T holds no Go pointers, that [off, off+sizeof(T)) is inside the segment
// without overflow, and that off is aligned (8 bytes for any T of 8 bytes or
// more, so 64-bit atomics are aligned on 32-bit platforms too). This,
// Slice and Bytes are the only ways into mapped memory.
func At[T any](s *Segment, off uint64) (*T, error) {
	p, err := checkedPtr[T](s.mem, off, 1)
	if err != nil {
		return nil, err
	}
	return (*T)(p), nil
}

// Slice returns a []T of n elements starting at off, with the same checks as
// At. An empty request (n == 0) returns nil, but is checked all the same: it
// is a bug or corruption just as much when nothing happens to be read.
func Slice[T any](s *Segment, off uint64, n int) ([]T, error) {
	if n == 0 {
		return nil, checkAccess[T](s.mem, off, 0)
	}
	p, err := checkedPtr[T](s.mem, off, n)
	if err != nil {
		return nil, err
	}
	return unsafe.Slice((*T)(p), n), nil
}

// Bytes returns the n bytes at off.
func (s *Segment) Bytes(off, n uint64) ([]byte, error) {
	end := off + n
	if end < off || end > uint64(len(s.mem)) {
		return nil, fmt.Errorf("%w: bytes [%d,+%d) outside %d-byte segment", ErrBounds, off, n, len(s.mem))
	}
	return s.mem[off:end:end], nil
}

func checkedPtr[T any](mem []byte, off uint64, n int) (unsafe.Pointer, error) {
	if err := checkAccess[T](mem, off, n); err != nil {
		return nil, err
	}
	return unsafe.Add(unsafe.Pointer(unsafe.SliceData(mem)), off), nil
}

// checkAccess checks a request for n Ts at off: T's type, the count, the
// bounds (without overflow) and the alignment of the address.
func checkAccess[T any](mem []byte, off uint64, n int) error {
	var zero T
	size, align := uint64(unsafe.Sizeof(zero)), uint64(unsafe.Alignof(zero))
	if size >= 8 {
		align = 8
	}
	if err := checkType(reflect.TypeFor[T]()); err != nil {
		return err
	}
	if size == 0 {
		return fmt.Errorf("%w: zero-size %v", ErrType, reflect.TypeFor[T]())
	}
	if n < 0 {
		return fmt.Errorf("%w: negative count %d", ErrBounds, n)
	}
	total := size * uint64(n)
	if n != 0 && total/uint64(n) != size {
		return fmt.Errorf("%w: %d × %d bytes overflows", ErrBounds, n, size)
	}
	end := off + total
	if end < off || end > uint64(len(mem)) {
		return fmt.Errorf("%w: [%d,+%d) outside %d-byte segment", ErrBounds, off, total, len(mem))
	}
	base := uintptr(unsafe.Pointer(unsafe.SliceData(mem)))
	if (uint64(base)+off)%align != 0 {
		return fmt.Errorf("%w: offset %d not %d-aligned", ErrAlign, off, align)
	}
	return nil
}

var checkedTypes sync.Map // reflect.Type → error (nil if fine)

// checkType allows only fixed-width, pointer-free types: integers, arrays
// and structs of them (sync/atomic types are such structs).
func checkType(t reflect.Type) error {
	if v, ok := checkedTypes.Load(t); ok {
		if v == nil {
			return nil
		}
		return v.(error)
	}
	err := walkType(t)
	if err != nil {
		checkedTypes.Store(t, err)
	} else {
		checkedTypes.Store(t, nil)
	}
	return err
}

func walkType(t reflect.Type) error {
	switch t.Kind() {
	case reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Bool:
		return nil
	case reflect.Array:
		return walkType(t.Elem())
	case reflect.Struct:
		for i := 0; i < t.NumField(); i++ {
			if err := walkType(t.Field(i).Type); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("%w: %v cannot live in shared memory", ErrType, t)
}

// StoreOwned stores v in a word of mapped memory that nobody else may
// write at that moment (the lock holder's own words, a word it has
// frozen), or in a hint whose concurrent stores may land in any order: a
// store that is atomic and ordered after the writer's earlier stores is
// enough, and on amd64 a plain aligned MOV is both, where Go's atomic
// Store is a locked XCHG (a full barrier, ~20 cycles). (x86-TSO
// keeps stores in program order; the Go compiler keeps memory operations
// in program order too, and removes a store only when the same address is
// stored again later in the same basic block, which callers never do.)
// Readers still load with atomics. Elsewhere (386 could tear a plain
// 64-bit store; weaker memory models reorder) it is an atomic Store.
func StoreOwned(p *atomic.Uint64, v uint64) {
	if plainStores {
		*(*uint64)(unsafe.Pointer(p)) = v
	} else {
		p.Store(v)
	}
}

// StoreOwned32 is StoreOwned for a 32-bit word.
func StoreOwned32(p *atomic.Uint32, v uint32) {
	if plainStores {
		*(*uint32)(unsafe.Pointer(p)) = v
	} else {
		p.Store(v)
	}
}

const plainStores = runtime.GOARCH == "amd64"

// Pause is the processor's spin-wait hint (PAUSE on amd64, YIELD on
// arm64), for a turn of a loop that watches a word of mapped memory for
// another process's store: it keeps the CPU from running many loads of
// the watched word ahead, which it must throw away when the store arrives
// (the reason the instruction exists; what it saves here was measured only
// as a whole, where it is used). A pause takes about 30 ns on this
// machine's CPUs, so loops that count their turns must allow for it. It is the runtime's own spin hint, which the runtime
// keeps callable from other packages (go.dev/issue/67401).
func Pause() { procyield(1) }

//go:linkname procyield runtime.procyield
func procyield(cycles uint32)

// plainWord is p for StoreOwned's plain stores written out, where a call
// would not inline.
func plainWord(p *atomic.Uint64) *uint64 { return (*uint64)(unsafe.Pointer(p)) }
