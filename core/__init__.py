"""The core: the wire contract, step types, keys, templates and failure types. It imports nothing
of ours, so every other layer can import it."""
