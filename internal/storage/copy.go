package storage

import (
	"errors"
	"hash"
	"io"
	"os"
	"sync"
	"sync/atomic"
)

// Uploads go through three stages at once: the request goroutine reads, a
// second goroutine hashes what was read, a third writes what was hashed. A
// push costs reading the socket, sha256 and copying into the page cache;
// overlapped on two cores, the slowest of them (sha256) sets the pace
// instead of their sum. The writer also starts the disk writing back as it
// goes, so that the fsync that makes the blob durable has little left to do.

const (
	pipeBufSize = 256 << 10
	pipeBufs    = 8 // per upload in flight: 2 MiB
	// writebackEvery is how much is written before writeback is started.
	writebackEvery = 8 << 20
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
	toHash := make(chan []byte, pipeBufs)
	toWrite := make(chan []byte, pipeBufs)
	var werr atomic.Pointer[error]

	go func() {
		defer close(toWrite)
		for b := range toHash {
			h.Write(b)
			toWrite <- b
		}
	}()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f, _ := dst.(*os.File)
		var written, synced int64
		for b := range toWrite {
			if werr.Load() == nil {
				if _, err := dst.Write(b); err != nil {
					werr.Store(&err)
				}
				written += int64(len(b))
				if f != nil && written-synced >= writebackEvery {
					startWriteback(f, synced, written-synced)
					synced = written
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
			total += int64(n)
			toHash <- (*bp)[:n]
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
	close(toHash)
	<-done
	for range pipeBufs {
		pipePool.Put(<-free)
	}
	if p := werr.Load(); p != nil {
		return total, *p
	}
	return total, rerr
}
