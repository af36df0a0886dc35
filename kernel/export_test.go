package kernel

// StatExiting is statExiting, for package kernel_test.
var StatExiting = statExiting

// SliceLen is sliceLen, for package kernel_test.
var SliceLen = sliceLen

// EpollFd is e's descriptor, for package kernel_test.
func EpollFd(e *Epoll) int { return e.fd }
