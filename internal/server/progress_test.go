package server

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// serveProgress serves h behind bodyProgress with idle on a loopback port.
func serveProgress(t *testing.T, idle time.Duration, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: bodyProgress(idle, h)}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// TestResponseToAClientThatNeverReads: a client that asks for a large
// response and reads nothing of it is dropped once the response has not
// moved for the idle time, whether the body is written (Write) or sent from
// a file (ReadFrom, sendfile), instead of holding its connection and the
// file for good.
func TestResponseToAClientThatNeverReads(t *testing.T) {
	const idle = 300 * time.Millisecond
	const size = 256 << 20 // far more than socket buffers hold
	path := filepath.Join(t.TempDir(), "blob")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	for _, how := range []string{"write", "file"} {
		t.Run(how, func(t *testing.T) {
			done := make(chan error, 1)
			addr := serveProgress(t, idle, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Length", strconv.Itoa(size))
				var err error
				if how == "file" {
					f, ferr := os.Open(path)
					if ferr != nil {
						done <- ferr
						return
					}
					defer f.Close()
					_, err = io.CopyN(w, f, size) // as http.ServeContent
				} else {
					buf := make([]byte, 1<<20)
					for n := 0; n < size && err == nil; n += len(buf) {
						_, err = w.Write(buf)
					}
				}
				done <- err
			}))
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.(*net.TCPConn).SetReadBuffer(4096)
			fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			select {
			case err := <-done:
				if err == nil {
					t.Fatal("the whole response was written to a client that reads nothing")
				}
			case <-time.After(30 * time.Second): // a bound on a hang, not a timing assertion
				t.Fatal("the response to a client that reads nothing is still being written")
			}
		})
	}
}

// TestProgressDeadlineIsNotLeftBehind: the write deadline of one response
// does not cut the next one on the same connection, even the 100 Continue
// that net/http writes itself, however long the client waited in between.
func TestProgressDeadlineIsNotLeftBehind(t *testing.T) {
	const idle = 200 * time.Millisecond
	addr := serveProgress(t, idle, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Write([]byte("got " + strconv.Itoa(len(b))))
	}))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	for i := range 2 {
		if i > 0 {
			time.Sleep(3 * idle) // longer than the deadline the first response left
		}
		fmt.Fprintf(c, "PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		line, err := br.ReadString('\n')
		if err != nil || !strings.Contains(line, "100 Continue") {
			t.Fatalf("request %d: %q %v, want 100 Continue", i+1, line, err)
		}
		br.ReadString('\n') // the blank line after it
		c.Write([]byte("hello"))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i+1, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !bytes.Equal(body, []byte("got 5")) {
			t.Fatalf("request %d: %d %q", i+1, resp.StatusCode, body)
		}
	}
}
