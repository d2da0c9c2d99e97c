package metrics

import "github.com/prometheus/client_golang/prometheus"

// Integrity counts damaged blob files: found (by the check before each
// response, the scrub or fsck), repaired by a push, and the scrub's work.
type Integrity struct {
	damaged  *prometheus.CounterVec
	repaired prometheus.Counter
	scrubbed prometheus.Counter
	passes   prometheus.Counter
}

// NewIntegrity registers the integrity metrics. Call it once.
func (m *Metrics) NewIntegrity() *Integrity {
	i := &Integrity{
		damaged: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_blobs_damaged_total", Help: "Damaged blob files found, by what found them (serve, scrub, fsck).",
		}, []string{"found_by"}),
		repaired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "berth_blobs_repaired_total", Help: "Stored blob files of the wrong size replaced by a push of the right content.",
		}),
		scrubbed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "berth_scrub_bytes_total", Help: "Bytes of blob content the background scrub has verified.",
		}),
		passes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "berth_scrub_passes_total", Help: "Completed passes of the background scrub over every blob.",
		}),
	}
	for _, l := range []string{"serve", "scrub", "fsck"} {
		i.damaged.WithLabelValues(l) // present at 0, so alerts can use rate()
	}
	m.reg.MustRegister(i.damaged, i.repaired, i.scrubbed, i.passes)
	return i
}

// Damaged counts a damaged blob file found by foundBy (serve, scrub or fsck).
func (i *Integrity) Damaged(foundBy string) {
	switch foundBy {
	case "serve", "scrub", "fsck":
	default:
		foundBy = "other"
	}
	i.damaged.WithLabelValues(foundBy).Inc()
}

// Repaired counts a damaged file replaced by a push.
func (i *Integrity) Repaired() { i.repaired.Inc() }

// Scrubbed counts n bytes verified by the scrub.
func (i *Integrity) Scrubbed(n int64) { i.scrubbed.Add(float64(n)) }

// ScrubPass counts a completed scrub pass.
func (i *Integrity) ScrubPass() { i.passes.Inc() }
