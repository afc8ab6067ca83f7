"""storage: the replicated state machine's data and the BLAKE3 blob store (no networking)."""
