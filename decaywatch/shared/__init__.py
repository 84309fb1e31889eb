"""What the service, the producer and the commands share: Kafka client settings, policy flags, logging."""
