// Command edge-proxy forwards requests to the payments API and counts them.
package main

import (
	"log"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/text/language"
)

var requests = prometheus.NewCounterVec(
	prometheus.CounterOpts{Name: "edge_proxy_requests_total", Help: "Requests proxied, by status code and method."},
	[]string{"code", "method"},
)

var latency = prometheus.NewHistogramVec(
	prometheus.HistogramOpts{Name: "edge_proxy_request_duration_seconds", Help: "Time to proxy a request."},
	[]string{"method"},
)

type recorder struct {
	http.ResponseWriter
	status int
}

func (r *recorder) WriteHeader(status int) {
	r.status = status
	r.ResponseWriter.WriteHeader(status)
}

func main() {
	prometheus.MustRegister(requests, latency)
	upstream, err := url.Parse("http://payments-api.payments.svc")
	if err != nil {
		log.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(upstream)
	matcher := language.NewMatcher([]language.Tag{language.English, language.German})
	http.Handle("/metrics", promhttp.Handler())
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		started := time.Now()
		tag, _ := language.MatchStrings(matcher, r.Header.Get("Accept-Language"))
		r.Header.Set("X-Language", tag.String())
		rec := &recorder{ResponseWriter: w, status: http.StatusOK}
		proxy.ServeHTTP(rec, r)
		requests.WithLabelValues(strconv.Itoa(rec.status), r.Method).Inc()
		latency.WithLabelValues(r.Method).Observe(time.Since(started).Seconds())
	})
	log.Fatal(http.ListenAndServe(":8080", nil))
}
