package storage

import (
	"errors"
	"hash"
	"io"
	"sync"
	"sync/atomic"
)

// Uploads are hashed and written at once: the request goroutine reads and
// hashes while a second goroutine writes what was already hashed, so the
// two biggest costs of a push (sha256, and copying into the page cache)
// overlap on different cores instead of adding up.

const (
	pipeBufSize = 256 << 10
	pipeBufs    = 4 // per upload in flight: 1 MiB
)

var pipePool = sync.Pool{New: func() any { b := make([]byte, pipeBufSize); return &b }}

// hashCopy copies src to dst, feeding every byte to h in order. It returns
// how many bytes were read from src and hashed; on a write error fewer may
// have reached dst, and the caller must not trust dst's length.
func hashCopy(dst io.Writer, h hash.Hash, src io.Reader) (int64, error) {
	free := make(chan *[]byte, pipeBufs)
	for range pipeBufs {
		free <- pipePool.Get().(*[]byte)
	}
	full := make(chan []byte, pipeBufs)
	var werr atomic.Pointer[error]
	done := make(chan struct{})
	go func() {
		defer close(done)
		for b := range full {
			if werr.Load() == nil {
				if _, err := dst.Write(b); err != nil {
					werr.Store(&err)
				}
			}
			bp := b[:cap(b)]
			free <- &bp
		}
	}()

	var total int64
	var rerr error
	for werr.Load() == nil {
		bp := <-free
		n, err := io.ReadFull(src, *bp)
		if n > 0 {
			h.Write((*bp)[:n])
			total += int64(n)
			full <- (*bp)[:n]
		} else {
			free <- bp
		}
		if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			rerr = err
			break
		}
	}
	close(full)
	<-done
	for range pipeBufs {
		pipePool.Put(<-free)
	}
	if p := werr.Load(); p != nil {
		return total, *p
	}
	return total, rerr
}
