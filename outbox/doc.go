// Package outbox owns Courier's durable store: the embedded NATS JetStream
// server, the outbox and dead-letter streams, and the producer API that
// returns only once an event is persisted. It knows nothing of HTTP, AMQP or
// Kafka.
package outbox
