package registry

import (
	"fmt"

	"github.com/usysv/usysv/kernel"
	"github.com/usysv/usysv/shm"
)

// errTODO marks what is not written yet.
var errTODO = fmt.Errorf("registry: not implemented yet: %w", kernel.ENOSYS)

// Client is a connection to a registry. Its methods are safe for
// concurrent use.
type Client struct {
	socket string
	ns     uint64
}

// Default returns the process-wide client.
func Default() (*Client, error) { return nil, errTODO }

// Dial connects to the registry at socket.
func Dial(socket string) (*Client, error) { return nil, errTODO }

// Namespace is the registry namespace of the client's socket.
func (c *Client) Namespace() uint64 { return c.ns }

// Get is msgget/semget.
func (c *Client) Get(req GetRequest) (int, error) { return -1, errTODO }

// Stat is IPC_STAT.
func (c *Client) Stat(kind shm.Kind, id int) (Object, error) { return Object{}, errTODO }

// Set is IPC_SET.
func (c *Client) Set(kind shm.Kind, id int, uid, gid, mode uint32, param uint64) error {
	return errTODO
}

// Remove is IPC_RMID.
func (c *Client) Remove(kind shm.Kind, id int) error { return errTODO }

// List lists every live object of kind.
func (c *Client) List(kind shm.Kind) ([]Object, error) { return nil, errTODO }

// Info returns limits and usage.
func (c *Client) Info(kind shm.Kind) (Usage, error) { return Usage{}, errTODO }

// Close closes the connection.
func (c *Client) Close() error { return nil }
