"""What the service, the producer and the commands share: Kafka client settings, policy and recording flags, logging, the version."""
