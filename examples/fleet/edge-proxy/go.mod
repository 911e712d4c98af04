module example.com/edge-proxy

go 1.21

require (
	github.com/prometheus/client_golang v1.19.0
	golang.org/x/text v0.3.2
)
