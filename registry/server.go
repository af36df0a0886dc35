package registry

// Server is a registry serving one socket.
type Server struct{}

// NewServer listens on socket and rebuilds the table.
func NewServer(socket string, lim Limits) (*Server, error) { return nil, errTODO }

// Serve serves until Close.
func (s *Server) Serve() error { return errTODO }

// Close stops the server.
func (s *Server) Close() error { return nil }
