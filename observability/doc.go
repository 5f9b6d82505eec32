// Package observability sets up what operators and SREs read: structured
// logs now; tracing and metrics build on it.
package observability
