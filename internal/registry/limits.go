package registry

import "net/http"

// Limiter applies per-caller limits (requests per second, bytes per day)
// to requests that were authorized.
type Limiter interface {
	// Admit counts the request of c. It returns the writer to answer
	// through (which may count the bytes sent) and a function to call once
	// the request is answered (nil for none), or the error to answer
	// instead (an *Error, 429).
	Admit(w http.ResponseWriter, r *http.Request, c Caller) (http.ResponseWriter, func(), error)
}
