package main

// Linking the kinds registers their eager repair hooks (registry.RegisterRepair)
// in the daemon's process, where the registry calls them after a client dies.
import (
	_ "github.com/usysv/usysv/msgq"
	_ "github.com/usysv/usysv/sem"
)
