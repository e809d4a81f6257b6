"""The core of AI Ops Sentry: configuration, the streaming logic, the Faust app and the CLI."""
