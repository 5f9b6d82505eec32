package main

import (
	"fmt"
	"log"
	"os"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill"
	wmamqp "github.com/ThreeDotsLabs/watermill-amqp/v3/pkg/amqp"
	wmkafka "github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
)

// newWatermillAMQP is watermill-amqp's publisher set up as Courier's AMQP
// sink behaves: publisher confirms (Publish returns after the broker's
// confirm), persistent messages (the default marshaler's delivery mode),
// mandatory, a durable topic exchange it declares itself, the event type as
// routing key. One pooled channel per handler: without a pool it opens and
// closes a channel for every message, and one shared channel would make
// the 64 handlers wait for each other's confirms.
func newWatermillAMQP(to sinkTarget, concurrency int) (*wmamqp.Publisher, error) {
	cfg := wmamqp.Config{
		Connection: wmamqp.ConnectionConfig{AmqpURI: to.URL},
		Marshaler:  wmamqp.DefaultMarshaler{},
		Exchange: wmamqp.ExchangeConfig{
			GenerateName: wmamqp.GenerateExchangeNameConstant(to.Exchange),
			Type:         "topic",
			Durable:      true,
		},
		Publish: wmamqp.PublishConfig{
			GenerateRoutingKey: func(string) string { return eventType },
			Mandatory:          true,
			ConfirmDelivery:    true,
			ChannelPoolSize:    concurrency,
		},
		TopologyBuilder: &wmamqp.DefaultTopologyBuilder{},
	}
	pub, err := wmamqp.NewPublisher(cfg, wmLogger())
	if err != nil {
		return nil, fmt.Errorf("watermill amqp publisher: %w", err)
	}
	return pub, nil
}

// newWatermillKafka is watermill-kafka's publisher (a Sarama SyncProducer,
// which gathers concurrent sends into shared produce requests) with
// acks=all, as Courier's Kafka sink requires; Watermill's defaults
// otherwise (Sarama's protocol version, 10 retries inside the producer).
func newWatermillKafka(to sinkTarget) (*wmkafka.Publisher, error) {
	sc := wmkafka.DefaultSaramaSyncPublisherConfig()
	sc.Producer.RequiredAcks = sarama.WaitForAll
	pub, err := wmkafka.NewPublisher(wmkafka.PublisherConfig{
		Brokers:               to.Brokers,
		Marshaler:             wmkafka.DefaultMarshaler{},
		OverwriteSaramaConfig: sc,
	}, wmLogger())
	if err != nil {
		return nil, fmt.Errorf("watermill kafka publisher: %w", err)
	}
	return pub, nil
}

// wmLogger is Watermill's logger for every component: silent, unless
// COMPARE_DEBUG is set (then Watermill's and Sarama's logs go to stderr,
// which the parent shows when a run fails).
func wmLogger() watermill.LoggerAdapter {
	if os.Getenv("COMPARE_DEBUG") == "" {
		return watermill.NopLogger{}
	}
	sarama.Logger = log.New(os.Stderr, "sarama: ", log.LstdFlags)
	return watermill.NewStdLogger(true, false)
}
