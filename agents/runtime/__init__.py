"""Everything that speaks Kafka for the workers: the app, tables, batch consumer, emitting and recovery."""
