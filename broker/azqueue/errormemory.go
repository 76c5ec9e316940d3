package azqueue

import "sync"

// errorMemory remembers the last handler error of foreign messages, whose
// text the broker does not rewrite, for their poison record. It holds at
// most size entries, forgetting the oldest.
type errorMemory struct {
	mu    sync.Mutex
	size  int
	order []string
	errs  map[string]string
}

func newErrorMemory(size int) *errorMemory {
	return &errorMemory{size: size, errs: make(map[string]string)}
}

func (e *errorMemory) put(id, reason string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.errs[id]; !ok {
		if len(e.order) == e.size {
			delete(e.errs, e.order[0])
			e.order = e.order[1:]
		}
		e.order = append(e.order, id)
	}
	e.errs[id] = reason
}

func (e *errorMemory) get(id string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.errs[id]
}
