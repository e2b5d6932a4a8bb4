"""Platform adapters: verify, handshake and normalize webhooks into canonical events."""
