// Package reqlog writes one structured log line per HTTP request. Handlers
// deeper in the stack name the route, repository and identity through the
// Info that the middleware puts in the request's context.
package reqlog

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"time"
)

type ctxKey struct{}

// Info is what handlers add to a request's log line.
type Info struct {
	Route      string
	Repository string
	Identity   string
}

// From returns the request's Info, or a throwaway one when the request did not
// pass through the middleware (tests).
func From(ctx context.Context) *Info {
	if i, ok := ctx.Value(ctxKey{}).(*Info); ok {
		return i
	}
	return &Info{}
}

// Observer is told about each finished request (metrics).
type Observer func(info *Info, method string, status int, bytesIn, bytesOut int64, d time.Duration)

// Middleware logs each request after it completes, and tells observe (if
// not nil).
func Middleware(log *slog.Logger, observe Observer, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		info := &Info{}
		r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, info))
		rw := &recorder{ResponseWriter: w, status: http.StatusOK}
		body := &countingBody{ReadCloser: r.Body}
		r.Body = body
		defer func() {
			// A handler that aborts (client gone or stalled) is logged as
			// 499, the convention for "client closed request", then the
			// abort goes on to net/http.
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					rw.status = 499
				}
				log.LogAttrs(r.Context(), slog.LevelWarn, "request aborted",
					slog.String("method", r.Method), slog.String("route", info.Route),
					slog.String("repository", info.Repository), slog.String("identity", info.Identity),
					slog.Int("status", rw.status), slog.Int64("bytes_in", body.n), slog.Duration("duration", time.Since(start)))
				if observe != nil {
					observe(info, r.Method, rw.status, body.n, rw.written, time.Since(start))
				}
				panic(v)
			}
		}()
		next.ServeHTTP(rw, r)
		d := time.Since(start)
		if observe != nil {
			observe(info, r.Method, rw.status, body.n, rw.written, d)
		}
		log.LogAttrs(r.Context(), slog.LevelInfo, "request",
			slog.String("method", r.Method),
			slog.String("route", info.Route),
			slog.String("repository", info.Repository),
			slog.String("identity", info.Identity),
			slog.Int("status", rw.status),
			slog.Int64("bytes_in", body.n),
			slog.Int64("bytes_out", rw.written),
			slog.Duration("duration", d),
			slog.String("remote", r.RemoteAddr),
		)
	})
}

type recorder struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
	written     int64
}

func (r *recorder) WriteHeader(code int) {
	if !r.wroteHeader {
		r.status, r.wroteHeader = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	r.wroteHeader = true
	n, err := r.ResponseWriter.Write(p)
	r.written += int64(n)
	return n, err
}

// ReadFrom keeps sendfile working for blob downloads through the wrapper.
func (r *recorder) ReadFrom(src io.Reader) (int64, error) {
	r.wroteHeader = true
	n, err := io.Copy(r.ResponseWriter, src)
	r.written += n
	return n, err
}

// Unwrap lets http.ResponseController reach the connection (deadlines, flush).
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

type countingBody struct {
	io.ReadCloser
	n int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	return n, err
}
