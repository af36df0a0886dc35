package fuzz

type pooledQueue struct {
	id   int
	dead bool
}

func (pq *pooledQueue) close() {}
func msgqRemove(id int) error  { return nil }
