package kernel

// StatExiting is statExiting, for package kernel_test.
var StatExiting = statExiting
