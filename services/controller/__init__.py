"""The controller: consumes Kafka, persists messages, fans deliveries out to subscribed relays."""
