package metrics

import "github.com/prometheus/client_golang/prometheus"

// NewLimited registers berth_token_limited_total and returns the function
// that counts one request refused for a token limit ("rate", "pull_bytes"
// or "push_bytes").
func (m *Metrics) NewLimited() func(limit string) {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "berth_token_limited_total", Help: "Requests refused with 429 for a token's limit, by limit (rate, pull_bytes, push_bytes).",
	}, []string{"limit"})
	m.reg.MustRegister(c)
	for _, l := range []string{"rate", "pull_bytes", "push_bytes"} {
		c.WithLabelValues(l) // shown at 0 from the start
	}
	return func(limit string) { c.WithLabelValues(limit).Inc() }
}
