// Package metrics is what Mayfly exports to Prometheus: one registry per
// process, the counters and histograms the service, the runner and the
// API record into, and collectors that ask the store at scrape time. Every
// method is safe on a nil *Metrics, which records nothing, so tests and
// the benchmark harness need not make one.
//
// Labels are kept to what is bounded: a code's name (a project's codes are
// few and chosen by its users, and a task's end is counted by the runner,
// which knows the code), a status, a route pattern (never a raw path).
package metrics

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds one process's collectors.
type Metrics struct {
	reg *prometheus.Registry

	tasksQueued    *prometheus.CounterVec // code
	tasksLeased    prometheus.Counter
	queueWait      prometheus.Histogram
	tasksEnded     *prometheus.CounterVec // status
	leasesExpired  prometheus.Counter
	fencedReports  *prometheus.CounterVec // report
	schedulesFired *prometheus.CounterVec // outcome

	httpRequests *prometheus.CounterVec   // route, code
	httpDuration *prometheus.HistogramVec // route

	runnerEnded    *prometheus.CounterVec   // code, status
	runnerPhase    *prometheus.HistogramVec // phase
	runnerCapacity prometheus.Gauge
	runnerBusy     prometheus.Gauge
}

// durations spans a task's phases: milliseconds (a lease, a noop task) to
// hours (a long report).
var durations = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600}

// New makes the collectors and registers them, with Go's runtime and the
// process's own.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{reg: reg,
		tasksQueued: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mayfly_tasks_queued_total",
			Help: "Tasks queued through this server (API, schedules, webhooks, retries), by code."}, []string{"code"}),
		tasksLeased: prometheus.NewCounter(prometheus.CounterOpts{Name: "mayfly_tasks_leased_total",
			Help: "Tasks handed to runners by this server."}),
		queueWait: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "mayfly_queue_wait_seconds",
			Help: "From a task's due time to its lease.", Buckets: durations}),
		tasksEnded: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mayfly_tasks_ended_total",
			Help: "Task ends reported to this server by runners, by status."}, []string{"status"}),
		leasesExpired: prometheus.NewCounter(prometheus.CounterOpts{Name: "mayfly_leases_expired_total",
			Help: "Leases that ran out (their runner stopped answering); the tasks were queued again or ended killed."}),
		fencedReports: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mayfly_fenced_reports_total",
			Help: "Runner reports refused because their lease was no longer current, by report."}, []string{"report"}),
		schedulesFired: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mayfly_schedule_runs_total",
			Help: "Schedule runs due, by outcome (fired, skipped)."}, []string{"outcome"}),
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mayfly_http_requests_total",
			Help: "HTTP requests answered, by route pattern and status code."}, []string{"route", "code"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "mayfly_http_request_duration_seconds",
			Help: "HTTP request durations by route pattern (long-polls included).", Buckets: durations}, []string{"route"}),
		runnerEnded: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mayfly_runner_tasks_ended_total",
			Help: "Tasks this process's runner ran to an end, by code and status."}, []string{"code", "status"}),
		runnerPhase: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "mayfly_runner_phase_seconds",
			Help:    "Time of each phase of a task on this process's runner: prepare (lease to container created), start, run (start to exit).",
			Buckets: durations}, []string{"phase"}),
		runnerCapacity: prometheus.NewGauge(prometheus.GaugeOpts{Name: "mayfly_runner_capacity",
			Help: "Tasks this process's runner may run at once."}),
		runnerBusy: prometheus.NewGauge(prometheus.GaugeOpts{Name: "mayfly_runner_busy_slots",
			Help: "Tasks this process's runner is running now."}),
	}
	reg.MustRegister(m.tasksQueued, m.tasksLeased, m.queueWait, m.tasksEnded, m.leasesExpired, m.fencedReports,
		m.schedulesFired, m.httpRequests, m.httpDuration, m.runnerEnded, m.runnerPhase, m.runnerCapacity, m.runnerBusy,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the registry in Prometheus's text format.
func (m *Metrics) Handler() http.Handler {
	if m == nil {
		return http.NotFoundHandler()
	}
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// QueueStats is what the queue collector asks the store at each scrape.
type QueueStats func(ctx context.Context) (queued int64, oldestDue time.Time, err error)

// WatchQueue adds the queue's depth and the age of its oldest due task,
// read from the store when scraped (so every server reports the shared
// queue, not what it saw itself).
func (m *Metrics) WatchQueue(stats QueueStats) {
	if m == nil {
		return
	}
	m.reg.MustRegister(&queueCollector{stats: stats,
		depth: prometheus.NewDesc("mayfly_queue_depth", "Tasks queued (due or delayed).", nil, nil),
		age: prometheus.NewDesc("mayfly_queue_oldest_due_seconds",
			"How long the oldest due task has waited past its due time; 0 when none is due.", nil, nil),
		up: prometheus.NewDesc("mayfly_queue_stats_up", "1 when the store answered the queue's statistics.", nil, nil)})
}

// WarmCounts tells a driver's warm containers: the starts that found one
// (hits) and that did not (misses) since the driver started, and how many
// wait idle or are being created now; ok is false for a driver that keeps
// none.
type WarmCounts func() (hits, misses int64, idle, pending int, ok bool)

// WatchWarm adds the warm containers of a runner's driver, read when
// scraped. A second runner in one process (tests) is not added again.
func (m *Metrics) WatchWarm(counts WarmCounts) {
	if m == nil {
		return
	}
	err := m.reg.Register(&warmCollector{counts: counts,
		starts: prometheus.NewDesc("mayfly_runner_warm_starts_total",
			"Task starts of this process's runner by whether a warm container was waiting for the task (hit) or one was created for it (miss).",
			[]string{"outcome"}, nil),
		idle: prometheus.NewDesc("mayfly_runner_warm_idle", "Warm containers waiting for a task now.", nil, nil),
		pending: prometheus.NewDesc("mayfly_runner_warm_pending",
			"Warm containers being created now.", nil, nil)})
	if are := (prometheus.AlreadyRegisteredError{}); err != nil && !errors.As(err, &are) {
		panic(fmt.Sprintf("register warm container metrics: %v", err))
	}
}

type warmCollector struct {
	counts                WarmCounts
	starts, idle, pending *prometheus.Desc
}

func (c *warmCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.starts
	ch <- c.idle
	ch <- c.pending
}

func (c *warmCollector) Collect(ch chan<- prometheus.Metric) {
	hits, misses, idle, pending, ok := c.counts()
	if !ok {
		return
	}
	ch <- prometheus.MustNewConstMetric(c.starts, prometheus.CounterValue, float64(hits), "hit")
	ch <- prometheus.MustNewConstMetric(c.starts, prometheus.CounterValue, float64(misses), "miss")
	ch <- prometheus.MustNewConstMetric(c.idle, prometheus.GaugeValue, float64(idle))
	ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(pending))
}

type queueCollector struct {
	stats          QueueStats
	depth, age, up *prometheus.Desc
}

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.depth; ch <- c.age; ch <- c.up }

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n, oldest, err := c.stats(ctx)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0)
		return
	}
	age := 0.0
	if !oldest.IsZero() {
		age = max(time.Since(oldest).Seconds(), 0)
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 1)
	ch <- prometheus.MustNewConstMetric(c.depth, prometheus.GaugeValue, float64(n))
	ch <- prometheus.MustNewConstMetric(c.age, prometheus.GaugeValue, age)
}

// TasksQueued counts n tasks of code queued.
func (m *Metrics) TasksQueued(code string, n int) {
	if m != nil && n > 0 {
		m.tasksQueued.WithLabelValues(code).Add(float64(n))
	}
}

// TaskLeased counts a lease of a task that was due at due.
func (m *Metrics) TaskLeased(due, now time.Time) {
	if m == nil {
		return
	}
	m.tasksLeased.Inc()
	m.queueWait.Observe(max(now.Sub(due).Seconds(), 0))
}

// TaskEnded counts a reported end.
func (m *Metrics) TaskEnded(status string) {
	if m != nil {
		m.tasksEnded.WithLabelValues(status).Inc()
	}
}

// LeasesExpired counts n leases rescued.
func (m *Metrics) LeasesExpired(n int) {
	if m != nil && n > 0 {
		m.leasesExpired.Add(float64(n))
	}
}

// ReportFenced counts a runner's report refused for a stale lease.
func (m *Metrics) ReportFenced(report string) {
	if m != nil {
		m.fencedReports.WithLabelValues(report).Inc()
	}
}

// ScheduleRun counts a schedule's due run, fired or skipped.
func (m *Metrics) ScheduleRun(fired bool) {
	if m == nil {
		return
	}
	outcome := "skipped"
	if fired {
		outcome = "fired"
	}
	m.schedulesFired.WithLabelValues(outcome).Inc()
}

// RunnerCapacity sets the runner's capacity.
func (m *Metrics) RunnerCapacity(n int) {
	if m != nil {
		m.runnerCapacity.Set(float64(n))
	}
}

// RunnerBusy moves the runner's busy slots by delta.
func (m *Metrics) RunnerBusy(delta int) {
	if m != nil {
		m.runnerBusy.Add(float64(delta))
	}
}

// RunnerTaskEnded counts a task the runner ran to an end, with its phases.
func (m *Metrics) RunnerTaskEnded(code, status string, prepare, start, run time.Duration) {
	if m == nil {
		return
	}
	m.runnerEnded.WithLabelValues(code, status).Inc()
	for phase, d := range map[string]time.Duration{"prepare": prepare, "start": start, "run": run} {
		if d > 0 {
			m.runnerPhase.WithLabelValues(phase).Observe(d.Seconds())
		}
	}
}

// Instrument counts h's requests by their route pattern (the mux's, so
// ids in paths never become labels) and status.
func (m *Metrics) Instrument(h http.Handler) http.Handler {
	if m == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t0 := time.Now()
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		h.ServeHTTP(sw, r)
		route := r.Pattern
		if route == "" {
			route = "unmatched"
		}
		m.httpRequests.WithLabelValues(route, statusText(sw.code)).Inc()
		m.httpDuration.WithLabelValues(route).Observe(time.Since(t0).Seconds())
	})
}

type statusWriter struct {
	http.ResponseWriter
	code        int
	wroteHeader bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wroteHeader {
		w.code, w.wroteHeader = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

// Flush keeps streamed answers (logs, long-polls) streaming.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func statusText(code int) string {
	const digits = "0123456789"
	if code < 100 || code > 999 {
		return "other"
	}
	return string([]byte{digits[code/100], digits[code/10%10], digits[code%10]})
}
