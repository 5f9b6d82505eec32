// Package event defines Courier's event envelope, its validation and its wire
// encodings (native JSON, Gluster's {nodeid, ts, event, message} and
// CloudEvents 1.0). It knows nothing of NATS or sinks, so every part of Courier
// and every producer can share the one envelope type.
package event
