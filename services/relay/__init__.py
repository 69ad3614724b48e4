"""The relay: WebSocket edge that validates frames, produces to Kafka and fans deliveries out."""
